"""Messages a terminal can trust: every string from the archive (entry
names, link targets, manifest paths, RepoTags) reaches stderr escaped the
one way (errors.printable: \\ddd for control characters, invalid UTF-8,
bidi controls, line separators and the backslash), through errors,
--verbose, --trace and the progress line; an error is one line; the input
is named once, and standard input is `<stdin>`.
"""
import json
import re
import signal
from pathlib import Path

import fixtures
import fixtures_hostile
import tarkit
from harness import assert_error, assert_rejected, layersplit, run_in
from tarkit import Entry

# Each a way to attack a terminal or a log reader through one name.
HOSTILE = {
    "newline": "a\nlayersplit: fake success",
    "carriage return": "a\rOK",
    "csi": "a\x1b[2J\x1b[31mred",
    "osc title": "a\x1b]0;owned\x07",
    "bel": "a\x07",
    "c1 csi": "a\u009b2J",
    "bidi override": "a\u202etxt.exe",
    "line separator": "a\u2028b",
    "invalid utf-8": "a\udcff\udcc3(",
}
# What each must become (by its first escaped character).
ESCAPED = {
    "newline": "a\\010layersplit: fake success",
    "carriage return": "a\\013OK",
    "csi": "a\\027[2J\\027[31mred",
    "osc title": "a\\027]0;owned\\007",
    "bel": "a\\007",
    "c1 csi": "a\\194\\1552J",
    "bidi override": "a\\226\\128\\174txt.exe",
    "line separator": "a\\226\\128\\168b",
    "invalid utf-8": "a\\255\\195(",
}


def assert_clean(text, what):
    """text (stderr, decoded from bytes) is safe for a terminal."""
    bad = [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) <= 0x9f
           or c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029"
           or 0xdc80 <= ord(c) <= 0xdcff]
    assert not bad, "%s: %r reached stderr: %r" % (what, bad, text)


def err_of(p):
    """stderr decoded so that invalid UTF-8 shows as surrogates."""
    return p.stderr.decode("utf-8", errors="surrogateescape")


def image_with(extra=(), manifest=None, base=None):
    base = base or fixtures_hostile.Base()
    return tarkit.legacy_archive([base.image()], extra=extra, manifest=manifest)


def write(tmp, name, data):
    path = tmp / name
    path.write_bytes(data)
    return path


def test_hostile_entry_names_in_errors_are_escaped_on_one_line(tmp):
    """An absolute entry name, rejected by the C reader."""
    for kind, name in HOSTILE.items():
        archive = write(tmp, "abs.tar", image_with([Entry("/" + name, "file", b"x")]))
        case = tmp / kind.replace(" ", "-")
        case.mkdir()
        line = assert_rejected(case, archive, ["absolute path"])
        assert_clean(line, kind)
        assert ("/" + ESCAPED[kind]) in line, "%s: %r" % (kind, line)


def test_hostile_hard_link_targets_in_errors_are_escaped(tmp):
    for kind, name in HOSTILE.items():
        archive = write(tmp, "hl.tar", image_with([Entry("zz", "hardlink", target="/" + name)]))
        case = tmp / kind.replace(" ", "-")
        case.mkdir()
        line = assert_rejected(case, archive, ["absolute"])
        assert_clean(line, kind)
        assert ESCAPED[kind] in line, "%s: %r" % (kind, line)


def test_hostile_symlink_targets_in_errors_are_escaped(tmp):
    """A layer that is a symlink whose target dangles, resolved in Lua."""
    base = fixtures_hostile.Base()
    for kind, name in HOSTILE.items():
        entries = fixtures_hostile.replace(base.entries(), base.b + "/layer.tar",
                                           Entry(base.b + "/layer.tar", "symlink", target=name))
        archive = write(tmp, "sl.tar", tarkit.tar_bytes(entries))
        case = tmp / kind.replace(" ", "-")
        case.mkdir()
        line = assert_rejected(case, archive)
        assert_clean(line, kind)
        assert ESCAPED[kind] in line, "%s: %r" % (kind, line)


def test_hostile_manifest_layer_paths_in_errors_are_escaped(tmp):
    """Layers naming a path the archive does not have; the name comes from
    JSON (escapes decoded) or as raw bytes."""
    base = fixtures_hostile.Base()
    for kind, name in HOSTILE.items():
        manifest = base.manifest(layers=[base.a + "/layer.tar", name + "/layer.tar"])
        text = json.dumps(manifest).encode("utf-8", errors="surrogateescape")
        if kind == "invalid utf-8":
            text = text.replace(b"\\udcff\\udcc3", b"\xff\xc3")
        archive = write(tmp, "ml.tar", base.with_manifest(text))
        case = tmp / kind.replace(" ", "-")
        case.mkdir()
        line = assert_rejected(case, archive)
        assert_clean(line, kind)
        if kind != "invalid utf-8":  # JSON may refuse the bytes themselves
            assert ESCAPED[kind] in line, "%s: %r" % (kind, line)


