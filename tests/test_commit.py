"""The commit: the rename of the staging directory to OUTDIR is the last
step that can fail the run.

The --json summary is written and flushed to stdout before the rename, so a
stdout that cannot take it (full, a closed pipe) fails the run with nothing
committed; the summary line on stderr comes after the rename and is best
effort, so a stderr that cannot take it changes nothing: exit 0 and the full
output.  Every output file, the staging directory and its parent are
fsync'd around the rename unless --no-sync.
"""
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess

import expect
import fixtures
import fixtures_hostile
import tarkit
from harness import assert_error, binary, staging_dirs

ARCHIVE = "legacy_symlink.tar"


class Result:
    def __init__(self, returncode, err):
        self.returncode, self.err = returncode, err


def run(tmp, options, stdout, stderr):
    """layersplit with stdout and stderr as given ("full": /dev/full,
    "closed": a pipe whose reading end is closed, "pipe": read here)."""
    out = tmp / "out"
    files, keep = {}, []
    for name, how in (("stdout", stdout), ("stderr", stderr)):
        if how == "full":
            files[name] = open("/dev/full", "wb")
            keep.append(files[name])
        elif how == "closed":
            r, w = os.pipe()
            os.close(r)
            files[name] = w
            keep.append(w)
        else:
            files[name] = subprocess.PIPE
    p = subprocess.run([binary()] + list(options) + [fixtures.path(ARCHIVE), str(out)],
                       stdin=subprocess.DEVNULL, timeout=120, **files)
    for k in keep:
        k.close() if hasattr(k, "close") else os.close(k)
    err = p.stderr.decode(errors="replace") if p.stderr is not None else ""
    return Result(p.returncode, err), p.stdout, out


def assert_nothing_committed(tmp, out):
    assert not os.path.lexists(out), "OUTDIR committed: %r" % sorted(os.listdir(out))
    assert staging_dirs(tmp) == [], staging_dirs(tmp)


def test_json_to_a_full_stdout_commits_nothing(tmp):
    p, _, out = run(tmp, ["--json"], "full", "pipe")
    assert_error(p, 3, ["standard output: No space left on device"])
    assert_nothing_committed(tmp, out)


def test_json_to_a_closed_pipe_commits_nothing(tmp):
    p, _, out = run(tmp, ["--json"], "closed", "pipe")
    assert_error(p, 128 + signal.SIGPIPE, ["interrupted by SIGPIPE: output discarded"])
    assert_nothing_committed(tmp, out)


def test_json_is_complete_on_stdout_when_committed(tmp):
    p, stdout, out = run(tmp, ["--json"], "pipe", "pipe")
    assert p.returncode == 0 and p.err == "", p.err
    summary = json.loads(stdout)
    assert summary["layers"] == len([f for f in os.listdir(out) if f.endswith(".tar.gz")])
    expect.check_output(fixtures.path(ARCHIVE), out)


def test_summary_line_to_a_full_stderr_is_ignored(tmp):
    p, _, out = run(tmp, [], "pipe", "full")
    assert p.returncode == 0, "exit %d after the commit" % p.returncode
    expect.check_output(fixtures.path(ARCHIVE), out)
    assert staging_dirs(tmp) == []


def test_summary_line_to_a_closed_stderr_pipe_is_ignored(tmp):
    p, _, out = run(tmp, [], "pipe", "closed")
    assert p.returncode == 0, "exit %d after the commit (141 is SIGPIPE)" % p.returncode
    expect.check_output(fixtures.path(ARCHIVE), out)
    assert staging_dirs(tmp) == []


def test_json_with_stderr_full_or_closed_still_commits(tmp):
    for how in ("full", "closed"):
        p, stdout, out = run(tmp, ["--json"], "pipe", how)
        assert p.returncode == 0, "stderr %s: exit %d" % (how, p.returncode)
        assert json.loads(stdout)["outdir"] == str(out)
        expect.check_output(fixtures.path(ARCHIVE), out)
        shutil.rmtree(out)


def test_verbose_lines_to_a_closed_stderr_stop_the_run_before_the_commit(tmp):
    """SIGPIPE before the rename, from stdout or stderr, stops the run like
    any signal: nothing committed."""
    p, stdout, out = run(tmp, ["--json", "--verbose"], "pipe", "closed")
    assert p.returncode == 128 + signal.SIGPIPE, p.returncode
    assert stdout == b"", stdout
    assert_nothing_committed(tmp, out)


# ---------------------------------------------------------------- fsync

def traced(tmp, *options, archive=None):
    """The run under strace: its fsync, sync_file_range and rename calls, in
    order; None where strace cannot trace (it says why on stdout)."""
    out = tmp / "out"
    log = tmp / "strace.log"
    # LeakSanitizer cannot run under ptrace; every other test checks leaks
    env = dict(os.environ)
    if env.get("ASAN_OPTIONS"):
        env["ASAN_OPTIONS"] += ":detect_leaks=0"
    p = subprocess.run(["strace", "-f", "-qq", "-y", "-o", str(log),
                        "-e", "trace=fsync,fdatasync,syncfs,sync,sync_file_range,rename,renameat,renameat2",
                        binary(), "-q"] + list(options) + [archive or fixtures.path(ARCHIVE), str(out)],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120, env=env)
    if p.returncode != 0 and not log.exists():
        print("# strace cannot run here: %s" % p.stderr.decode(errors="replace").strip())
        return None, out
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    calls = []
    for line in log.read_text().splitlines():
        m = re.match(r"\d+\s+(\w+)\((.*)\)\s+=\s+(-?\d+)", line)
        if m:
            calls.append((m.group(1), m.group(2), int(m.group(3))))
    return calls, out


