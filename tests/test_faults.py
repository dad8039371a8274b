"""Faults from outside the archive: signals in the middle of a layer, a full
disk, no inodes left, a read-only file system.

Each must end with one line `layersplit: <what>: <why>` saying what happened,
exit 128+N for signal N and 3 for the file system, no OUTDIR (or the empty one
left empty) and no staging directory.  The file-system cases mount a small
tmpfs (root only, as `make check` runs in CI); where mount is impossible they
say so on stdout and check nothing.
"""
import contextlib
import os
import signal
import subprocess
import time

import expect
import fixtures
import fixtures_hostile
from harness import assert_error, binary, layersplit, staging_dirs

MiB = 1 << 20


class Result:
    def __init__(self, returncode, stderr):
        self.returncode, self.err = returncode, stderr.decode(errors="replace")


def staged_files(parent):
    """{name: size} of the files in the staging directories beside OUTDIR."""
    found = {}
    for d in staging_dirs(parent):
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(parent / d):
                with contextlib.suppress(FileNotFoundError):
                    found[name] = (parent / d / name).stat().st_size
    return found


def interrupted_mid_layer(tmp, sig):
    """A 16 MiB incompressible layer fed through a pipe: the first 8 MiB of
    its data, then nothing more until its half-written .tar.gz is over 1 MiB
    in the staging directory; then sig.  The tool must stop at once, with
    stdin still open, and leave nothing."""
    data, offset = fixtures_hostile.big_layer(16 * MiB)
    parent = tmp / "p"
    parent.mkdir()
    out = parent / "out"
    proc = subprocess.Popen([binary(), "-", str(out)], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(data[:offset + 8 * MiB])
        proc.stdin.flush()
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            if any(size > MiB for size in staged_files(parent).values()):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "exited (%d) with the layer half read: %s" % (
            proc.returncode, proc.stderr.read().decode(errors="replace"))
        partial = staged_files(parent)
        assert any(size > MiB for size in partial.values()), \
            "no partial layer file over 1 MiB in the staging dir: %r" % partial
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)  # stdin stays open: only the signal can stop it
        except subprocess.TimeoutExpired:
            raise AssertionError("still running 30 s after signal %d" % sig)
        p = Result(proc.returncode, proc.stderr.read())
        assert_error(p, 128 + sig, ["interrupted by SIG%s" % signal.Signals(sig).name[3:]])
        assert not os.path.lexists(out), "OUTDIR exists after the signal"
        assert os.listdir(parent) == [], "left behind: %r" % os.listdir(parent)
    finally:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        proc.wait()
        proc.stderr.close()


def test_sigterm_mid_layer_from_a_pipe(tmp):
    interrupted_mid_layer(tmp, signal.SIGTERM)


def test_sigint_mid_layer_from_a_pipe(tmp):
    interrupted_mid_layer(tmp, signal.SIGINT)


def test_sighup_mid_layer_from_a_pipe(tmp):
    interrupted_mid_layer(tmp, signal.SIGHUP)


# ---------------------------------------------------------------- file systems

@contextlib.contextmanager
def tmpfs(where, options):
    """A tmpfs mounted at where with options, or None where mounting is impossible."""
    where.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        print("# %s: skipped: cannot mount a tmpfs (%s)" % (
            where.name, p.stdout.decode(errors="replace").strip() or "mount failed"), flush=True)
        yield None
        return
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)]).returncode != 0:
            subprocess.run(["umount", "-l", str(where)])


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def output_pages(out):
    """What an output directory takes on a tmpfs: each file in whole pages."""
    page = os.sysconf("SC_PAGE_SIZE")
    return sum((p.stat().st_size + page - 1) // page * page for p in out.iterdir())


def full_disk_sweep(tmp, archive):
    """Runs archive into a tmpfs with `budget` bytes free, for budgets from
    nothing to more than the output needs.  Every run either writes the
    contract's output or fails with exit 3, "No space left on device" and
    nothing left but the filler; returns {budget: failing line}."""
    ref = tmp / "ref"
    p = layersplit("-q", archive, ref)
    assert p.returncode == 0, p.err
    need = output_pages(ref)
    page = os.sysconf("SC_PAGE_SIZE")
    failures = {}
    with tmpfs(tmp / "mnt", "size=%d" % (need + 64 * page)) as mnt:
        if mnt is None:
            return None
        budgets = [0, page, need // 4, need // 2, 3 * need // 4, need - 2 * page, need - page,
                   need + 16 * page]
        for budget in budgets:
            filler = mnt / "filler"
            filler.write_bytes(bytes(max(0, free_bytes(mnt) - budget)))
            out = mnt / "out"
            p = layersplit("-q", archive, out)
            try:
                if budget >= need + 16 * page:
                    assert p.returncode == 0, "exit %d with room to spare: %s" % (p.returncode, p.err)
                    expect.check_output(archive, out)
                elif budget < need:
                    line = assert_error(p, 3, ["No space left on device"])
                    failures[budget] = line
                    assert not os.path.lexists(out), "OUTDIR created"
                    assert sorted(os.listdir(mnt)) == ["filler"], "left behind: %r" % os.listdir(mnt)
            except AssertionError as e:
                raise AssertionError("%d bytes free of %d needed: %s" % (budget, need, e)) from None
            filler.unlink()
            subprocess.run(["rm", "-rf", str(out)], check=True)
    return failures


def test_full_disk_while_compressing_copying_and_writing_manifests(tmp):
    """docker <= 24 with a duplicated layer (compressed, then copied under its
    second layer_id): the disk fills in a layer, then in the small files."""
    failures = full_disk_sweep(tmp, fixtures.path("legacy_symlink.tar"))
    if failures is None:
        return
    where = {line.rsplit(": ", 2)[-2].rsplit("/", 1)[-1] for line in failures.values()}
    assert any(w.endswith(".tar.gz") for w in where), where
    assert any(w.endswith(".json") or w == "repositories" for w in where), where


def test_full_disk_with_kept_gzip_and_recompressed_zstd_blobs(tmp):
    """docker >= 25 containerd store: a gzip blob written as is, a zstd blob recompressed."""
    failures = full_disk_sweep(tmp, fixtures.path("docker25_containerd.tar"))
    if failures is None:
        return
    assert len(failures) >= 6, failures


def test_full_disk_leaves_an_empty_outdir_empty(tmp):
    with tmpfs(tmp / "mnt", "size=256k") as mnt:
        if mnt is None:
            return
        (mnt / "out").mkdir()
        p = layersplit(fixtures.path("legacy_symlink.tar"), mnt / "out")
        assert_error(p, 3, ["No space left on device"])
        assert os.listdir(mnt / "out") == [], os.listdir(mnt / "out")
        assert os.listdir(mnt) == ["out"], os.listdir(mnt)


def test_no_inodes_left(tmp):
    """Room for data but only three inodes: the root, the staging directory,
    one file.  Creating the second file fails."""
    with tmpfs(tmp / "mnt", "size=16m,nr_inodes=3") as mnt:
        if mnt is None:
            return
        p = layersplit(fixtures.path("legacy_symlink.tar"), mnt / "out")
        assert_error(p, 3, ["No space left on device"])
        assert os.listdir(mnt) == [], os.listdir(mnt)


def test_read_only_file_system(tmp):
    with tmpfs(tmp / "mnt", "size=1m,ro") as mnt:
        if mnt is None:
            return
        p = layersplit(fixtures.path("legacy_symlink.tar"), mnt / "out")
        assert_error(p, 3, ["Read-only file system"])
        assert os.listdir(mnt) == [], os.listdir(mnt)
