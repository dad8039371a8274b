"""Running build/layersplit (or $LAYERSPLIT) and checking how it fails."""
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 120


def binary():
    b = os.environ.get("LAYERSPLIT") or str(REPO / "build" / "layersplit")
    assert os.access(b, os.X_OK), "no layersplit binary at %s (run make)" % b
    return b


def layersplit(*args, input=None, stdin=None, timeout=TIMEOUT):
    """Runs the tool. input: bytes fed through a pipe; stdin: a file object."""
    if input is None and stdin is None:
        stdin = subprocess.DEVNULL
    p = subprocess.run([binary()] + [str(a) for a in args], input=input, stdin=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    p.err = p.stderr.decode(errors="replace")
    return p


def split(archive, out, *options, pipe=False):
    """layersplit [options] ARCHIVE OUT, or ... - OUT with the archive on a pipe;
    asserts success."""
    if pipe:
        p = layersplit(*options, "-", out, input=Path(archive).read_bytes())
    else:
        p = layersplit(*options, archive, out)
    assert p.returncode == 0, "exit %d: %s" % (p.returncode, p.err.strip())
    return p


def staging_dirs(parent):
    return sorted(n for n in os.listdir(parent) if n.startswith(".") and ".layersplit-" in n)


def snapshot(d):
    """{relative path: bytes or None for directories} of everything under d."""
    d = Path(d)
    if not d.exists():
        return None
    snap = {}
    for p in sorted(d.rglob("*")):
        snap[str(p.relative_to(d))] = None if p.is_dir() else p.read_bytes()
    return snap


def assert_error(p, code, keywords=()):
    """Exit status code and exactly one stderr line `layersplit: <what>: <why>`
    containing one of keywords (case-insensitive), if any are given."""
    lines = p.err.splitlines()
    assert p.returncode == code, "exit %d, want %d; stderr: %r" % (p.returncode, code, p.err)
    assert len(lines) == 1, "want one line on stderr, got %d: %r" % (len(lines), p.err)
    line = lines[0]
    assert line.startswith("layersplit: "), "stderr does not start with 'layersplit: ': %r" % line
    assert line.count(": ") >= 2, "want 'layersplit: <what>: <why>', got %r" % line
    if keywords:
        assert any(k.lower() in line.lower() for k in keywords), \
            "stderr %r mentions none of %r" % (line, list(keywords))
    return line


def run_in(args, cwd, data=None):
    """The tool with args, working in cwd; data: fed through a pipe."""
    p = subprocess.run([binary()] + [str(a) for a in args], cwd=str(cwd),
                       input=data, stdin=None if data is not None else subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    p.err = p.stderr.decode(errors="replace")
    return p


def make_decoy(tmp):
    decoy = tmp / "decoy"
    decoy.mkdir()
    (decoy / "keep").write_text("the decoy's own file\n")
    return decoy


def assert_rejected(tmp, archive, keywords=(), code=1, options=(), mentions=None, decoy=None):
    """archive (a path) rejected three ways with nothing changed anywhere."""
    decoy = decoy or make_decoy(tmp)
    decoy_before = snapshot(decoy)
    data = Path(archive).read_bytes()
    cases = [("file into an absent OUTDIR", False, False),
             ("file into an empty OUTDIR", False, True),
             ("pipe into an absent OUTDIR", True, False)]
    for i, (what, pipe, existing) in enumerate(cases):
        parent, cwd = tmp / ("case%d" % i), tmp / ("cwd%d" % i)
        parent.mkdir()
        cwd.mkdir()
        out = parent / "out"
        if existing:
            out.mkdir()
        if pipe:
            p = run_in(list(options) + ["-", out], cwd, data)
        else:
            p = run_in(list(options) + [archive, out], cwd)
        try:
            line = assert_error(p, code, keywords)
            if mentions:
                assert mentions in line, "message %r does not name %s" % (line, mentions)
            if existing:
                assert out.is_dir() and not os.listdir(out), "OUTDIR not left empty: %r" % os.listdir(out)
            else:
                assert not os.path.lexists(out), "OUTDIR was created"
            assert not staging_dirs(parent), "staging dir left behind: %r" % staging_dirs(parent)
            assert sorted(os.listdir(parent)) == (["out"] if existing else []), \
                "left in OUTDIR's parent: %r" % os.listdir(parent)
            assert os.listdir(cwd) == [], "written into the working directory: %r" % os.listdir(cwd)
            assert snapshot(decoy) == decoy_before, "the decoy directory changed: %r" % sorted(snapshot(decoy))
        except AssertionError as e:
            raise AssertionError("%s: %s" % (what, e)) from None
    return line


def with_repo_tags(archive, *tags):
    """fixtures' legacy_two_images.tar written to archive with manifest.json's
    RepoTags replaced by tags (one list per image section)."""
    import io
    import json
    import tarfile
    import fixtures
    with tarfile.open(fixtures.path("legacy_two_images.tar")) as t, \
            tarfile.open(archive, "w", format=tarfile.GNU_FORMAT) as o:
        for m in t:
            data = t.extractfile(m).read() if m.isfile() else None
            if m.name == "manifest.json":
                manifest = json.loads(data)
                for section, repo_tags in zip(manifest, tags):
                    section["RepoTags"] = repo_tags
                data = json.dumps(manifest).encode()
                m.size = len(data)
            o.addfile(m, io.BytesIO(data) if data is not None else None)
    return archive