def test_every_output_file_and_both_directories_are_fsynced_around_the_rename(tmp):
    calls, out = traced(tmp)
    if calls is None:
        return
    renames = [i for i, c in enumerate(calls) if c[0].startswith("rename")]
    assert len(renames) == 1, calls
    rename = renames[0]
    synced = [c[1] for c in calls[:rename] if c[0] == "fsync" and c[2] == 0]
    stage = [s for s in synced if re.search(r"/\.out\.layersplit-\d+-\w{6}>$", s)]
    assert stage, "the staging directory was not fsync'd before the rename: %r" % synced
    for name in os.listdir(out):
        assert any(s.endswith("/%s>" % name) for s in synced), \
            "%s not fsync'd before the rename: %r" % (name, synced)
    after = [c[1] for c in calls[rename + 1:] if c[0] == "fsync" and c[2] == 0]
    assert any(s.endswith("<%s>" % tmp) for s in after), \
        "the parent directory was not fsync'd after the rename: %r" % after
    expect.check_output(fixtures.path(ARCHIVE), out)


def test_large_layer_files_start_their_writeback_as_they_are_written(tmp):
    """A layer the run compresses (24 MiB of noise) and a gzip blob it keeps
    (20 MiB): each file's writeback starts every 8 MiB as it is written,
    range after range from 0, before the fsync that commits it; with
    --no-sync, no call at all (next test)."""
    rnd = random.Random(7)
    tar = tarkit.layer_tar([("noise", rnd.randbytes(20 << 20))])
    blob = gzip.compress(tar, 1, mtime=0)
    cases = [("compressed", fixtures_hostile.big_layer(24 << 20)[0]), ("kept", None)]
    for name, data in cases:
        sub = tmp / name
        sub.mkdir()
        archive = sub / "in.tar"
        if data is None:
            fixtures_hostile.one_layer_oci(archive, blob, "sha256:" + hashlib.sha256(tar).hexdigest())
        else:
            archive.write_bytes(data)
        calls, out = traced(sub, archive=archive)
        if calls is None:
            return
        big = max(out.glob("*.tar.gz"), key=lambda p: p.stat().st_size)
        # (index in calls, start, length) of each ranged call on the file;
        # the commit's own call has length 0 (the whole file)
        ranges = []
        for i, c in enumerate(calls):
            if c[0] != "sync_file_range":
                continue
            fd, start, length = c[1].split(", ")[:3]
            if fd.endswith("/%s>" % big.name) and length != "0":
                ranges.append((i, int(start), int(length)))
        assert len(ranges) >= 2, (name, calls)
        at = 0
        for _, start, length in ranges:
            assert start == at and length >= 8 << 20, (name, ranges)
            at += length
        assert at <= big.stat().st_size, (name, ranges, big.stat().st_size)
        first_fsync = next(i for i, c in enumerate(calls) if c[0] == "fsync" and big.name in c[1])
        assert ranges[-1][0] < first_fsync, (name, calls)
        if data is None:   # kept byte for byte
            assert big.read_bytes() == blob, name
        else:
            expect.check_output(archive, out)


def test_no_sync_skips_every_fsync(tmp):
    calls, out = traced(tmp, "--no-sync")
    if calls is None:
        return
    assert [c for c in calls if "sync" in c[0]] == [], calls
    assert len([c for c in calls if c[0].startswith("rename")]) == 1, calls
    expect.check_output(fixtures.path(ARCHIVE), out)


def test_a_signal_after_the_commit_is_no_error(tmp):
    """A script commits a stage, then SIGTERM reaches the process: the output
    is in place, the run ends normally with status 0.  The same signal
    before the commit stops the script (143) and the stage is removed."""
    script = tmp / "commit.lua"
    script.write_text("""
local fs = require "layersplit".fs
local outdir, before = arg[1], arg[2] == "before"
local stage = assert(fs.stage(outdir))
assert(fs.write_file(stage .. "/f", "data"))
if before then os.execute("kill -TERM $PPID") end
assert(fs.commit(stage, outdir))
if not before then os.execute("kill -TERM $PPID") end
for i = 1, 100000 do local t = {i} end -- Lua runs on after the signal
print("done")
""")
    p = subprocess.run([binary(), "run", str(script), str(tmp / "after"), "after"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0 and p.stdout == b"done\n", (p.returncode, p.stderr)
    assert (tmp / "after" / "f").read_bytes() == b"data"
    p = subprocess.run([binary(), "run", str(script), str(tmp / "before"), "before"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert_error(Result(p.returncode, p.stderr.decode()), 128 + signal.SIGTERM,
                 ["interrupted by SIGTERM"])
    assert not (tmp / "before").exists() and staging_dirs(tmp) == [], os.listdir(tmp)