def test_hostile_repo_tags_in_errors_are_escaped(tmp):
    """--policy oci-layout names each image by its tag: two images with the
    same hostile tag are refused, naming the tag; a tag with control
    characters or bytes that are not UTF-8 is refused as manifest.json is
    read, naming where it is, not the tag."""
    base = fixtures_hostile.Base()
    for kind, name in HOSTILE.items():
        tags = ["example.com/x:" + name]
        one = dict(base.image(), tags=tags)
        two = dict(base.image(layers=[(base.a, base.l1)]), tags=tags)
        data = tarkit.legacy_archive([one, two])
        if kind == "invalid utf-8":  # raw bytes in the JSON, not \u escapes
            entries = fixtures.entries_of(data)
            text = next(e.data for e in entries if e.name == "manifest.json")
            text = text.replace(b"\\udcff\\udcc3", b"\xff\xc3")
            data = tarkit.tar_bytes(fixtures_hostile.replace(
                entries, "manifest.json", Entry("manifest.json", "file", text)))
        archive = write(tmp, "tag.tar", data)
        case = tmp / kind.replace(" ", "-")
        case.mkdir()
        if any(ord(c) < 32 or ord(c) == 127 or 0xdc80 <= ord(c) <= 0xdcff for c in name):
            # not UTF-8 text: refused as it is read, before any policy sees it
            line = assert_rejected(case, archive, code=1, options=["--policy", "oci-layout"])
            assert_clean(line, kind)
            assert "RepoTags item 1: not valid UTF-8 text" in line, "%s: %r" % (kind, line)
            continue
        line = assert_rejected(case, archive, code=2, options=["--policy", "oci-layout"])
        assert_clean(line, kind)
        assert ESCAPED[kind] in line and "names two images" in line, "%s: %r" % (kind, line)


def test_hostile_names_in_verbose_and_trace_lines_are_escaped(tmp):
    """An unneeded entry (--verbose says it is skipped) and a symlink to it
    (--trace shows its target) with each hostile name."""
    extra = []
    for i, name in enumerate(HOSTILE.values()):
        extra.append(Entry("x%d%s" % (i, name), "file", b"not needed"))
        extra.append(Entry("y%d" % i, "symlink", target="x%d%s" % (i, name)))
    archive = write(tmp, "v.tar", image_with(extra))
    for option in ("--verbose", "--trace"):
        p = layersplit(option, archive, tmp / ("out" + option))
        assert p.returncode == 0, err_of(p)
        err = err_of(p)
        assert_clean(err, option)
        for kind, want in ESCAPED.items():
            assert want in err, "%s: %s missing: %r" % (option, kind, err)
        # the temporary directory's random name may hold "x6" too
        lines = [l.replace(str(tmp), "TMP") for l in err.splitlines()]
        for i in range(len(HOSTILE)):
            mentions = [l for l in lines if ("x%d" % i) in l and ("y%d" % i) not in l]
            assert len(mentions) == 1, "%s: entry x%d on %d lines: %r" % (option, i, len(mentions), mentions)


def test_input_named_once_and_stdin_as_stdin(tmp):
    """A tar whose header is cut: the message names the input once, as given
    or as <stdin> for standard input."""
    data = fixtures.path("legacy_symlink.tar").read_bytes()[:700]
    archive = write(tmp, "cut.tar", data)
    p = run_in([archive, tmp / "o1"], tmp)
    line = assert_error(p, 1)
    assert line.count(str(archive)) == 1, line
    assert line.startswith("layersplit: %s: " % archive), line
    p = run_in(["-", tmp / "o2"], tmp, data)
    line = assert_error(p, 1)
    assert line.startswith("layersplit: <stdin>: ") and line.count("stdin") == 1, line


def test_stdin_is_stdin_in_every_message(tmp):
    """Not an archive at all, and an archive with no entries, from a pipe."""
    for data, words in ((b"\0" * 10240, ["no entries"]), (b"garbage" * 100, [])):
        p = run_in(["-", tmp / "o"], tmp, data)
        line = assert_error(p, 1, words)
        assert line.startswith("layersplit: <stdin>: ") and line.count("stdin") == 1, line


def test_outdir_in_messages_is_escaped(tmp):
    """OUTDIR is the user's, but printed the same way."""
    out = tmp / "out\x1b]0;t\x07\n"
    p = layersplit(fixtures.path("legacy_symlink.tar"), out)
    assert p.returncode == 0, err_of(p)
    err = err_of(p)
    assert_clean(err, "summary")
    assert "out\\027]0;t\\007\\010: 1 image" in err, err
