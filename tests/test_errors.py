"""Every way an archive or a command line is rejected.

Each case checks: the exit status (1 archive rejected, 2 usage, 4 policy
failed), exactly one stderr line `layersplit: <what>: <why>` naming the
problem, and that nothing is left: an absent OUTDIR stays absent, an empty one
stays empty, no `.<name>.layersplit-*` staging directory remains.  Archive
cases run from a file into an absent and into an empty OUTDIR, and from a pipe.
The hostile archives are made by fixtures.build_hostile().
"""
import json
import os
import re
import signal
import subprocess
import tarfile
import time

import fixtures
from harness import assert_error, assert_rejected, binary, layersplit, snapshot, staging_dirs


def hostile(name):
    return fixtures.path("hostile/" + name)


def absent_from(archive):
    """The layer ids and config name that manifest.json names but the archive lacks."""
    with tarfile.open(archive) as t:
        names = set(t.getnames())
        manifest = json.load(t.extractfile("manifest.json"))
    refs = [r for s in manifest for r in [s["Config"]] + s["Layers"]]
    return [r.split("/")[0] for r in refs if r not in names]


def rejected(tmp, archive, code=1, keywords=(), mentions=None):
    """Runs archive three ways and checks the error and that nothing is left;
    mentions: a string the message must contain (the thing at fault)."""
    return assert_rejected(tmp, archive, keywords, code, mentions=mentions)


def test_valid_hostile_base_is_accepted(tmp):
    """The archive the hostile ones are made from passes, so they fail for their flaw."""
    p = layersplit(hostile("valid.tar"), tmp / "out")
    assert p.returncode == 0, p.err


def test_truncated_inside_a_layer(tmp):
    rejected(tmp, hostile("truncated_in_layer.tar"), 1, ["truncat"])


def test_truncated_inside_a_header(tmp):
    rejected(tmp, hostile("truncated_in_header.tar"), 1, ["truncat"])


def test_garbage_bytes(tmp):
    rejected(tmp, hostile("garbage.bin"), 1)


def test_empty_input(tmp):
    rejected(tmp, hostile("empty.tar"), 1)


def test_stream_of_zeros(tmp):
    """An empty tar (all-zero blocks) holds no image."""
    rejected(tmp, hostile("zeros.tar"), 1)


def test_duplicate_manifest_json(tmp):
    rejected(tmp, hostile("duplicate_manifest.tar"), 1, ["duplicate"])


def test_malformed_manifest_json(tmp):
    rejected(tmp, hostile("malformed_json.tar"), 1, ["json"])


def test_absurdly_nested_json(tmp):
    """manifest.json of 100000 `[`: a depth limit, not a stack overflow."""
    rejected(tmp, hostile("nested_json.tar"), 1, ["json"])


def test_manifest_names_a_missing_layer(tmp):
    """The message names the missing layer (the config is there)."""
    [missing] = absent_from(hostile("missing_layer.tar"))
    rejected(tmp, hostile("missing_layer.tar"), 1, ["not found"], mentions=missing)


def test_manifest_names_a_missing_config(tmp):
    [missing] = absent_from(hostile("missing_config.tar"))
    rejected(tmp, hostile("missing_config.tar"), 1, ["not found"], mentions=missing)


def test_diff_id_value_mismatch(tmp):
    rejected(tmp, hostile("diff_id_mismatch.tar"), 1, ["diff_id"])


def test_fewer_diff_ids_than_layers(tmp):
    rejected(tmp, hostile("diff_id_count_short.tar"), 1, ["diff_id"])


def test_more_diff_ids_than_layers(tmp):
    rejected(tmp, hostile("diff_id_count_long.tar"), 1, ["diff_id"])


def test_absolute_entry_path(tmp):
    rejected(tmp, hostile("absolute_path.tar"), 1, ["absolute"])


def test_dotdot_entry_path(tmp):
    rejected(tmp, hostile("dotdot_path.tar"), 1, ["climbs out"])


def test_absolute_symlink_target(tmp):
    rejected(tmp, hostile("absolute_symlink.tar"), 1, ["absolute"])


def test_symlink_target_escaping_the_archive(tmp):
    rejected(tmp, hostile("escaping_symlink.tar"), 1, ["climbs out", "escap", "outside"])


def test_dangling_symlink(tmp):
    rejected(tmp, hostile("dangling_symlink.tar"), 1, ["dangling"])


def test_symlink_loop(tmp):
    rejected(tmp, hostile("symlink_loop.tar"), 1, ["loop"])


def test_nonempty_outdir_is_a_usage_error_and_left_alone(tmp):
    out = tmp / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    (out / "sub").mkdir()
    before = snapshot(out)
    p = layersplit(fixtures.path("legacy_symlink.tar"), out)
    assert_error(p, 2, ["not empty"])
    assert snapshot(out) == before, "OUTDIR changed"
    assert not staging_dirs(tmp), staging_dirs(tmp)


