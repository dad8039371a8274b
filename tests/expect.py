"""What layersplit must write for an archive, worked out from the archive itself.

The reading here is the test's own, independent of the tool: Python's tarfile
(free to seek, it is not under test), the layout rules of the contract, and
the image configs' diff_ids.  check_output() compares an output directory
with it and raises AssertionError saying what differs.
"""
import bz2
import gzip
import hashlib
import io
import json
import lzma
import posixpath
import subprocess
import tarfile
import zlib
from pathlib import Path

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def outer_decompress(data):
    """The tar stream inside an archive file that may be compressed as a whole."""
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:4] == b"\x28\xb5\x2f\xfd":
        return subprocess.run(["zstd", "-d", "-c", "-q"], input=data, stdout=subprocess.PIPE,
                              check=True).stdout
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(data)
    if data[:3] == b"BZh":
        return bz2.decompress(data)
    return data


def blob_is_single_gzip_member(blob):
    if blob[:2] != b"\x1f\x8b":
        return False
    d = zlib.decompressobj(31)
    d.decompress(blob)
    return d.eof and not d.unused_data


def layer_id_of(ref):
    """The contract's layer_id for a layer's path in the archive."""
    if ref.endswith("/layer.tar"):
        return ref[:-len("/layer.tar")]
    base = posixpath.basename(ref)
    if ref.startswith("blobs/sha256/"):
        return base
    if base.endswith(".tar"):
        return base[:-len(".tar")]
    return base


class Image:
    def __init__(self, tags, config, refs, blobs):
        self.tags = tags
        self.config = config
        self.refs = refs
        self.layer_ids = [layer_id_of(r) for r in refs]
        self.blobs = blobs          # the layer bytes as stored in the archive
        self.diff_ids = json.loads(config)["rootfs"]["diff_ids"]


class Archive:
    """The images an archive holds, as the contract describes them."""

    def __init__(self, path):
        data = outer_decompress(Path(path).read_bytes())
        self.members, self.data = {}, {}
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as t:
            for m in t:
                name = m.name[2:] if m.name.startswith("./") else m.name
                self.members[name] = m
                if m.isfile():
                    self.data[name] = t.extractfile(m).read()
        self.repositories = self.data.get("repositories")
        if "manifest.json" in self.data:
            self.images = [self._section(s) for s in json.loads(self.data["manifest.json"])]
        else:
            index = json.loads(self.data["index.json"])
            self.images = []
            self._walk(index["manifests"], None)

    def read(self, name, depth=0):
        """An entry's bytes, following symlinks (relative to the link's
        directory) and hard links (archive paths)."""
        assert depth < 40, "link loop at " + name
        m = self.members[name]
        if m.issym():
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), m.linkname))
            return self.read(target, depth + 1)
        if m.islnk():
            return self.read(m.linkname, depth + 1)
        return self.data[name]

    def _section(self, s):
        refs = s["Layers"]
        return Image(s.get("RepoTags") or [], self.read(s["Config"]), refs,
                     [self.read(r) for r in refs])

    def blob(self, digest):
        return self.read("blobs/sha256/" + digest.split(":", 1)[1])

    def _walk(self, descriptors, inherited):
        for d in descriptors:
            ann = d.get("annotations") or {}
            name = (ann.get("io.containerd.image.name")
                    or ann.get("org.opencontainers.image.ref.name") or inherited)
            body = json.loads(self.blob(d["digest"]))
            if d.get("mediaType") in INDEX_TYPES or "manifests" in body:
                self._walk(body["manifests"], name)
                continue
            refs = ["blobs/sha256/" + l["digest"].split(":", 1)[1] for l in body["layers"]]
            self.images.append(Image([name] if name else [], self.blob(body["config"]["digest"]),
                                     refs, [self.read(r) for r in refs]))


def gunzip_one_member(data, what):
    """The contents of a gzip file that must be ONE member with a reproducible
    header (no FNAME, mtime 0)."""
    assert data[:2] == b"\x1f\x8b", "%s is not gzip (starts %r)" % (what, data[:4])
    assert data[2] == 8, "%s: compression method %d, not deflate" % (what, data[2])
    assert not data[3] & 0x08, "%s: gzip header has a file name (FNAME)" % what
    mtime = int.from_bytes(data[4:8], "little")
    assert mtime == 0, "%s: gzip header mtime is %d, not 0" % (what, mtime)
    d = zlib.decompressobj(31)
    out = d.decompress(data) + d.flush()
    assert d.eof, "%s: gzip stream ends early" % what
    assert not d.unused_data, "%s: %d bytes after the first gzip member (must be one member)" % (
        what, len(d.unused_data))
    return out


