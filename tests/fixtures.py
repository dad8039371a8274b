#!/usr/bin/env python3
"""Builds the image archives the tests read, into build/fixtures/.

Layers come from real tools: umoci makes the images (files with every mtime
fixed, so a directory added, removed and added again gives two byte-identical
layer tars), skopeo writes them out as docker-archive (podman's layout),
oci-archive and dir: (plain, gzip and zstd blobs).  The docker layouts, which
need a docker daemon to produce, are laid out by hand around those blobs with
tarkit.py, the way docker <= 24, docker >= 25 (classic store) and docker >= 25
(containerd store) write them.  Hostile archives for the error tests are made
from a small valid one by Python.

The cache is rebuilt when this file, tarkit.py or fixtures_hostile.py changes.  Run directly to
(re)build and list:  python3 tests/fixtures.py
"""
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import tarkit  # noqa: E402
from tarkit import Entry, sha256  # noqa: E402

REPO = HERE.parent
CACHE = Path(os.environ.get("LAYERSPLIT_FIXTURES", REPO / "build" / "fixtures"))
CREATED = "1970-01-01T00:00:00Z"
GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
PLAIN = "application/vnd.oci.image.layer.v1.tar"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"

# The layouts every success test runs on: file name -> what it is.
LAYOUTS = {
    "legacy_symlink.tar": "docker <= 24, a duplicated layer as a symlink that comes before its target",
    "legacy_hardlink.tar": "docker <= 24, a duplicated layer as a tar hard link",
    "legacy_hardlink_first.tar": "docker <= 24 by hand, a tar hard link that comes before its target",
    "legacy_symlink_chain.tar": "docker <= 24, a layer three times: symlink -> symlink -> file",
    "legacy_two_images.tar": "docker <= 24, two images sharing layers (two manifest sections)",
    "legacy_retarred.tar": "docker <= 24 archive unpacked and packed again by GNU tar (./ names)",
    "legacy_symlink.tar.gz": "docker <= 24 archive piped through gzip",
    "legacy_two_images.tar.zst": "docker <= 24 archive piped through zstd",
    "legacy_two_images.tar.xz": "docker <= 24 archive piped through xz",
    "legacy_two_images.tar.bz2": "docker <= 24 archive piped through bzip2",
    "podman_dup.tar": "skopeo docker-archive: (podman layout), a layer used twice",
    "podman_two_images.tar": "podman layout, two images sharing layers",
    "docker25_classic.tar": "docker >= 25, classic store: uncompressed blobs, two images",
    "docker25_containerd.tar": "docker >= 25, containerd store: gzip and zstd blobs",
    "containerd_multimember.tar": "containerd layout with a multi-member gzip blob",
    "oci_archive.tar": "skopeo oci-archive:",
    "oci_platforms.tar": "OCI archive, index.json with amd64 and arm64 manifests",
    "oci_nested_index.tar": "OCI archive, index.json -> image index -> two manifests",
}


def fixture_key():
    h = hashlib.sha256()
    for name in ("fixtures.py", "tarkit.py", "fixtures_hostile.py"):
        h.update((HERE / name).read_bytes())
    return h.hexdigest()[:16]


def ensure():
    """Builds the fixtures unless the cache is current; returns its path."""
    key = fixture_key()
    stamp = CACHE / "STAMP"
    if stamp.exists() and stamp.read_text().strip() == key:
        return CACHE
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    tmp = CACHE.parent / (".fixtures-%d" % os.getpid())
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        build(tmp)
        shutil.rmtree(tmp / "work")
        (tmp / "STAMP").write_text(key + "\n")
        shutil.rmtree(CACHE, ignore_errors=True)
        os.rename(tmp, CACHE)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return CACHE


def path(name):
    return CACHE / name


def run(*cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(map(str, cmd)), p.returncode,
                                                  p.stderr.decode(errors="replace").strip()))
    return p.stdout


# ---------------------------------------------------------------- umoci images

