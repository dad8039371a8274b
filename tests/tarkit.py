"""Writing image archives the way their producers lay them out.

Used by fixtures.py (archives around layers made by umoci and skopeo) and by
make_sample.py (the committed demo archive). Standard library only; every
header has mtime 0 and owner 0/0 so the same input gives the same bytes.
"""
import hashlib
import io
import json
import tarfile


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def compact(value):
    """JSON the way Go's json.Marshal writes it (docker, containerd, skopeo)."""
    return json.dumps(value, separators=(",", ":")).encode()


class Entry:
    """One tar entry: kind is "file", "dir", "symlink" or "hardlink"."""

    def __init__(self, name, kind="file", data=b"", target="", mode=None):
        self.name, self.kind, self.data, self.target = name, kind, data, target
        self.mode = mode if mode is not None else {"dir": 0o755, "symlink": 0o777}.get(kind, 0o644)


def tar_bytes(entries, sort=False):
    """A tar stream of entries, in the given order (or sorted by name)."""
    if sort:
        entries = sorted(entries, key=lambda e: e.name)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.mtime = 0
            info.mode = e.mode
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if e.kind == "file":
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                         "hardlink": tarfile.LNKTYPE}[e.kind]
            info.linkname = e.target
            tar.addfile(info)
    return buf.getvalue()


def layer_tar(files):
    """A small layer tar from (name, content) pairs; content None = directory."""
    entries = []
    for name, content in files:
        if content is None:
            entries.append(Entry(name, "dir"))
        else:
            entries.append(Entry(name, "file", content))
    return tar_bytes(entries)


def config_for(layers, architecture="amd64"):
    """A minimal OCI image config whose diff_ids match the given layer tars."""
    return compact({
        "architecture": architecture,
        "os": "linux",
        "config": {},
        "created": "1970-01-01T00:00:00Z",
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + sha256(t) for t in layers]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "tests"}
                    for _ in layers],
    })


def pick_id(seed, before=None, after=None):
    """A v1-style 64-hex id from seed that sorts before/after the given ids."""
    n = 0
    while True:
        cand = sha256(("%s/%d" % (seed, n)).encode())
        if (before is None or cand < before) and (after is None or cand > after):
            return cand
        n += 1


def legacy_archive(images, link="symlink", chain=False, repositories=True,
                   extra=(), manifest=None):
    """A docker <= 24 `docker save` stream.

    images: list of {"tags": [...], "config": bytes, "layers": [(v1id, tar)]}.
    The first occurrence (in manifest order) of a diff holds the layer.tar;
    another directory with the same diff gets a relative symlink
    `../<first>/layer.tar` (chain=True: to the previous occurrence instead), or,
    with link="hardlink", whichever directory sorts first holds the data and the
    others are tar hard links to it ("hardlink-first": the one sorting last holds
    it, so the links come before their target).  Entries come in lexical order, as docker's
    directory walk writes them.  extra: more Entry objects; manifest: replaces
    manifest.json's value.
    """
    entries = {}
    by_diff = {}          # diff -> [v1id, ...] in manifest order
    sections = []
    repos = {}
    for image in images:
        cfg_name = sha256(image["config"]) + ".json"
        entries[cfg_name] = Entry(cfg_name, "file", image["config"])
        parent = ""
        for v1id, tar in image["layers"]:
            diff = sha256(tar)
            ids = by_diff.setdefault(diff, [])
            if v1id not in ids:
                ids.append(v1id)
            entries[v1id + "/"] = Entry(v1id + "/", "dir")
            entries[v1id + "/VERSION"] = Entry(v1id + "/VERSION", "file", b"1.0")
            entries[v1id + "/json"] = Entry(v1id + "/json", "file", compact(
                {"id": v1id, "parent": parent, "created": "1970-01-01T00:00:00Z",
                 "container_config": {"Cmd": None}, "os": "linux"}))
            parent = v1id
        for tag in image["tags"]:
            repo, _, t = tag.rpartition(":")
            repos.setdefault(repo, {})[t] = image["layers"][-1][0]
        sections.append({"Config": cfg_name, "RepoTags": image["tags"],
                         "Layers": [v + "/layer.tar" for v, _ in image["layers"]]})
    tars = {v1id: tar for image in images for v1id, tar in image["layers"]}
    for diff, ids in by_diff.items():
        if link in ("hardlink", "hardlink-first"):
            # a real tar puts the data first; "hardlink-first" puts the links first
            first = min(ids) if link == "hardlink" else max(ids)
            for v1id in ids:
                name = v1id + "/layer.tar"
                if v1id == first:
                    entries[name] = Entry(name, "file", tars[v1id])
                else:
                    entries[name] = Entry(name, "hardlink", target=first + "/layer.tar")
            continue
        for i, v1id in enumerate(ids):
            name = v1id + "/layer.tar"
            if i == 0:
                entries[name] = Entry(name, "file", tars[v1id])
            else:
                to = ids[i - 1] if chain else ids[0]
                entries[name] = Entry(name, "symlink", target="../%s/layer.tar" % to)
    entries["manifest.json"] = Entry("manifest.json", "file",
                                     compact(sections if manifest is None else manifest))
    if repositories:
        entries["repositories"] = Entry("repositories", "file", compact(repos))
    for e in extra:
        entries[e.name] = e
    return tar_bytes(entries.values(), sort=True)


def oci_manifest(config, layers, config_type="application/vnd.oci.image.config.v1+json"):
    """OCI image manifest bytes; layers: [(mediaType, blob bytes)]."""
    return compact({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": config_type, "digest": "sha256:" + sha256(config),
                   "size": len(config)},
        "layers": [{"mediaType": mt, "digest": "sha256:" + sha256(b), "size": len(b)}
                   for mt, b in layers],
    })


def descriptor(media_type, blob, annotations=None, platform=None):
    d = {"mediaType": media_type, "digest": "sha256:" + sha256(blob), "size": len(blob)}
    if platform:
        d["platform"] = platform
    if annotations:
        d["annotations"] = annotations
    return d


def oci_archive(blobs, index, manifest=None, repositories=None, dirs=True):
    """An OCI image layout as a tar stream: blobs/sha256/<hex> (blobs first),
    index.json, oci-layout, and docker >= 25's manifest.json/repositories when
    given.  blobs: iterable of bytes."""
    entries = [Entry("blobs/", "dir"), Entry("blobs/sha256/", "dir")] if dirs else []
    seen = set()
    for blob in blobs:
        name = "blobs/sha256/" + sha256(blob)
        if name not in seen:
            seen.add(name)
            entries.append(Entry(name, "file", blob))
    entries.append(Entry("index.json", "file", compact(index)))
    entries.append(Entry("oci-layout", "file", b'{"imageLayoutVersion":"1.0.0"}'))
    if manifest is not None:
        entries.append(Entry("manifest.json", "file", compact(manifest)))
    if repositories is not None:
        entries.append(Entry("repositories", "file", compact(repositories)))
    return tar_bytes(entries, sort=True)