def test_unknown_option_is_a_usage_error(tmp):
    p = layersplit("--no-such-option", fixtures.path("legacy_symlink.tar"), tmp / "out")
    assert_error(p, 2)
    assert not os.path.lexists(tmp / "out")
    assert os.listdir(tmp) == []


def test_level_out_of_range_is_a_usage_error(tmp):
    for engine, level in (("libdeflate", "0"), ("libdeflate", "13"), ("libdeflate", "x"),
                          ("zlib", "0"), ("zlib", "10"), (None, "13")):
        options = ("--engine", engine) if engine else ()
        p = layersplit(*options, "--level", level, fixtures.path("legacy_symlink.tar"), tmp / "out")
        assert_error(p, 2)
        assert os.listdir(tmp) == [], "--level %s left %r" % (level, os.listdir(tmp))


def test_missing_arguments_is_a_usage_error(tmp):
    p = layersplit(fixtures.path("legacy_symlink.tar"))
    assert_error(p, 2)


def test_missing_input_file_is_an_io_error(tmp):
    p = layersplit(tmp / "no-such-archive.tar", tmp / "out")
    assert_error(p, 3, ["no such file"])
    assert os.listdir(tmp) == []


def test_outdir_in_a_missing_directory_is_an_io_error(tmp):
    p = layersplit(fixtures.path("legacy_symlink.tar"), tmp / "no-such-dir" / "out")
    assert_error(p, 3, ["no such file"])
    assert os.listdir(tmp) == []


def test_policy_runtime_error_names_file_and_line(tmp):
    """A policy that raises: exit 4, the message says where (file:line)."""
    policy = tmp / "broken_policy.lua"
    policy.write_text("-- a policy with a bug on line 3\nlocal settings = nil\n"
                      "local level = settings.level\nreturn {}\n")
    parent = tmp / "p"
    parent.mkdir()
    p = layersplit("--policy", policy, fixtures.path("legacy_symlink.tar"), parent / "out")
    line = assert_error(p, 4)
    assert re.search(r"broken_policy\.lua:3\b", line), "no broken_policy.lua:3 in %r" % line
    assert os.listdir(parent) == [], os.listdir(parent)


def test_policy_failing_midway_leaves_nothing(tmp):
    """A policy hook that raises after layers were staged: exit 4, file:line
    in the message, the staging directory removed."""
    policy = tmp / "midway_policy.lua"
    policy.write_text(
        "-- the default policy, failing when manifest.json (after the layers) arrives\n"
        "local launchpad = require \"layersplit.policies.launchpad\"\n"
        "local policy = setmetatable({}, {__index = launchpad})\n"
        "function policy.entry(ctx, entry)\n"
        "\tif entry.path == \"manifest.json\" then\n"
        "\t\terror(\"refusing \" .. entry.path)\n"
        "\tend\n"
        "\treturn launchpad.entry(ctx, entry)\n"
        "end\n"
        "return policy\n")
    parent = tmp / "p"
    parent.mkdir()
    p = layersplit("--policy", policy, fixtures.path("legacy_two_images.tar"), parent / "out")
    line = assert_error(p, 4)
    assert re.search(r"midway_policy\.lua:6\b", line), "no midway_policy.lua:6 in %r" % line
    assert os.listdir(parent) == [], os.listdir(parent)


def interrupted(tmp, sig):
    """Half an archive on a pipe, then sig: the tool stops and leaves nothing."""
    data = fixtures.path("legacy_two_images.tar").read_bytes()
    parent = tmp / "p"
    parent.mkdir()
    out = parent / "out"
    proc = subprocess.Popen([binary(), "-", str(out)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(data[:len(data) // 2])
        proc.stdin.flush()
        deadline = time.time() + 10
        while not staging_dirs(parent) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None, "exited (%d) with half an archive still open" % proc.returncode
        assert staging_dirs(parent), "no .out.layersplit-* staging dir beside OUTDIR while running"
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)   # stdin stays open: only the signal can stop it
        except subprocess.TimeoutExpired:
            raise AssertionError("still running 10 s after signal %d" % sig)
        assert proc.returncode != 0, "exit 0 after signal %d" % sig
        assert not os.path.lexists(out), "OUTDIR exists after signal"
        assert os.listdir(parent) == [], "left behind: %r" % os.listdir(parent)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdin.close()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_sigterm_midway_leaves_nothing(tmp):
    interrupted(tmp, signal.SIGTERM)


def test_sigint_midway_leaves_nothing(tmp):
    interrupted(tmp, signal.SIGINT)
