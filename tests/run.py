#!/usr/bin/env python3
"""The test runner `make check` calls: python3 tests/run.py [PATTERN...]

Builds (or reuses) the fixtures, then runs every `test_*` function of every
tests/test_*.py module, each in a fresh temporary directory passed as its one
argument (a pathlib.Path).  Prints `ok NAME` or `FAIL NAME: reason` per test and
ends with `N passed, N failed`; exits 1 if any failed.  A PATTERN selects the
tests whose `module.function` name contains it.  The binary is $LAYERSPLIT or
build/layersplit.  KEEP=1 keeps the temporary directories of failed tests.
Standard library only.
"""
import importlib
import inspect
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True   # no __pycache__ in the source tree


def discover(patterns):
    tests = []
    for f in sorted(HERE.glob("test_*.py")):
        mod = importlib.import_module(f.stem)
        fns = [(name, fn) for name, fn in vars(mod).items()
               if name.startswith("test_") and callable(fn)
               and getattr(fn, "__module__", None) == mod.__name__]
        fns.sort(key=lambda nf: getattr(nf[1], "order", None) or inspect.getsourcelines(nf[1])[1])
        for name, fn in fns:
            full = "%s.%s" % (f.stem[len("test_"):], name[len("test_"):])
            if not patterns or any(p in full for p in patterns):
                tests.append((full, fn))
    return tests


def reason(exc):
    if isinstance(exc, AssertionError) and str(exc):
        return str(exc).replace("\n", " ")
    tb = traceback.extract_tb(exc.__traceback__)[-1]
    return "%s: %s (%s:%d)" % (type(exc).__name__, exc, Path(tb.filename).name, tb.lineno)


def main(argv):
    os.chdir(HERE.parent)
    start = time.time()
    import fixtures
    try:
        where = fixtures.ensure()
    except Exception as e:  # a fixture that cannot be built fails the run, loudly
        print("FAIL fixtures: %s" % e)
        print("0 passed, 1 failed")
        return 1
    print("# fixtures in %s (%.1fs)" % (where, time.time() - start), flush=True)
    passed = failed = 0
    for name, fn in discover(argv[1:]):
        tmp = Path(tempfile.mkdtemp(prefix="layersplit-test-"))
        try:
            fn(tmp)
        except Exception as e:
            failed += 1
            print("FAIL %s: %s" % (name, reason(e)), flush=True)
            if os.environ.get("KEEP"):
                print("#   kept %s" % tmp)
                tmp = None
        else:
            passed += 1
            print("ok %s" % name, flush=True)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