def read_like_launchpad(data, what):
    """Reads every member the way Launchpad's uploader does: tarfile r|gz."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|gz") as t:
        for m in t:
            if m.isfile():
                t.extractfile(m).read()
    return True


def check_output(archive, out, v2metadata=None, extra=()):
    """out must be exactly what the contract says for archive.
    v2metadata: {diff hex: (Digest, SourceRepository)} given with --v2metadata;
    extra: more names a policy adds beside the contract's files."""
    model = archive if isinstance(archive, Archive) else Archive(archive)
    out = Path(out)
    v2metadata = v2metadata or {}
    manifest = json.loads((out / "manifest.json").read_bytes())
    digests = json.loads((out / "digests.json").read_bytes())
    assert isinstance(manifest, list) and len(manifest) == len(model.images), \
        "manifest.json has %r, want a list of %d images" % (
            len(manifest) if isinstance(manifest, list) else type(manifest), len(model.images))
    assert isinstance(digests, list) and len(digests) == len(model.images), \
        "digests.json: want a list of %d objects, got %r" % (len(model.images), digests)
    want_files = {"manifest.json", "digests.json"} | set(extra)
    checked = {}
    for i, (img, section, dmap) in enumerate(zip(model.images, manifest, digests)):
        cfg_name = sha256(img.config) + ".json"
        want = {"Config": cfg_name, "RepoTags": img.tags,
                "Layers": [lid + "/layer.tar" for lid in img.layer_ids]}
        assert section == want, "manifest.json[%d] is\n  %r\nwant\n  %r" % (i, section, want)
        assert (out / cfg_name).read_bytes() == img.config, "%s differs from the archive's config" % cfg_name
        want_files.add(cfg_name)
        assert len(img.diff_ids) == len(img.layer_ids), "fixture: diff_id count"
        for lid, diff, blob in zip(img.layer_ids, img.diff_ids, img.blobs):
            name = lid + ".tar.gz"
            want_files.add(name)
            if name in checked:
                assert checked[name] == diff, "%s stands for two diff_ids" % name
                continue
            data = (out / name).read_bytes()
            if blob_is_single_gzip_member(blob):
                # Kept as is: its header is the producer's (Go writes a
                # nonzero mtime), so only the bytes are checked.
                assert data == blob, "%s: a single-member gzip blob must be kept byte for byte" % name
                content = gzip.decompress(data)
            else:
                content = gunzip_one_member(data, name)
            assert "sha256:" + sha256(content) == diff, \
                "%s decompresses to sha256:%s, config says %s" % (name, sha256(content), diff)
            read_like_launchpad(data, name)
            checked[name] = diff
        assert isinstance(dmap, dict) and set(dmap) == set(img.diff_ids), \
            "digests.json[%d] keys %r, want the diff_ids %r" % (i, sorted(dmap), sorted(set(img.diff_ids)))
        for diff, rec in dmap.items():
            assert isinstance(rec, dict) and set(rec) == {"digest", "source", "layer_id"}, \
                "digests.json[%d][%s] = %r" % (i, diff, rec)
            # A diff used twice in one image maps to its last layer_id, as
            # Launchpad's gatherResults filled the map in layer order.
            want_lid = [lid for lid, d in zip(img.layer_ids, img.diff_ids) if d == diff][-1]
            assert rec["layer_id"] == want_lid, "digests.json[%d][%s].layer_id = %r, want %r" % (
                i, diff, rec["layer_id"], want_lid)
            hexd = diff.split(":", 1)[1]
            if hexd in v2metadata:
                want_digest, want_source = v2metadata[hexd]
            else:
                want_digest = sha256((out / (rec["layer_id"] + ".tar.gz")).read_bytes())
                want_source = ""
            assert rec["digest"] == want_digest, "digests.json[%d][%s].digest = %r, want %r" % (
                i, diff, rec["digest"], want_digest)
            assert rec["source"] == want_source, "digests.json[%d][%s].source = %r, want %r" % (
                i, diff, rec["source"], want_source)
    if model.repositories is not None:
        want_files.add("repositories")
        assert (out / "repositories").exists(), "the archive has repositories, the output does not"
        assert (out / "repositories").read_bytes() == model.repositories, "repositories differs from the archive's"
    have = {p.name for p in out.iterdir()}
    assert have == want_files, "output files: extra %r, missing %r" % (
        sorted(have - want_files), sorted(want_files - have))
    for p in out.iterdir():
        assert p.name in extra or (p.is_file() and not p.is_symlink()), "%s is not a regular file" % p.name
    return model
