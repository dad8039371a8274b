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