def words(seed, size):
    """Deterministic text that compresses like real files do (not too well)."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(4000)]
    out, n = [], 0
    while n < size:
        w = rng.choice(vocab)
        out.append(w)
        n += len(w) + 1
    return (" ".join(out)[:size]).encode()


class Bundle:
    """An unpacked umoci bundle; commit() adds a layer with what changed."""

    def __init__(self, layout, tag, where):
        self.layout, self.dir = layout, Path(where)
        self.rootfs = self.dir / "rootfs"
        run("umoci", "unpack", "--rootless", "--image", "%s:%s" % (layout, tag), str(self.dir))

    def write(self, name, data, mode=0o644):
        p = self.rootfs / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        p.chmod(mode)

    def commit(self, tag):
        # Fixed mtimes everywhere, rootfs itself included, so equal trees give equal tars.
        for top, dirs, files in os.walk(self.rootfs):
            for n in dirs + files:
                os.utime(os.path.join(top, n), (0, 0), follow_symlinks=False)
        os.utime(self.rootfs, (0, 0))
        run("umoci", "repack", "--refresh-bundle", "--history.created", CREATED,
            "--image", "%s:%s" % (self.layout, tag), str(self.dir))


def make_images(work):
    """OCI layout work/oci with tags base, dup, triple, second (amd64), arm (arm64)."""
    L = str(work / "oci")
    run("umoci", "init", "--layout", L)
    run("umoci", "new", "--image", L + ":base")
    b = Bundle(L, "base", work / "bundle-base")
    b.write("etc/hello", b"hello from the layersplit tests\n")
    b.write("etc/os-release", b'NAME="layersplit test"\nID=layersplit\n')
    b.write("opt/keep", b"")
    b.write("usr/bin/tool", b"#!/bin/sh\necho tool\n", 0o755)
    os.symlink("tool", b.rootfs / "usr/bin/tool-link")
    b.commit("base")
    b.write("usr/share/doc/layersplit/README", words(1, 6000))
    os.link(b.rootfs / "usr/share/doc/layersplit/README", b.rootfs / "usr/share/doc/layersplit/README.hard")
    b.commit("base")
    b.write("var/lib/layersplit/data.bin", words(2, 1 << 20))
    b.commit("base")

    second = Bundle(L, "base", work / "bundle-second")
    second.write("srv/extra.txt", b"only in the second image\n")
    second.commit("second")

    # dup: a directory added, removed, added again -> layers 4 and 6 identical.
    def add_dup():
        b.write("opt/dup/f", b"the same bytes every time\n")
        b.write("opt/dup/g", words(3, 3000))
    add_dup()
    b.commit("dup")
    shutil.rmtree(b.rootfs / "opt/dup")
    b.commit("dup")
    add_dup()
    b.commit("dup")
    # triple: once more -> layers 4, 6, 8 identical (and 5, 7).
    shutil.rmtree(b.rootfs / "opt/dup")
    b.commit("triple")
    add_dup()
    b.commit("triple")

    run("umoci", "new", "--image", L + ":arm")
    run("umoci", "config", "--image", L + ":arm", "--architecture", "arm64", "--no-history")
    a = Bundle(L, "arm", work / "bundle-arm")
    a.write("etc/hello", b"hello from arm64\n")
    a.commit("arm")
    a.write("usr/bin/tool", b"#!/bin/sh\necho arm tool\n", 0o755)
    a.commit("arm")

    for tag in ("base", "dup", "triple", "second", "arm"):
        run("umoci", "config", "--image", "%s:%s" % (L, tag), "--created", CREATED, "--no-history")
    return L


class DirImage:
    """An image as skopeo's dir: transport wrote it."""

    def __init__(self, d):
        d = Path(d)
        self.manifest = json.loads((d / "manifest.json").read_bytes())
        self.config = (d / self.manifest["config"]["digest"].split(":")[1]).read_bytes()
        self.layers = [(l["mediaType"], (d / l["digest"].split(":")[1]).read_bytes())
                       for l in self.manifest["layers"]]
        self.diff_ids = json.loads(self.config)["rootfs"]["diff_ids"]


