#!/usr/bin/env python3
"""Builds the benchmark's image archive from real files on this machine.

A `docker save` stream in the docker <= 24 layout (`<v1id>/layer.tar`,
`<v1id>/json`, `<v1id>/VERSION`, `<config-sha>.json` with the layers'
rootfs.diff_ids, `manifest.json`, `repositories`, entries in lexical order),
whose layers hold files from /usr/lib, /usr/share and /usr/bin (or the
colon-separated BENCH_SOURCES): each layer takes the next files of one source
directory in sorted order, so the same machine gives the same image.  Layers
are a few hundred MB each (four for 1000 MB, at least two).

Everything streams: each layer tar is written once to DIR/layers/NN.tar
(hashed on the way; kept, since the peers compress these same bytes), then
the archive is written around them to DIR/image.tar.  DIR/info.json says what
was built; a DIR whose info.json matches the size, the sources and this
file's text is reused as it is.  Standard library only.

    python3 bench/make_image.py SIZE_MB DIR
"""
import hashlib
import io
import json
import os
import shutil
import stat
import sys
import tarfile
from pathlib import Path

MB = 1000 * 1000
SOURCES = ("/usr/lib", "/usr/share", "/usr/bin")
CREATED = "1970-01-01T00:00:00Z"
REPO_NAME = "layersplit/bench"


def compact(value):
    """JSON the way Go's json.Marshal writes it (docker writes these files)."""
    return json.dumps(value, separators=(",", ":")).encode()


def sources():
    env = os.environ.get("BENCH_SOURCES")
    return tuple(s for s in env.split(":") if s) if env else SOURCES


def cache_key(size_mb, roots):
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(compact([size_mb, list(roots)]))
    return h.hexdigest()[:16]


def walk(root):
    """(path, lstat) of every directory, regular file and symlink under root,
    in sorted order, directories before what they hold."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        try:
            yield dirpath, os.lstat(dirpath)
        except OSError:
            continue
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                yield path, st


class HashingWriter:
    """A write-only file that hashes and counts what passes through."""

    def __init__(self, f):
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def write(self, data):
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)


def tar_info(name, st):
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def add_path(tar, path, st, emitted):
    """Adds one file, symlink or directory (and its missing parents) to a
    layer; returns the bytes it adds, 0 when it could not be read."""
    name = path.lstrip("/")
    parents = []
    parent = os.path.dirname(name)
    while parent and parent not in emitted:
        parents.append(parent)
        parent = os.path.dirname(parent)
    for d in reversed(parents):
        emitted.add(d)
        info = tar_info(d + "/", os.lstat("/" + d))
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    if stat.S_ISDIR(st.st_mode):
        if name not in emitted:
            emitted.add(name)
            info = tar_info(name + "/", st)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        return 512
    info = tar_info(name, st)
    if stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
        tar.addfile(info)
        return 512
    try:
        f = open(path, "rb")
    except OSError:
        return 0
    with f:
        info.size = os.fstat(f.fileno()).st_size
        tar.addfile(info, f)
    return 512 + info.size


def write_layer(path, walkers, budget):
    """Writes one layer tar of about budget bytes, taking items from the
    walkers in turn (the next when one runs out); returns (diff_id hex, size,
    files)."""
    emitted, added, files = set(), 0, 0
    with open(path, "wb") as f:
        w = HashingWriter(f)
        with tarfile.open(fileobj=w, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for walker in walkers:
                for p, st in walker:   # a break leaves the walker where it was
                    n = add_path(tar, p, st, emitted)
                    if stat.S_ISREG(st.st_mode) and n:
                        files += 1
                    added += n
                    if added >= budget:
                        break
                if added >= budget:
                    break
    return w.sha.hexdigest(), w.size, files


def build(size_mb, out):
    roots = sources()
    nlayers = max(2, round(size_mb / 250))
    walkers = [walk(r) for r in roots]
    tmp = out.parent / (".%s-%d" % (out.name, os.getpid()))
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "layers").mkdir(parents=True)
    layers, parent = [], ""
    for i in range(nlayers):
        # this layer's source first, the others when it runs out
        k = i % len(walkers)
        name = "%02d.tar" % (i + 1)
        budget = (size_mb * MB - sum(l["bytes"] for l in layers)) // (nlayers - i)
        diff, size, files = write_layer(tmp / "layers" / name, walkers[k:] + walkers[:k], budget)
        v1id = hashlib.sha256(("%s %s" % (parent, diff)).encode()).hexdigest()
        layers.append({"file": "layers/" + name, "v1id": v1id, "diff_id": "sha256:" + diff,
                       "bytes": size, "files": files, "source": roots[k]})
        parent = v1id
    config = compact({
        "architecture": "amd64", "os": "linux", "created": CREATED,
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [l["diff_id"] for l in layers]},
        "history": [{"created": CREATED, "created_by": "layersplit bench: files from " + l["source"]}
                    for l in layers],
    })
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    tag = "%dmb" % size_mb
    entries = {config_name: config,
               "manifest.json": compact([{"Config": config_name, "RepoTags": ["%s:%s" % (REPO_NAME, tag)],
                                          "Layers": [l["v1id"] + "/layer.tar" for l in layers]}]),
               "repositories": compact({REPO_NAME: {tag: layers[-1]["v1id"]}})}
    prev = ""
    for l in layers:
        v1 = l["v1id"]
        entries[v1 + "/"] = None
        entries[v1 + "/VERSION"] = b"1.0"
        entries[v1 + "/json"] = compact({"id": v1, "parent": prev, "created": CREATED,
                                         "container_config": {"Cmd": None}, "os": "linux"})
        entries[v1 + "/layer.tar"] = tmp / l["file"]
        prev = v1
    with tarfile.open(tmp / "image.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            value = entries[name]
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.uname = info.gname = ""
            if value is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(value, bytes):
                info.size, info.mode = len(value), 0o644
                tar.addfile(info, io.BytesIO(value))
            else:
                info.size, info.mode = value.stat().st_size, 0o644
                with open(value, "rb") as f:
                    tar.addfile(info, f)
    info = {"key": cache_key(size_mb, roots), "size_mb": size_mb, "sources": list(roots),
            "archive": "image.tar", "archive_bytes": (tmp / "image.tar").stat().st_size,
            "config": config_name, "tag": "%s:%s" % (REPO_NAME, tag), "layers": layers}
    (tmp / "info.json").write_text(json.dumps(info, indent=1) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    return info


def ensure(size_mb, out):
    """The info of the image of size_mb in directory out, built unless cached."""
    out = Path(out)
    try:
        info = json.loads((out / "info.json").read_text())
        if info.get("key") == cache_key(size_mb, sources()) and (out / "image.tar").exists() and \
                all((out / l["file"]).exists() for l in info["layers"]):
            return info
    except (OSError, ValueError):
        pass
    out.parent.mkdir(parents=True, exist_ok=True)
    return build(size_mb, out)


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: make_image.py SIZE_MB DIR")
    info = ensure(int(argv[1]), argv[2])
    print("%s: %d bytes, %d layers" % (Path(argv[2]) / info["archive"], info["archive_bytes"],
                                       len(info["layers"])))


if __name__ == "__main__":
    main(sys.argv)
