"""The command-line options that change how, not what: help, version, level,
threads, engine, quiet, the default policy by name."""
import re
import subprocess
import zlib

import expect
import fixtures
from harness import layersplit, snapshot, split

ARCHIVE = "legacy_two_images.tar"   # has a 1 MiB layer: several compression blocks


def test_help_prints_usage_and_exits_0(tmp):
    p = layersplit("--help")
    assert p.returncode == 0, p.err
    text = p.stdout.decode()
    assert "usage" in text.lower() and "layersplit" in text, text[:200]
    for option in ("--policy", "--level", "--v2metadata"):
        assert option in text, "--help does not mention %s" % option


def test_version_prints_a_version_and_exits_0(tmp):
    p = layersplit("--version")
    assert p.returncode == 0, p.err
    lines = p.stdout.decode().splitlines()
    assert re.fullmatch(r"layersplit \d+\.\d+\.\d+", lines[0]), p.stdout
    # the libraries the layer bytes depend on, as built against
    zlib_version = zlib.ZLIB_RUNTIME_VERSION
    libdeflate = subprocess.run(["pkg-config", "--modversion", "libdeflate"],
                                stdout=subprocess.PIPE, check=True).stdout.decode().strip()
    want = "compression: zlib %s, libdeflate %s" % (zlib_version, libdeflate)
    if isal_built_in():
        isal = subprocess.run(["pkg-config", "--modversion", "libisal"],
                              stdout=subprocess.PIPE, check=True).stdout.decode().strip()
        want += ", isal %s" % isal
    assert lines[1:] == [want], lines


def test_levels_1_and_9_both_follow_the_contract(tmp):
    for level in ("1", "9"):
        split(fixtures.path(ARCHIVE), tmp / level, "--level", level)
        expect.check_output(fixtures.path(ARCHIVE), tmp / level)


def isal_built_in():
    """The build links ISA-L whenever pkg-config finds it (make deps installs it)."""
    return subprocess.run(["pkg-config", "--exists", "libisal"]).returncode == 0


def test_output_does_not_depend_on_thread_count(tmp):
    engines = ["zlib", "libdeflate"] + (["isal"] if isal_built_in() else [])
    for engine in engines:
        runs = {}
        for j in ("1", "2", "4", "7"):
            out = tmp / ("%s-j%s" % (engine, j))
            split(fixtures.path(ARCHIVE), out, "--engine", engine, "-j", j)
            runs[j] = snapshot(out)
        expect.check_output(fixtures.path(ARCHIVE), tmp / ("%s-j1" % engine))
        one = runs["1"]
        for j, other in runs.items():
            differ = sorted(n for n in set(one) | set(other) if one.get(n) != other.get(n))
            assert not differ, "%s: -j 1 and -j %s differ in %r" % (engine, j, differ)


def test_default_is_libdeflate_level_6_launchpad(tmp):
    split(fixtures.path(ARCHIVE), tmp / "default")
    split(fixtures.path(ARCHIVE), tmp / "explicit", "--policy", "launchpad", "--engine",
          "libdeflate", "--level", "6")
    assert snapshot(tmp / "default") == snapshot(tmp / "explicit")
    split(fixtures.path(ARCHIVE), tmp / "zlib", "--engine", "zlib")
    expect.check_output(fixtures.path(ARCHIVE), tmp / "zlib")
    layers = [n for n in snapshot(tmp / "zlib") if n.endswith(".tar.gz")]
    assert layers and all(snapshot(tmp / "zlib")[n] != snapshot(tmp / "default")[n]
                          for n in layers), "the default engine wrote zlib's bytes"


def test_isal_engine_follows_the_contract_where_built_in(tmp):
    """--engine isal: the same contract; a build without it refuses with exit 2."""
    p = layersplit("--engine", "isal", fixtures.path(ARCHIVE), tmp / "out")
    if p.returncode == 2 and not isal_built_in():
        assert p.err.startswith("layersplit: ") and len(p.err.splitlines()) == 1, p.err
        return
    assert p.returncode == 0, p.err
    expect.check_output(fixtures.path(ARCHIVE), tmp / "out")


def test_quiet_success_prints_nothing(tmp):
    p = split(fixtures.path(ARCHIVE), tmp / "out", "--quiet")
    assert p.stderr == b"" and p.stdout == b"", (p.stdout, p.stderr)