def skopeo_dirs(L, work):
    """{tag: {"plain"|"gzip"|"zstd": DirImage}}"""
    out = {}
    for tag in ("base", "dup", "triple", "second", "arm"):
        out[tag] = {}
        for kind, flags in (("plain", ["--dest-decompress"]), ("gzip", []),
                            ("zstd", ["--dest-compress", "--dest-compress-format", "zstd"])):
            if kind == "zstd" and tag != "base":
                continue
            d = work / ("dir-%s-%s" % (tag, kind))
            run("skopeo", "copy", "-q", *flags, "oci:%s:%s" % (L, tag), "dir:%s" % d)
            out[tag][kind] = DirImage(d)
    return out


# ---------------------------------------------------------------- layouts

def legacy_image(img, seed, tags, order=None):
    """A legacy image spec with v1 ids; order: {layer index: (before, after)} bounds
    to make chosen directory names sort before/after others."""
    layers = []
    for i, (_, tar) in enumerate(img["plain"].layers):
        before, after = (order or {}).get(i, (None, None))
        layers.append((tarkit.pick_id("%s/%d" % (seed, i), before=before, after=after), tar))
    return {"tags": tags, "config": img["plain"].config, "layers": layers}


def podman_merge(a, b):
    """Two skopeo docker-archive streams as one, as `podman save -m` writes it:
    each image's files, shared ones once, then manifest.json and repositories."""
    out, seen, manifest, repos = [], set(), [], {}
    for data in (a, b):
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            for m in t:
                content = t.extractfile(m).read() if m.isfile() else b""
                if m.name == "manifest.json":
                    manifest += json.loads(content)
                elif m.name == "repositories":
                    for repo, tags in json.loads(content).items():
                        repos.setdefault(repo, {}).update(tags)
                elif m.name not in seen:
                    seen.add(m.name)
                    kind = "symlink" if m.issym() else "dir" if m.isdir() else "file"
                    out.append(Entry(m.name, kind, content, m.linkname, m.mode))
    out.append(Entry("manifest.json", "file", tarkit.compact(manifest), mode=0o444))
    out.append(Entry("repositories", "file", tarkit.compact(repos), mode=0o444))
    return tarkit.tar_bytes(out)


def docker25(images, layer_type, repositories):
    """docker >= 25 `docker save`: OCI layout + manifest.json (+ repositories).
    images: [(tags, config, [blob])]."""
    blobs, descs, sections, repos = [], [], [], {}
    for tags, config, layers in images:
        manifest = tarkit.oci_manifest(config, [(layer_type(blob), blob) for blob in layers])
        blobs += layers + [config, manifest]
        for tag in tags:
            descs.append(tarkit.descriptor(MANIFEST, manifest, annotations={
                "io.containerd.image.name": tag,
                "org.opencontainers.image.ref.name": tag.rpartition(":")[2]}))
            repo, _, t = tag.rpartition(":")
            repos.setdefault(repo, {})[t] = sha256(layers[-1])
        sections.append({"Config": "blobs/sha256/" + sha256(config), "RepoTags": tags,
                         "Layers": ["blobs/sha256/" + sha256(b) for b in layers]})
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": descs}
    return tarkit.oci_archive(blobs, index, manifest=sections,
                              repositories=repos if repositories else None)


def media_type(blob):
    if blob[:2] == b"\x1f\x8b":
        return GZIP
    if blob[:4] == b"\x28\xb5\x2f\xfd":
        return ZSTD
    return PLAIN


