#!/usr/bin/env python3
"""Builds an archive of many empty layers: the per-layer cost of layersplit.

The podman layout: COUNT layers `<n>.tar` at the root, each an empty tar
(1024 zero bytes), images of at most PER_IMAGE layers each (manifest.json
sections with their configs), written as a stream.  The archive is small
(about 1.6 KB a layer), so its time is all per-layer work: a file to create,
a gzip writer to set up, staging, JSON.  Standard library only.

    python3 bench/small_layers.py COUNT PATH
"""
import hashlib
import io
import json
import sys
import tarfile

PER_IMAGE = 100
EMPTY_TAR = bytes(1024)


def compact(value):
    return json.dumps(value, separators=(",", ":")).encode()


def add(t, name, data):
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o444
    t.addfile(info, io.BytesIO(data))


def build(count, path):
    diff_id = "sha256:" + hashlib.sha256(EMPTY_TAR).hexdigest()
    manifest, configs = [], []
    for first in range(0, count, PER_IMAGE):
        layers = ["%d.tar" % n for n in range(first, min(first + PER_IMAGE, count))]
        config = compact({"architecture": "amd64", "os": "linux", "config": {},
                          "rootfs": {"type": "layers", "diff_ids": [diff_id] * len(layers)},
                          "history": [{"created": "1970-01-01T00:00:00Z", "comment": str(first)}]})
        name = hashlib.sha256(config).hexdigest() + ".json"
        configs.append((name, config))
        manifest.append({"Config": name, "RepoTags": ["bench/small:%d" % first],
                         "Layers": layers})
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        for n in range(count):
            add(t, "%d.tar" % n, EMPTY_TAR)
        for name, config in configs:
            add(t, name, config)
        add(t, "manifest.json", compact(manifest))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    build(int(sys.argv[1]), sys.argv[2])
