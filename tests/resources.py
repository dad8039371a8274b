#!/usr/bin/env python3
"""`make check-resources`: the worst small archives under hard resource limits.

Each case is an archive under 1 MB built here (fixtures_hostile.py) that once
cost minutes or gigabytes.  Each run gets RLIMIT_CPU of 10 s (the kernel kills
the process past it: SIGXCPU, then SIGKILL), RLIMIT_AS of 2 GiB (an allocation
past it fails, which fails the run) and a wall-clock kill at 60 s for a
machine that is busy with other work; its peak RSS (getrusage of the child)
must stay at or under 256 MiB.  The case must end as it should: accepted, or
rejected with exit 1 and the message naming the cap.  Prints one line per case
with the CPU seconds and peak RSS, and `N passed, N failed`; exits 1 if any
failed.  Not a timed unit test: the limits are the kernel's.

    python3 tests/resources.py [PATTERN...]
"""
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True

import fixtures_hostile as fh  # noqa: E402
from harness import binary, staging_dirs  # noqa: E402

CPU_SECONDS = 10
ADDRESS_SPACE = 2 << 30
MAX_RSS = 256 << 20
WALL_SECONDS = 60
MAX_ARCHIVE = 1 << 20


def limits():
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS + 1))
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_limited(args):
    """(exit status or -signal, stderr, CPU seconds, peak RSS bytes)."""
    err = tempfile.TemporaryFile()
    p = subprocess.Popen([binary()] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=err, preexec_fn=limits)
    deadline = time.monotonic() + WALL_SECONDS
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            p.kill()
            pid, status, usage = os.wait4(p.pid, 0)
            break
        time.sleep(0.05)
    p.returncode = 0  # reaped here, not by Popen
    err.seek(0)
    text = err.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    return code, text, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def case_fanout(d):
    """Nested indexes sharing children: 12 descriptors of the next index, 7 deep."""
    (d / "a.tar").write_bytes(fh.shared_fanout(fh.Base(), 12, 7))
    return d / "a.tar", [], 0, None


def case_shared_config(d):
    """10 000 images sharing one 1.5 MB config."""
    fh.many_images(d / "a.tar.gz", 10000, config_size=1500000)
    return d / "a.tar.gz", [], 0, None


def case_empty_layers(d):
    """50 000 empty <n>.tar layers: stopped at the cap of 10 000."""
    fh.many_layers_staged(d / "a.tar.gz", 50000)
    return d / "a.tar.gz", [], 1, "more than 10000 layer blobs"


def case_index_images(d):
    """index.json naming one manifest 10 001 times: past the image cap."""
    fh.many_index_images(d / "a.tar.gz", 10001)
    return d / "a.tar.gz", [], 1, "more than 10000 images"


def case_sparse_hole(d):
    """A sparse layer entry with a 1 TiB hole."""
    (d / "a.tar").write_bytes(fh.sparse_layer(fh.Base()))
    return d / "a.tar", [], 1, "sparse"


def case_gzip_ratio(d):
    """A gzip layer of 900 MiB of zeros at gzip's ~1000:1: accepted."""
    fh.high_ratio_layer(d / "a.tar", "gzip", 900 << 20)
    return d / "a.tar", [], 0, None


_built = {}


def zstd_bomb(path):
    """A zstd layer of 4 GiB of zeros (built once per run)."""
    if "zstd" not in _built:
        fh.high_ratio_layer(path, "zstd", 4 << 30)
        _built["zstd"] = path.read_bytes()
    path.write_bytes(_built["zstd"])
    return path


def case_zstd_bomb(d):
    """A zstd layer of 4 GiB of zeros: stopped by --max-ratio."""
    return zstd_bomb(d / "a.tar"), [], 1, "--max-ratio limit"


def case_zstd_bomb_size_cap(d):
    """The same zstd layer without the ratio cap, stopped by --max-layer-size 1G."""
    return zstd_bomb(d / "a.tar"), ["--max-ratio", "0", "--max-layer-size", "1G"], 1, "--max-layer-size limit"


CASES = [case_fanout, case_shared_config, case_empty_layers, case_index_images,
         case_sparse_hole, case_gzip_ratio, case_zstd_bomb, case_zstd_bomb_size_cap]


def check(case, d):
    archive, options, want, keyword = case(d)
    size = archive.stat().st_size
    assert size < MAX_ARCHIVE, "fixture is %d bytes, not under 1 MB" % size
    out = d / "out"
    code, err, cpu, rss = run_limited(options + [archive, out])
    what = "exit %d, %.2f s CPU, %.0f MiB RSS, %d-byte archive" % (code, cpu, rss / 2 ** 20, size)
    assert code != -signal.SIGXCPU and code != -signal.SIGKILL, "killed (%s): %s" % (what, err.strip())
    assert code == want, "%s, want exit %d: %s" % (what, want, err.strip())
    assert rss <= MAX_RSS, "%s: peak RSS over %d MiB" % (what, MAX_RSS >> 20)
    if keyword:
        assert keyword in err and len(err.splitlines()) == 1, "%s: %r" % (what, err)
        assert not out.exists() and not staging_dirs(d), "%s: left behind: %r" % (what, os.listdir(d))
    return what


def main(argv):
    passed = failed = 0
    for case in CASES:
        name = case.__name__[len("case_"):]
        if argv[1:] and not any(p in name for p in argv[1:]):
            continue
        d = Path(tempfile.mkdtemp(prefix="layersplit-resources-"))
        try:
            what = check(case, d)
        except AssertionError as e:
            failed += 1
            print("FAIL %s: %s" % (name, e), flush=True)
        else:
            passed += 1
            print("ok %s: %s" % (name, what), flush=True)
        finally:
            shutil.rmtree(d, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    os.chdir(HERE.parent)
    sys.exit(main(sys.argv))
