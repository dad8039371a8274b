"""The staging directory beside OUTDIR: named after OUTDIR and the run's
pid, locked while the run lives, removed by a later run once its run is
gone (and said so under --verbose), removed whole even when signals keep
arriving during the removal, and short enough for any valid OUTDIR name."""
import fcntl
import os
import signal
import subprocess
import tarfile
import time

import expect
import fixtures
from harness import assert_error, binary, layersplit, run_in, staging_dirs
from test_faults import tmpfs

ARCHIVE = "legacy_symlink.tar"


def start_stalled(out, *options):
    """A run reading from a pipe that never delivers: it sits with its staging
    directory made, until it is signalled."""
    proc = subprocess.Popen([binary()] + list(options) + ["-", str(out)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 30
    while not staging_dirs(out.parent) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, "exited early: %s" % proc.stderr.read().decode(errors="replace")
    return proc


def stop(proc, sig=signal.SIGKILL):
    if proc.poll() is None:
        proc.send_signal(sig)
    proc.wait(timeout=60)
    proc.stdin.close()
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    return err


def test_stage_name_carries_outdir_and_pid(tmp):
    out = tmp / "out"
    proc = start_stalled(out)
    try:
        names = staging_dirs(tmp)
        assert len(names) == 1, names
        assert names[0].startswith(".out.layersplit-%d-" % proc.pid), names
    finally:
        stop(proc)


def test_sigkilled_runs_stage_is_removed_by_the_next_run(tmp):
    out = tmp / "out"
    proc = start_stalled(out)
    stale = staging_dirs(tmp)
    # Something in it, as a killed run leaves half-written layers.
    (tmp / stale[0] / "sub").mkdir()
    (tmp / stale[0] / "sub" / "x.tar.gz").write_bytes(b"x" * 4096)
    stop(proc, signal.SIGKILL)
    assert staging_dirs(tmp) == stale, "a SIGKILLed run cleans nothing: %r" % staging_dirs(tmp)
    p = layersplit("--verbose", fixtures.path(ARCHIVE), out)
    assert p.returncode == 0, p.err
    expect.check_output(fixtures.path(ARCHIVE), out)
    assert staging_dirs(tmp) == [], staging_dirs(tmp)
    said = [line for line in p.err.splitlines() if stale[0] in line]
    assert len(said) == 1 and "removed the staging directory of a run that is gone" in said[0], p.err


def test_stale_stage_is_removed_silently_without_verbose(tmp):
    out = tmp / "out"
    proc = start_stalled(out)
    stop(proc, signal.SIGKILL)
    p = layersplit(fixtures.path(ARCHIVE), out)
    assert p.returncode == 0, p.err
    assert staging_dirs(tmp) == []
    assert "staging" not in p.err, p.err


def test_live_runs_stage_is_kept(tmp):
    """A run still working on the same OUTDIR keeps its stage: its lock says
    it is alive.  The second run fails to commit (OUTDIR is taken)."""
    out = tmp / "out"
    proc = start_stalled(out)
    try:
        live = staging_dirs(tmp)
        p = layersplit("--verbose", fixtures.path(ARCHIVE), out)
        assert p.returncode == 0, p.err
        assert "removed the staging" not in p.err, p.err
        assert staging_dirs(tmp) == live, staging_dirs(tmp)
        assert proc.poll() is None
    finally:
        err = stop(proc, signal.SIGTERM)
    assert_error(type("R", (), {"returncode": proc.returncode, "err": err}), 128 + signal.SIGTERM,
                 ["interrupted by SIGTERM"])
    assert staging_dirs(tmp) == [], "the live run removes its own stage when stopped"


def test_locked_stage_of_a_dead_pid_is_kept_and_unlocked_one_removed(tmp):
    """The lock, not the pid, proves a run alive: two stages named with a pid
    that does not exist, one of them locked (as a run in another pid
    namespace would hold it), one not."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    locked = tmp / (".out.layersplit-%d-aaaaaa" % dead.pid)
    unlocked = tmp / (".out.layersplit-%d-bbbbbb" % dead.pid)
    other = tmp / (".other.layersplit-%d-cccccc" % dead.pid)
    for d in (locked, unlocked, other):
        d.mkdir()
        (d / "f").write_bytes(b"data")
    fd = os.open(locked, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        p = layersplit("-v", fixtures.path(ARCHIVE), tmp / "out")
        assert p.returncode == 0, p.err
    finally:
        os.close(fd)
    assert locked.is_dir() and (locked / "f").exists(), "a locked stage was removed"
    assert not unlocked.exists(), "the unlocked stage of a dead pid is still there"
    assert other.is_dir(), "a stage for another OUTDIR was touched"
    assert str(unlocked.name) in p.err and str(locked.name) not in p.err, p.err


def test_signals_during_cleanup_do_not_stop_it(tmp):
    """A policy that stages 20 000 files in 100 directories at the first
    entry, whose data then never comes; SIGTERM, and then a burst of SIGTERM, SIGINT and SIGHUP
    while the stage is being removed: the first signal's status, one line,
    nothing left."""
    policy = tmp / "many.lua"
    policy.write_text("""
local fs = require "layersplit.fs"
local p = {}
function p.entry(ctx)
	for d = 1, 100 do
		local dir = ctx:path("d" .. d)
		assert(fs.mkdir(dir))
		for f = 1, 200 do
			assert(fs.write_file(fs.join(dir, "f" .. f), "x"))
		end
	end
	io.stderr:write("staged\\n")
end
return p
""")
    parent = tmp / "p"
    parent.mkdir()
    proc = subprocess.Popen([binary(), "--policy", str(policy), "-", str(parent / "out")],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    header = tarfile.TarInfo("layer.tar")
    header.size = 1 << 20
    try:
        proc.stdin.write(header.tobuf(format=tarfile.USTAR_FORMAT) + bytes(1000))
        proc.stdin.flush()
        assert proc.stderr.readline() == b"staged\n"
        proc.send_signal(signal.SIGTERM)
        sent = 1
        while proc.poll() is None and sent < 2000:
            with_ = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)[sent % 3]
            try:
                proc.send_signal(with_)
            except ProcessLookupError:
                break
            sent += 1
        proc.wait(timeout=60)
        err = proc.stderr.read().decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stderr.close()
    assert_error(type("R", (), {"returncode": proc.returncode, "err": err}), 128 + signal.SIGTERM,
                 ["interrupted by SIGTERM"])
    print("# %d signals sent" % sent)
    assert os.listdir(parent) == [], "left behind after %d signals: %r" % (sent, os.listdir(parent))


def test_outdir_with_a_240_byte_name(tmp):
    """A valid OUTDIR whose last component is 240 bytes (and 255, the most a
    name can have, in UTF-8): the stage name is shortened, not the OUTDIR."""
    for name in ("o" * 240, "\u00e9" * 127 + "x"):
        assert len(name.encode()) in (240, 255)
        p = run_in([fixtures.path(ARCHIVE), name], tmp)
        assert p.returncode == 0, p.err
        expect.check_output(fixtures.path(ARCHIVE), tmp / name)
        assert staging_dirs(tmp) == []
    proc = start_stalled(tmp / ("s" * 255))
    try:
        stage = staging_dirs(tmp)[0]
        assert len(stage.encode()) <= 255 and stage.startswith(".sss"), stage
    finally:
        stop(proc)


def test_stage_failure_names_the_outdir_not_dot(tmp):
    """Where no staging directory can be made (a read-only file system), the
    message names OUTDIR as given, even when its parent is the working
    directory."""
    with tmpfs(tmp / "mnt", "size=1m,ro") as mnt:
        if mnt is None:
            return
        name = "o" * 240
        p = run_in([fixtures.path(ARCHIVE), name], mnt)
        line = assert_error(p, 3, ["Read-only file system"])
        assert line.startswith("layersplit: %s: " % name), line
