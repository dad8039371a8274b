#!/usr/bin/env python3
"""Writes tests/data/sample.tar, the small archive `make demo` splits.

A docker <= 24 `docker save` stream of one image with three tiny layers: the
third is the first again (a directory added, removed, added back), so docker
stores it as a symlink `../<first>/layer.tar`, and its directory name sorts
before its target's, as in the real thing.  Deterministic: running this again
gives the same bytes.

    python3 tests/make_sample.py [OUTPUT]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tarkit  # noqa: E402

APP = [
    ("app/", None),
    ("app/hello.txt", b"hello from the layersplit demo\n"),
    ("app/run.sh", b"#!/bin/sh\ncat /app/hello.txt\n"),
]
ETC = [
    (".wh.app", b""),
    ("etc/", None),
    ("etc/motd", b"This image was split by layersplit.\n"),
]


def sample_bytes():
    add = tarkit.layer_tar(APP)
    remove = tarkit.layer_tar(ETC)
    first = tarkit.pick_id("sample/add", after="c")
    middle = tarkit.pick_id("sample/remove")
    again = tarkit.pick_id("sample/add-again", before="4")
    layers = [(first, add), (middle, remove), (again, add)]
    image = {"tags": ["layersplit/sample:latest"],
             "config": tarkit.config_for([t for _, t in layers]),
             "layers": layers}
    return tarkit.legacy_archive([image])


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "data", "sample.tar")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "wb") as f:
        f.write(sample_bytes())


if __name__ == "__main__":
    main()