def oci_platforms(images, nested_name=None, name=None):
    """OCI archive without manifest.json. images: [(DirImage gzip, platform)]."""
    blobs, descs = [], []
    for img, platform in images:
        manifest = tarkit.oci_manifest(img.config, img.layers)
        blobs += [b for _, b in img.layers] + [img.config, manifest]
        descs.append(tarkit.descriptor(MANIFEST, manifest, platform=platform,
                                       annotations={"org.opencontainers.image.ref.name": name} if name else None))
    if nested_name:
        inner = tarkit.compact({"schemaVersion": 2, "mediaType": INDEX, "manifests": descs})
        blobs.append(inner)
        descs = [tarkit.descriptor(INDEX, inner, annotations={
            "org.opencontainers.image.ref.name": nested_name})]
    return tarkit.oci_archive(blobs, {"schemaVersion": 2, "mediaType": INDEX, "manifests": descs})


def build_layouts(d, work, dirs):
    dup, triple = dirs["dup"], dirs["triple"]
    assert dup["plain"].diff_ids[3] == dup["plain"].diff_ids[5], "umoci gave different dup layers"
    assert triple["plain"].diff_ids[3] == triple["plain"].diff_ids[7]

    # docker <= 24: the later copy of layer 4 (layer 6) sorts before its target.
    a = "c" * 64
    img = legacy_image(dup, "legacy-dup", ["example.com/legacy:dup"],
                       {3: (None, a), 5: ("4", None)})
    assert img["layers"][5][0] < img["layers"][3][0]
    (d / "legacy_symlink.tar").write_bytes(tarkit.legacy_archive([img]))
    (d / "legacy_hardlink.tar").write_bytes(tarkit.legacy_archive([img], link="hardlink"))
    (d / "legacy_hardlink_first.tar").write_bytes(tarkit.legacy_archive([img], link="hardlink-first"))

    img = legacy_image(triple, "legacy-triple", ["example.com/legacy:triple"],
                       {3: (None, "c"), 5: ("8", "4"), 7: ("4", None)})
    (d / "legacy_symlink_chain.tar").write_bytes(tarkit.legacy_archive([img], chain=True))

    base = legacy_image(dirs["base"], "legacy-two", ["example.com/legacy:base"], {2: (None, "c")})
    sec = legacy_image(dirs["second"], "legacy-two", ["example.com/legacy:second", "example.com/legacy:latest"])
    # Shared layers keep their ids; the shared top layer of base gets another id
    # in second (docker derives a top layer's id from the config) that sorts first.
    sec["layers"][2] = (tarkit.pick_id("legacy-two-second/2", before="4"), sec["layers"][2][1])
    assert sha256(sec["layers"][2][1]) == sha256(base["layers"][2][1])
    two = tarkit.legacy_archive([base, sec])
    (d / "legacy_two_images.tar").write_bytes(two)

    # Unpacked and packed again by GNU tar: every name starts with "./".
    x = work / "retar"
    x.mkdir()
    run("tar", "-C", str(x), "-xf", str(d / "legacy_symlink.tar"))
    run("tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner",
        "-C", str(x), "-cf", str(d / "legacy_retarred.tar"), ".")

    for tool, src, dst in (("gzip -n -c", "legacy_symlink.tar", "legacy_symlink.tar.gz"),
                           ("zstd -q -c", "legacy_two_images.tar", "legacy_two_images.tar.zst"),
                           ("xz -c", "legacy_two_images.tar", "legacy_two_images.tar.xz"),
                           ("bzip2 -c", "legacy_two_images.tar", "legacy_two_images.tar.bz2")):
        run("sh", "-c", '%s "$1" > "$2"' % tool, "sh", str(d / src), str(d / dst))

    # podman / skopeo docker-archive:
    L = str(work / "oci")
    run("skopeo", "copy", "-q", "oci:%s:dup" % L, "docker-archive:%s:example.com/app:dup" % (d / "podman_dup.tar"))
    for tag in ("base", "second"):
        run("skopeo", "copy", "-q", "oci:%s:%s" % (L, tag),
            "docker-archive:%s:example.com/app:%s" % (work / ("podman-%s.tar" % tag), tag))
    (d / "podman_two_images.tar").write_bytes(podman_merge(
        (work / "podman-base.tar").read_bytes(), (work / "podman-second.tar").read_bytes()))

    # docker >= 25, classic store: uncompressed blobs named by diff_id.
    (d / "docker25_classic.tar").write_bytes(docker25(
        [(["example.com/app:dup"], dup["plain"].config, [t for _, t in dup["plain"].layers]),
         (["example.com/app:second"], dirs["second"]["plain"].config,
          [t for _, t in dirs["second"]["plain"].layers])],
        lambda b: PLAIN, repositories=True))

    # docker >= 25, containerd store: blobs as pulled (gzip, zstd, gzip).
    b = dirs["base"]
    mixed = [b["gzip"].layers[0][1], b["zstd"].layers[1][1], b["gzip"].layers[2][1]]
    (d / "docker25_containerd.tar").write_bytes(docker25(
        [(["example.com/ctr:1.0"], b["plain"].config, mixed)], media_type, repositories=False))

    # A gzip blob of two members (BGZF-like): must come out as ONE member.
    top = b["plain"].layers[2][1]
    half = work / "half"
    half.mkdir()
    (half / "a").write_bytes(top[:len(top) // 2])
    (half / "b").write_bytes(top[len(top) // 2:])
    multi = run("sh", "-c", 'gzip -n -c "$1"; gzip -n -c "$2"', "sh", str(half / "a"), str(half / "b"))
    assert gzip.decompress(multi) == top
    (d / "containerd_multimember.tar").write_bytes(docker25(
        [(["example.com/ctr:multi"], b["plain"].config, [b["gzip"].layers[0][1], b["gzip"].layers[1][1], multi])],
        media_type, repositories=False))

    # OCI archives.
    run("skopeo", "copy", "-q", "oci:%s:base" % L, "oci-archive:%s:example.com/app:1.0" % (d / "oci_archive.tar"))
    plats = [(b["gzip"], {"architecture": "amd64", "os": "linux"}),
             (dirs["arm"]["gzip"], {"architecture": "arm64", "os": "linux"})]
    (d / "oci_platforms.tar").write_bytes(oci_platforms(plats, name="example.com/multi:1.0"))
    (d / "oci_nested_index.tar").write_bytes(oci_platforms(plats, nested_name="example.com/nested:1.0"))


# ---------------------------------------------------------------- hostile

def entries_of(data):
    """The entries of a tar stream, in order, as tarkit Entry objects."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        for m in t:
            if m.isdir():
                out.append(Entry(m.name + "/", "dir", mode=m.mode))
            elif m.issym():
                out.append(Entry(m.name, "symlink", target=m.linkname, mode=m.mode))
            elif m.islnk():
                out.append(Entry(m.name, "hardlink", target=m.linkname, mode=m.mode))
            else:
                out.append(Entry(m.name, "file", t.extractfile(m).read(), mode=m.mode))
    return out


def replace(entries, name, new):
    out = [new if e.name == name else e for e in entries]
    assert any(e.name == name for e in entries), name
    return out


def build_hostile(d):
    h = d / "hostile"
    h.mkdir()
    l1 = tarkit.layer_tar([("etc/", None), ("etc/hostile", words(4, 20000))])
    l2 = tarkit.layer_tar([("srv/", None), ("srv/two", b"two\n")])
    a, b = tarkit.pick_id("hostile/1"), tarkit.pick_id("hostile/2")
    missing = tarkit.pick_id("hostile/missing")
    tags = ["example.com/hostile:1"]

    def archive(config=None, layers=None, **kw):
        layers = layers or [(a, l1), (b, l2)]
        config = config or tarkit.config_for([t for _, t in layers])
        return tarkit.legacy_archive([{"tags": tags, "config": config, "layers": layers}], **kw)

    def config_with(diff_hexes):
        cfg = json.loads(tarkit.config_for([l1, l2]))
        cfg["rootfs"]["diff_ids"] = ["sha256:" + x for x in diff_hexes]
        return tarkit.compact(cfg)

    valid = archive()
    files = {"valid.tar": valid}
    ents = entries_of(valid)
    names = [e.name for e in ents]
    with tarfile.open(fileobj=io.BytesIO(valid)) as t:
        members = {m.name: m for m in t}
    first_layer = members[a + "/layer.tar"]
    files["truncated_in_layer.tar"] = valid[:first_layer.offset_data + first_layer.size // 2]
    files["truncated_in_header.tar"] = valid[:members[b + "/layer.tar"].offset + 100]
    files["garbage.bin"] = random.Random(7).randbytes(65536)
    files["empty.tar"] = b""
    files["zeros.tar"] = bytes(20480)
    files["duplicate_manifest.tar"] = tarkit.tar_bytes(ents + [Entry("manifest.json", "file", tarkit.compact(
        [{"Config": sha256(tarkit.config_for([l1, l2])) + ".json", "RepoTags": ["other:tag"],
          "Layers": [a + "/layer.tar"]}]))])
    files["malformed_json.tar"] = tarkit.tar_bytes(replace(ents, "manifest.json", Entry(
        "manifest.json", "file", b'[{"Config": "%s.json", "RepoTags": ["x:y"], "Layers": [' % a.encode())))
    files["nested_json.tar"] = tarkit.tar_bytes(replace(ents, "manifest.json", Entry(
        "manifest.json", "file", b"[" * 100000)))
    files["missing_layer.tar"] = archive(
        config=config_with([sha256(l1), sha256(l2), sha256(b"not in the archive")]),
        manifest=[{"Config": sha256(config_with([sha256(l1), sha256(l2), sha256(b"not in the archive")])) + ".json",
                   "RepoTags": tags,
                   "Layers": [a + "/layer.tar", b + "/layer.tar", missing + "/layer.tar"]}])
    cfg_name = sha256(tarkit.config_for([l1, l2])) + ".json"
    files["missing_config.tar"] = tarkit.tar_bytes([e for e in ents if e.name != cfg_name])
    files["diff_id_mismatch.tar"] = archive(config=config_with([sha256(l1), sha256(l2 + b"\0")]))
    files["diff_id_count_short.tar"] = archive(config=config_with([sha256(l1)]))
    files["diff_id_count_long.tar"] = archive(config=config_with([sha256(l1), sha256(l2), sha256(l1)]))
    files["absolute_path.tar"] = tarkit.tar_bytes([Entry("/etc/evil", "file", b"evil\n")] + ents)
    files["dotdot_path.tar"] = tarkit.tar_bytes([Entry("../evil", "file", b"evil\n")] + ents)
    link = b + "/layer.tar"
    files["absolute_symlink.tar"] = tarkit.tar_bytes(replace(ents, link, Entry(link, "symlink", target="/" + a + "/layer.tar")))
    files["escaping_symlink.tar"] = tarkit.tar_bytes(replace(ents, link, Entry(link, "symlink", target="../../" + a + "/layer.tar")))
    files["dangling_symlink.tar"] = tarkit.tar_bytes(replace(ents, link, Entry(link, "symlink", target="../%s/layer.tar" % missing)))
    loop = replace(ents, link, Entry(link, "symlink", target="../%s/layer.tar" % missing))
    loop.insert(names.index(b + "/"), Entry(missing + "/layer.tar", "symlink", target="../%s/layer.tar" % b))
    loop.insert(names.index(b + "/"), Entry(missing + "/", "dir"))
    files["symlink_loop.tar"] = tarkit.tar_bytes(loop)
    for name, data in files.items():
        (h / name).write_bytes(data)


def build(d):
    work = d / "work"
    work.mkdir()
    L = make_images(work)
    dirs = skopeo_dirs(L, work)
    build_layouts(d, work, dirs)
    build_hostile(d)
    import fixtures_hostile  # more hostile cases, and the fuzzer's seeds
    fixtures_hostile.build(d)


if __name__ == "__main__":
    where = ensure()
    for p in sorted(where.rglob("*")):
        if p.is_file():
            print("%9d  %s" % (p.stat().st_size, p.relative_to(where)))
