#!/usr/bin/env python3
"""The original algorithm, for the benchmark: what Launchpad's gatherer did.

Reads a docker <= 24 archive (the only layout it knew) with a tarfile stream;
extracts each `<v1id>/layer.tar` to a file; gzips that file to
`<v1id>.tar.gz` at level 9 with Python's gzip module (whose header carries the
file name and the time, so every run gives new bytes); then reads the
compressed file back to sha256 it.  A symlinked layer.tar reuses its target's
result.  Writes digests.json ({diff_id: {"digest", "source", "layer_id"}}) and
the other top-level files, as it did.  One thread, standard library only;
written here from its description, to time it, not to use.

    python3 bench/original.py ARCHIVE OUTDIR
"""
import gzip
import hashlib
import json
import os
import posixpath
import shutil
import sys
import tarfile


def gather(archive, out):
    extract = os.path.join(out, "extract")
    os.makedirs(extract)
    digests, links = {}, {}
    with tarfile.open(archive, "r|") as tar:
        for member in tar:
            name = member.name
            if member.isdir():
                os.makedirs(os.path.join(extract, name), exist_ok=True)
                continue
            directory = posixpath.dirname(name)
            if member.issym():
                links[directory] = posixpath.normpath(posixpath.join(directory, member.linkname))
                continue
            if not member.isfile():
                continue
            target = os.path.join(extract, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with tar.extractfile(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            if posixpath.basename(name) != "layer.tar":
                continue
            compressed = os.path.join(out, directory + ".tar.gz")
            with open(target, "rb") as src, gzip.open(compressed, "wb", compresslevel=9) as dst:
                shutil.copyfileobj(src, dst)
            with open(compressed, "rb") as f:
                digests[directory] = hashlib.file_digest(f, "sha256").hexdigest()
            os.unlink(target)
    for directory, target in links.items():
        first = posixpath.dirname(target)
        shutil.copyfile(os.path.join(out, first + ".tar.gz"), os.path.join(out, directory + ".tar.gz"))
        digests[directory] = digests[first]
    with open(os.path.join(extract, "manifest.json")) as f:
        manifest = json.load(f)
    sections = []
    for section in manifest:
        with open(os.path.join(extract, section["Config"])) as f:
            diff_ids = json.load(f)["rootfs"]["diff_ids"]
        shutil.copyfile(os.path.join(extract, section["Config"]), os.path.join(out, section["Config"]))
        layer_ids = [posixpath.dirname(layer) for layer in section["Layers"]]
        sections.append({diff: {"digest": digests[lid], "source": "", "layer_id": lid}
                         for diff, lid in zip(diff_ids, layer_ids)})
    shutil.copyfile(os.path.join(extract, "manifest.json"), os.path.join(out, "manifest.json"))
    with open(os.path.join(out, "digests.json"), "w") as f:
        json.dump(sections, f)
    shutil.rmtree(extract)


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: original.py ARCHIVE OUTDIR")
    os.makedirs(argv[2], exist_ok=True)
    gather(argv[1], argv[2])


if __name__ == "__main__":
    main(sys.argv)
