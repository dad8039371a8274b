"""More hostile and unusual archives, for tests/test_hostile.py and the fuzzer.

fixtures.build() calls build() to write the fixed ones into
build/fixtures/hostile/ beside those of fixtures.build_hostile(); the big ones
(a 20 MB manifest, a slow 16 MB layer, tens of thousands of entries) and the
ones that name a test's own directory are written on demand by the functions
below.  Every archive is a small valid image with one flaw, made the way
tarkit.py lays out docker <= 24 and OCI archives.
"""
import gzip
import io
import json
import random
import subprocess
import tarfile

import tarkit
from tarkit import Entry, sha256

TAGS = ["example.com/hostile:2"]
LONG = 5000  # characters in the "very long name" cases, far past ustar's 100
PLAIN = "application/vnd.oci.image.layer.v1.tar"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def words(seed, size):
    from fixtures import words as w
    return w(seed, size)


class Base:
    """The valid image the flawed ones are made from: two layers, legacy layout."""

    def __init__(self):
        self.l1 = tarkit.layer_tar([("etc/", None), ("etc/base", words(11, 12000))])
        self.l2 = tarkit.layer_tar([("srv/", None), ("srv/more", b"more\n")])
        self.a, self.b = tarkit.pick_id("hostile2/1"), tarkit.pick_id("hostile2/2")
        self.config = tarkit.config_for([self.l1, self.l2])
        self.cfg_name = sha256(self.config) + ".json"

    def image(self, layers=None, config=None):
        layers = layers or [(self.a, self.l1), (self.b, self.l2)]
        return {"tags": TAGS, "config": config or tarkit.config_for([t for _, t in layers]),
                "layers": layers}

    def archive(self, **kw):
        return tarkit.legacy_archive([self.image()], **kw)

    def entries(self, **kw):
        """The valid archive's entries, in order, to change one."""
        from fixtures import entries_of
        return entries_of(self.archive(**kw))

    def manifest(self, config=None, layers=None):
        return [{"Config": config or self.cfg_name, "RepoTags": TAGS,
                 "Layers": layers or [self.a + "/layer.tar", self.b + "/layer.tar"]}]

    def with_manifest(self, value):
        """The valid archive with manifest.json holding value (bytes: as is)."""
        data = value if isinstance(value, bytes) else tarkit.compact(value)
        return tarkit.tar_bytes(replace(self.entries(), "manifest.json",
                                        Entry("manifest.json", "file", data)))


def replace(entries, name, new):
    assert any(e.name == name for e in entries), name
    return [new if e.name == name else e for e in entries]


def raw_tar(members, fmt=tarfile.PAX_FORMAT):
    """A tar stream of (TarInfo, data) pairs, for entry kinds tarkit has no name
    for (devices, FIFOs) and GNU-format long names."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for i, data in members:
            t.addfile(i, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def info(name, kind=tarfile.REGTYPE, size=0, linkname=""):
    i = tarfile.TarInfo(name)
    i.type, i.size, i.linkname, i.mtime, i.mode = kind, size, linkname, 0, 0o644
    return i


def as_tarinfo(entries):
    """tarkit Entry objects as (TarInfo, data) pairs for raw_tar."""
    kinds = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE,
             "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE}
    out = []
    for e in entries:
        i = info(e.name, kinds[e.kind], len(e.data) if e.kind == "file" else 0, e.target)
        out.append((i, e.data if e.kind == "file" else None))
    return out


def oci(blobs, index, **kw):
    return tarkit.oci_archive(blobs, index, **kw)


def oci_image(base, layer_digest=None, config_digest=None):
    """An OCI archive of base's two layers; the digests may be replaced."""
    manifest = json.loads(tarkit.oci_manifest(base.config, [(PLAIN, base.l1), (PLAIN, base.l2)]))
    if layer_digest is not None:
        manifest["layers"][1]["digest"] = layer_digest
    if config_digest is not None:
        manifest["config"]["digest"] = config_digest
    m = tarkit.compact(manifest)
    index = {"schemaVersion": 2, "manifests": [tarkit.descriptor(
        MANIFEST, m)]}
    return oci([base.l1, base.l2, base.config, m], index)


def nested_indexes(base, depth):
    """An OCI archive whose index.json leads through depth image indexes."""
    m = tarkit.oci_manifest(base.config, [(PLAIN, base.l1), (PLAIN, base.l2)])
    blobs = [base.l1, base.l2, base.config, m]
    desc = tarkit.descriptor(MANIFEST, m)
    for _ in range(depth):
        inner = tarkit.compact({"schemaVersion": 2, "manifests": [desc]})
        blobs.append(inner)
        desc = tarkit.descriptor("application/vnd.oci.image.index.v1+json", inner)
    return oci(blobs, {"schemaVersion": 2, "manifests": [desc]})


def gzip_blob_image(base, blob):
    """docker >= 25 containerd layout whose second layer blob is `blob` (a
    corrupt gzip, say) while the manifests name it by its digest."""
    manifest = tarkit.oci_manifest(base.config, [(PLAIN, base.l1),
                                                 ("application/vnd.oci.image.layer.v1.tar+gzip", blob)])
    index = {"schemaVersion": 2, "manifests": [tarkit.descriptor(
        MANIFEST, manifest)]}
    section = [{"Config": "blobs/sha256/" + sha256(base.config), "RepoTags": TAGS,
                "Layers": ["blobs/sha256/" + sha256(base.l1), "blobs/sha256/" + sha256(blob)]}]
    return oci([base.l1, blob, base.config, manifest], index, manifest=section)


def compressed(kind, data):
    """data compressed by kind: gzip, bzip2, xz or zstd."""
    import bz2
    import lzma
    if kind == "gzip":
        return gzip.compress(data, mtime=0)
    if kind == "bzip2":
        return bz2.compress(data)
    if kind == "xz":
        return lzma.compress(data)
    return subprocess.run(["zstd", "-q", "-c"], input=data, stdout=subprocess.PIPE, check=True).stdout


def blob_replaced(base, name, data):
    """An OCI archive of base whose blob `name` (layer1, layer2, config,
    manifest or index) holds `data` under the original blob's name."""
    m = tarkit.oci_manifest(base.config, [(PLAIN, base.l1), (PLAIN, base.l2)])
    inner = tarkit.compact({"schemaVersion": 2, "manifests": [tarkit.descriptor(MANIFEST, m)]})
    blobs = {"layer1": base.l1, "layer2": base.l2, "config": base.config, "manifest": m, "index": inner}
    index = {"schemaVersion": 2, "manifests": [tarkit.descriptor(
        "application/vnd.oci.image.index.v1+json", inner)]}
    ents = tarkit.Entry("blobs/", "dir"), tarkit.Entry("blobs/sha256/", "dir")
    ents = list(ents) + [Entry("blobs/sha256/" + sha256(b), "file", data if k == name else b)
                         for k, b in blobs.items()]
    ents += [Entry("index.json", "file", tarkit.compact(index)),
             Entry("oci-layout", "file", b'{"imageLayoutVersion":"1.0.0"}')]
    return tarkit.tar_bytes(ents, sort=True)


def shared_fanout(base, fan, depth):
    """index.json -> an index with `fan` descriptors of the next index, and so
    on `depth` deep, the last one naming the manifest: fan**depth paths
    through a handful of blobs."""
    m = tarkit.oci_manifest(base.config, [(PLAIN, base.l1), (PLAIN, base.l2)])
    blobs = [base.l1, base.l2, base.config, m]
    desc = tarkit.descriptor(MANIFEST, m)
    for _ in range(depth):
        inner = tarkit.compact({"schemaVersion": 2, "manifests": [desc] * fan})
        blobs.append(inner)
        desc = tarkit.descriptor("application/vnd.oci.image.index.v1+json", inner)
    return oci(blobs, {"schemaVersion": 2, "manifests": [desc]})


def sparse_layer(base, hole=1 << 40, size=None):
    """base with its second layer.tar a PAX (GNU 0.1) sparse entry: 512 bytes
    stored at the end of a `hole`-byte file (a GNU.sparse.size of `size`,
    when given: smaller than the map says, so libarchive does not flag the
    entry as sparse, yet still expands its hole)."""
    ents = base.entries()
    lb = base.b + "/layer.tar"
    pairs = []
    for i, d in as_tarinfo(ents):
        if i.name == lb:
            i = info(lb, size=512)
            i.pax_headers = {"GNU.sparse.size": str(hole if size is None else size),
                             "GNU.sparse.map": "%d,512" % (hole - 512)}
            d = bytes(512)
        pairs.append((i, d))
    return raw_tar(pairs)


def chain(base, hops):
    """The second layer reached through `hops` symlinks, each to the next."""
    ents = base.entries()
    link = base.b + "/layer.tar"
    ids = [tarkit.pick_id("hostile2/chain/%d" % i) for i in range(hops)]
    data = next(e for e in ents if e.name == link).data
    ents = [e for e in ents if e.name != link]
    # b/layer.tar -> ids[0]/layer.tar -> ... -> ids[-1]/layer.tar (the data)
    ents.append(Entry(link, "symlink", target="../%s/layer.tar" % ids[0]))
    for i, v in enumerate(ids):
        ents.append(Entry(v + "/", "dir"))
        if i + 1 < len(ids):
            ents.append(Entry(v + "/layer.tar", "symlink", target="../%s/layer.tar" % ids[i + 1]))
        else:
            ents.append(Entry(v + "/layer.tar", "file", data))
    return tarkit.tar_bytes(ents, sort=True)


def build_cases():
    """{file name: bytes} of the fixed hostile and unusual archives."""
    base = Base()
    a, b = base.a, base.b
    la, lb = a + "/layer.tar", b + "/layer.tar"
    ents = base.entries()
    files = {"base2.tar": base.archive()}

    # Hard links: to the wrong layer, to a file that is no layer, out of the archive.
    files["hardlink_wrong_layer.tar"] = tarkit.tar_bytes(replace(ents, lb, Entry(lb, "hardlink", target=la)))
    files["hardlink_to_non_layer.tar"] = tarkit.tar_bytes(replace(ents, lb, Entry(lb, "hardlink", target=a + "/json")))
    files["hardlink_absolute.tar"] = tarkit.tar_bytes(replace(ents, lb, Entry(lb, "hardlink", target="/etc/passwd")))
    files["hardlink_dotdot.tar"] = tarkit.tar_bytes(replace(ents, lb, Entry(lb, "hardlink", target="../../etc/passwd")))
    files["hardlink_to_itself.tar"] = tarkit.tar_bytes(replace(ents, lb, Entry(lb, "hardlink", target=lb)))

    # Symlinks: a chain past the hop limit; manifest.json itself a symlink out.
    files["symlink_chain_too_long.tar"] = chain(base, 45)
    files["manifest_symlink_absolute.tar"] = tarkit.tar_bytes(replace(
        ents, "manifest.json", Entry("manifest.json", "symlink", target="/etc/passwd")))

    # manifest.json: paths that climb out or are absolute, absent, wrong types.
    files["manifest_config_climbs_out.tar"] = base.with_manifest(base.manifest(config="../../" + base.cfg_name))
    files["manifest_config_absolute.tar"] = base.with_manifest(base.manifest(config="/" + base.cfg_name))
    files["manifest_layer_climbs_out.tar"] = base.with_manifest(base.manifest(
        layers=[la, a + "/../../" + lb]))
    files["manifest_absent.tar"] = tarkit.tar_bytes([e for e in ents if e.name != "manifest.json"])
    files["manifest_is_an_object.tar"] = base.with_manifest(base.manifest()[0])
    files["manifest_is_a_string.tar"] = base.with_manifest("manifest")
    files["manifest_list_of_numbers.tar"] = base.with_manifest([1, 2, 3])
    files["manifest_config_is_a_number.tar"] = base.with_manifest([{"Config": 7, "Layers": [la, lb]}])
    files["manifest_layers_not_strings.tar"] = base.with_manifest([{"Config": base.cfg_name, "Layers": [la, {"x": 1}]}])
    files["manifest_empty_list.tar"] = base.with_manifest([])
    files["config_nested_deep.tar"] = tarkit.tar_bytes(replace(
        ents, base.cfg_name, Entry(base.cfg_name, "file", b'{"a":' * 100000)))
    files["config_not_json.tar"] = tarkit.tar_bytes(replace(
        ents, base.cfg_name, Entry(base.cfg_name, "file", b'{"rootfs": {"diff_ids": [')))
    files["config_without_rootfs.tar"] = tarkit.tar_bytes(replace(
        ents, base.cfg_name, Entry(base.cfg_name, "file", b'{"architecture": "amd64"}')))

    # The stream ends inside manifest.json, the last big entry.
    full = base.archive(repositories=False)
    with tarfile.open(fileobj=io.BytesIO(full)) as t:
        m = {x.name: x for x in t}["manifest.json"]
    files["truncated_in_manifest.tar"] = full[:m.offset_data + m.size // 2]
    # ... and inside the first block of a layer, before its kind is known.
    with tarfile.open(fileobj=io.BytesIO(full)) as t:
        first = min((x for x in t if x.name.endswith("/layer.tar")), key=lambda x: x.offset)
    files["truncated_in_layer_head.tar"] = full[:first.offset_data + 100]
    # ... and between two entries: after manifest.json, before repositories.
    full = base.archive()
    with tarfile.open(fileobj=io.BytesIO(full)) as t:
        cut = {x.name: x for x in t}["repositories"].offset
    files["truncated_between_entries.tar"] = full[:cut]

    # Layers that are not what they claim: random bytes, a device, a FIFO, a directory.
    files["layer_is_random_bytes.tar"] = tarkit.tar_bytes(replace(
        ents, lb, Entry(lb, "file", random.Random(5).randbytes(3000))))
    pairs = as_tarinfo(ents)
    files["layer_is_a_device.tar"] = raw_tar([(info(lb, tarfile.CHRTYPE), None) if i.name == lb else (i, d)
                                             for i, d in pairs])
    files["layer_is_a_fifo.tar"] = raw_tar([(info(lb, tarfile.FIFOTYPE), None) if i.name == lb else (i, d)
                                           for i, d in pairs])
    files["layer_is_a_directory.tar"] = tarkit.tar_bytes(replace(ents, lb, Entry(lb + "/", "dir")))
    files["duplicate_layer_entry.tar"] = tarkit.tar_bytes(ents + [Entry(lb, "file", base.l1)])

    # Compressed layer blobs that are corrupt or truncated (docker >= 25 containerd).
    good = gzip.compress(base.l2, mtime=0)
    files["gzip_layer_truncated.tar"] = gzip_blob_image(base, good[:len(good) // 2])
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xff
    files["gzip_layer_corrupt.tar"] = gzip_blob_image(base, bytes(bad))
    files["gzip_layer_trailing_garbage.tar"] = gzip_blob_image(base, good + b"GARBAGE!")

    # OCI: descriptors whose digests climb out or are malformed; indexes nested too deep.
    files["oci_layer_digest_climbs_out.tar"] = oci_image(base, layer_digest="sha256:../../../etc/passwd")
    files["oci_config_digest_not_sha256.tar"] = oci_image(base, config_digest="md5:" + "0" * 32)
    files["oci_index_nested_too_deep.tar"] = nested_indexes(base, 12)

    # OCI blobs whose data is not what their name (their digest) says.
    flipped = bytearray(base.l2)
    flipped[600] ^= 1
    files["oci_layer_digest_mismatch.tar"] = blob_replaced(base, "layer2", bytes(flipped))
    files["oci_config_digest_mismatch.tar"] = blob_replaced(base, "config", base.config + b" ")
    files["oci_manifest_digest_mismatch.tar"] = blob_replaced(
        base, "manifest", tarkit.oci_manifest(base.config, [(PLAIN, base.l1), (PLAIN, base.l2)]) + b" ")
    files["oci_index_digest_mismatch.tar"] = blob_replaced(
        base, "index", tarkit.compact({"schemaVersion": 2, "manifests": []}))
    for kind in ("gzip", "zstd"):
        blob = compressed(kind, base.l2)
        # the blob's entry holds other data under the good blob's name
        files["oci_%s_blob_digest_mismatch.tar" % kind] = tarkit.tar_bytes(replace(
            entries_of(gzip_blob_image(base, blob)), "blobs/sha256/" + sha256(blob),
            Entry("blobs/sha256/" + sha256(blob), "file", compressed(kind, bytes(flipped)))))

    # Layer blobs: one compression layer, then the tar, and nothing after it.
    for kind in ("bzip2", "xz", "zstd"):
        files["%s_layer_trailing_garbage.tar" % kind] = gzip_blob_image(
            base, compressed(kind, base.l2) + b"GARBAGE!")
    files["bzip2_layer_trailing_zeros.tar"] = gzip_blob_image(base, compressed("bzip2", base.l2) + bytes(64))
    for outer, inner in (("zstd", "gzip"), ("xz", "zstd"), ("gzip", "gzip"), ("gzip", "bzip2"),
                         ("bzip2", "xz")):
        files["%s_holding_%s_layer.tar" % (outer, inner)] = gzip_blob_image(
            base, compressed(outer, compressed(inner, base.l2)))
    files["ok_gzip_layer_zero_padded.tar"] = gzip_blob_image(base, compressed("gzip", base.l2) + bytes(512))
    files["ok_gzip_layer_two_members.tar"] = gzip_blob_image(
        base, compressed("gzip", base.l2[:1024]) + compressed("gzip", base.l2[1024:]))

    # A sparse layer entry: a 1 TiB hole in a few KB.
    files["sparse_layer_entry.tar"] = sparse_layer(base)
    # The same hole behind a map that ends past the entry's size: not flagged
    # sparse by libarchive, which expands the hole all the same.
    files["sparse_map_past_size.tar"] = sparse_layer(base, size=(1 << 40) - 1000000)

    # Names spelled two ways for one entry.
    files["duplicate_entry_double_slash.tar"] = tarkit.tar_bytes(ents + [Entry(b + "//layer.tar", "file", base.l1)])
    files["duplicate_entry_dot_component.tar"] = tarkit.tar_bytes(ents + [Entry(b + "/./layer.tar", "file", base.l1)])

    # A NUL inside a PAX path or linkpath: libarchive would cut the name there.
    def pax_override(name, key, value):
        pairs = []
        for i, d in as_tarinfo(ents + [Entry("x-link", "symlink", target="manifest.json")]):
            if i.name == name:
                i.pax_headers = {key: value}
            pairs.append((i, d))
        return raw_tar(pairs)
    files["pax_path_with_nul.tar"] = pax_override(lb, "path", lb + "\0.evil")
    files["pax_linkpath_with_nul.tar"] = pax_override("x-link", "linkpath", "manifest.json\0/etc/passwd")

    # Layer ids that are no plain name: podman's "<id>.tar" as "...tar" gives "..".
    files["layer_id_dotdot.tar"] = podman_named(base, "...tar")
    files["layer_id_control_character.tar"] = tarkit.legacy_archive(
        [base.image(layers=[(a, base.l1), ("x\x1by", base.l2)])])
    files["layer_id_not_utf8.tar"] = tarkit.tar_bytes([
        Entry(e.name, e.kind, e.data.replace(b"\\udcff", b"\xff") if e.name == "manifest.json" else e.data,
              e.target, e.mode)
        for e in entries_of(tarkit.legacy_archive([base.image(layers=[(a, base.l1), ("x\udcffy", base.l2)])]))])

    # Names the output would carry that are not UTF-8 text.
    files["repo_tag_not_utf8.tar"] = base.with_manifest(
        tarkit.compact(base.manifest()).replace(b"hostile:2", b"host\xffile:2"))
    files["repo_tag_control_character.tar"] = base.with_manifest(
        tarkit.compact(base.manifest()).replace(b"hostile:2", b"host\\u001bile:2"))

    # A layer directory with a name past NAME_MAX: its output file can't exist.
    long_id = "l" * 300
    files["layer_id_too_long.tar"] = tarkit.legacy_archive([base.image(layers=[(a, base.l1), (long_id, base.l2)])])

    # Valid but unusual: must succeed.
    files["ok_unreferenced_long_name.tar"] = tarkit.tar_bytes(
        ents + [Entry("x" * LONG, "file", b"not part of any image\n")], sort=True)
    files["ok_unreferenced_long_tar_name.tar"] = tarkit.tar_bytes(
        ents + [Entry("t" * (LONG - 4) + ".tar", "file", base.l1)], sort=True)
    files["ok_long_layer_dir_pax.tar"] = tarkit.legacy_archive(
        [base.image(layers=[("p" * 200, base.l1), (b, base.l2)])])
    files["ok_gnu_long_names.tar"] = raw_tar(
        [(i, d) for i, d in as_tarinfo(base.entries())]
        + [(info("g" * 300 + "/file", size=4), b"gnu\n")], fmt=tarfile.GNU_FORMAT)
    files["ok_entries_under_dot_slash.tar"] = tarkit.tar_bytes(
        [Entry("./", "dir")] + [Entry("./" + e.name, e.kind, e.data, e.target, e.mode) for e in ents])
    return files


def podman_named(base, layer_name):
    """containers/image layout whose second layer is the root entry layer_name."""
    ents = [Entry(sha256(base.l1) + ".tar", "file", base.l1, mode=0o444),
            Entry(layer_name, "file", base.l2, mode=0o444),
            Entry(base.cfg_name, "file", base.config, mode=0o444),
            Entry("manifest.json", "file", tarkit.compact([{
                "Config": base.cfg_name, "RepoTags": TAGS,
                "Layers": [sha256(base.l1) + ".tar", layer_name]}]), mode=0o444)]
    return tarkit.tar_bytes(ents)


def entries_of(data):
    from fixtures import entries_of as e
    return e(data)


def seeds():
    """{file name: bytes}: tiny valid archives in every producer's layout, so
    the fuzzer starts from small inputs that reach the end of a run."""
    l1 = tarkit.layer_tar([("etc/", None), ("etc/a", b"a\n")])
    l2 = tarkit.layer_tar([("srv/", None), ("srv/b", b"b" * 64)])
    cfg = tarkit.config_for([l1, l2, l1])
    ids = [tarkit.pick_id("seed/%d" % i) for i in range(3)]
    img = {"tags": ["example.com/seed:1"], "config": cfg, "layers": list(zip(ids, [l1, l2, l1]))}
    out = {"seed_legacy_symlink.tar": tarkit.legacy_archive([img]),
           "seed_legacy_hardlink.tar": tarkit.legacy_archive([img], link="hardlink")}
    out["seed_legacy.tar.gz"] = gzip.compress(out["seed_legacy_symlink.tar"], mtime=0)
    # podman: layers at the root as <diff hex>.tar, legacy directories linking to them
    ents = [Entry(sha256(t) + ".tar", "file", t, mode=0o444) for t in (l1, l2)]
    ents += [Entry(i + "/layer.tar", "symlink", target="../%s.tar" % sha256(t)) for i, t in img["layers"]]
    ents.append(Entry(sha256(cfg) + ".json", "file", cfg, mode=0o444))
    ents.append(Entry("manifest.json", "file", tarkit.compact([{
        "Config": sha256(cfg) + ".json", "RepoTags": img["tags"],
        "Layers": [sha256(t) + ".tar" for t in (l1, l2, l1)]}]), mode=0o444))
    out["seed_podman.tar"] = tarkit.tar_bytes(ents)
    # docker >= 25 and OCI: plain, gzip and zstd blobs; an index in an index
    gz = gzip.compress(l2, mtime=0)
    zst = subprocess.run(["zstd", "-q", "-c"], input=l2, stdout=subprocess.PIPE, check=True).stdout
    for name, blob2, mt in (("seed_docker25_plain.tar", l2, PLAIN),
                            ("seed_docker25_gzip.tar", gz, PLAIN + "+gzip"),
                            ("seed_docker25_zstd.tar", zst, PLAIN + "+zstd")):
        m = tarkit.oci_manifest(cfg, [(PLAIN, l1), (mt, blob2), (PLAIN, l1)])
        index = {"schemaVersion": 2, "manifests": [tarkit.descriptor(MANIFEST, m, annotations={
            "io.containerd.image.name": "example.com/seed:1"})]}
        section = [{"Config": "blobs/sha256/" + sha256(cfg), "RepoTags": ["example.com/seed:1"],
                    "Layers": ["blobs/sha256/" + sha256(b) for b in (l1, blob2, l1)]}]
        out[name] = oci([l1, blob2, cfg, m], index, manifest=section)
    m = tarkit.oci_manifest(cfg, [(PLAIN, l1), (PLAIN + "+gzip", gz), (PLAIN, l1)])
    inner = tarkit.compact({"schemaVersion": 2, "manifests": [tarkit.descriptor(MANIFEST, m)]})
    out["seed_oci_nested_index.tar"] = oci([l1, gz, cfg, m, inner], {"schemaVersion": 2, "manifests": [
        tarkit.descriptor("application/vnd.oci.image.index.v1+json", inner)]})
    return {name: data if name.endswith(".gz") else unpadded(data) for name, data in out.items()}


def unpadded(data):
    """A tar stream without tarfile's padding to 10 KiB: the end marker only."""
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        last = t.getmembers()[-1]
    end = last.offset_data + (last.size + 511) // 512 * 512
    return data[:end] + bytes(1024)


def build(d):
    h = d / "hostile"
    h.mkdir(exist_ok=True)
    for name, data in build_cases().items():
        (h / name).write_bytes(data)
    s = d / "seeds"
    s.mkdir(exist_ok=True)
    for name, data in seeds().items():
        (s / name).write_bytes(data)


# ---------------------------------------------------------------- written on demand

def escaping(decoy):
    """{name: bytes}: archives whose entries point at the absolute directory
    decoy, or climb to it from the output's parent: none may touch it."""
    base = Base()
    lb = base.b + "/layer.tar"
    ents = base.entries()
    decoy = str(decoy).rstrip("/")
    up = "../" * 40 + decoy.lstrip("/")
    return {
        "file_absolute_into_decoy": tarkit.tar_bytes([Entry(decoy + "/evil", "file", b"evil\n")] + ents),
        "file_climbing_into_decoy": tarkit.tar_bytes([Entry(up + "/evil", "file", b"evil\n")] + ents),
        "symlink_to_decoy_absolute": tarkit.tar_bytes(replace(ents, lb, Entry(lb, "symlink", target=decoy + "/layer.tar"))),
        "symlink_to_decoy_climbing": tarkit.tar_bytes(replace(ents, lb, Entry(lb, "symlink", target=up + "/layer.tar"))),
        "hardlink_to_decoy": tarkit.tar_bytes(replace(ents, lb, Entry(lb, "hardlink", target=decoy + "/layer.tar"))),
        "symlink_dir_then_file_through_it": tarkit.tar_bytes(
            [Entry("evil", "symlink", target=decoy), Entry("evil/layer.tar", "file", base.l1)] + ents),
        "manifest_config_in_decoy": base.with_manifest(base.manifest(config=up + "/config.json")),
    }


def big_manifest(path, size=20 << 20):
    """A valid image whose manifest.json is `size` bytes (padded with spaces)."""
    base = Base()
    text = tarkit.compact(base.manifest())
    text += b" " * (size - len(text))
    path.write_bytes(base.with_manifest(text))


def many_entries(path, count, name_len=200):
    """A valid image preceded by `count` empty files with long names, the
    stream gzip-compressed (the headers compress to almost nothing)."""
    base = Base()
    filler = [Entry("f/%0*d" % (name_len, i), "file", b"") for i in range(count)]
    data = tarkit.tar_bytes(filler + base.entries())
    path.write_bytes(gzip.compress(data, compresslevel=6, mtime=0))


def many_layers(path, count):
    """manifest.json naming `count` layers, each "y.tar", a symlink to the
    first layer: a document well under the size limit whose decoded list
    needs far more memory than its text."""
    base = Base()
    ents = base.entries() + [Entry("y.tar", "symlink", target=base.a + "/layer.tar")]
    manifest = tarkit.compact(base.manifest(layers=["y.tar"] * count))
    path.write_bytes(tarkit.tar_bytes(replace(ents, "manifest.json", Entry("manifest.json", "file", manifest))))


def many_images(path, count, config_size=0):
    """manifest.json with `count` sections, all one image whose config is
    padded to config_size bytes with a long history entry."""
    base = Base()
    cfg = json.loads(base.config)
    if config_size:
        cfg["history"][0]["comment"] = "x" * config_size
    config = tarkit.compact(cfg)
    name = sha256(config) + ".json"
    ents = [e for e in base.entries() if e.name != base.cfg_name]
    ents.append(Entry(name, "file", config))
    manifest = tarkit.compact(base.manifest(config=name) * count)
    data = tarkit.tar_bytes(replace(ents, "manifest.json", Entry("manifest.json", "file", manifest)))
    path.write_bytes(gzip.compress(data, mtime=0))


def many_layers_staged(path, count):
    """`count` empty layer blobs <n>.tar at the root (a podman-style image
    using the first), the stream gzip-compressed: about 40 bytes a layer."""
    empty = bytes(1024)
    config = tarkit.config_for([empty])
    ents = [Entry("%d.tar" % i, "file", empty) for i in range(count)]
    ents.append(Entry(sha256(config) + ".json", "file", config))
    ents.append(Entry("manifest.json", "file", tarkit.compact([{
        "Config": sha256(config) + ".json", "RepoTags": TAGS, "Layers": ["0.tar"]}])))
    path.write_bytes(gzip.compress(tarkit.tar_bytes(ents), mtime=0))


def many_index_images(path, count):
    """index.json naming one image manifest `count` times."""
    base = Base()
    m = tarkit.oci_manifest(base.config, [(PLAIN, base.l1), (PLAIN, base.l2)])
    index = {"schemaVersion": 2, "manifests": [tarkit.descriptor(MANIFEST, m)] * count}
    path.write_bytes(gzip.compress(oci([base.l1, base.l2, base.config, m], index), mtime=0))


def high_ratio_layer(path, kind, size, garbage=b""):
    """An OCI archive whose one layer is a tar holding `size` zero bytes,
    compressed by kind (gzip, zstd, bzip2, xz): megabytes to gigabytes;
    `garbage` is appended to the compressed blob (its digest included)."""
    import bz2
    import lzma
    i = info("zeros", size=size)
    header = i.tobuf(tarfile.USTAR_FORMAT)
    tail = bytes((512 - size % 512) % 512) + bytes(1024)
    chunk = bytes(1 << 20)
    if kind == "gzip":
        c = __import__("zlib").compressobj(9, 8, 31)
        parts = [c.compress(header)]
        parts += [c.compress(chunk) for _ in range(size >> 20)]
        parts += [c.compress(tail), c.flush()]
    elif kind == "bzip2":
        c = bz2.BZ2Compressor(9)
        parts = [c.compress(header)] + [c.compress(chunk) for _ in range(size >> 20)]
        parts += [c.compress(tail), c.flush()]
    elif kind == "xz":
        c = lzma.LZMACompressor()
        parts = [c.compress(header)] + [c.compress(chunk) for _ in range(size >> 20)]
        parts += [c.compress(tail), c.flush()]
    else:
        p = subprocess.Popen(["zstd", "-q", "-3", "-c"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        import threading
        out = []
        t = threading.Thread(target=lambda: out.append(p.stdout.read()))
        t.start()
        p.stdin.write(header)
        for _ in range(size >> 20):
            p.stdin.write(chunk)
        p.stdin.write(tail)
        p.stdin.close()
        t.join()
        p.wait()
        parts = out
    blob = b"".join(parts) + garbage
    import hashlib
    h = hashlib.sha256(header)
    for _ in range(size >> 20):
        h.update(chunk)
    h.update(tail)
    one_layer_oci(path, blob, "sha256:" + h.hexdigest())


def one_layer_oci(path, blob, diff_id):
    """An OCI archive of one image whose one layer is blob (its tar's
    sha256 is diff_id)."""
    config = tarkit.compact({"architecture": "amd64", "os": "linux", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": [diff_id]}})
    m = tarkit.compact({"schemaVersion": 2, "mediaType": MANIFEST,
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                   "digest": "sha256:" + sha256(config), "size": len(config)},
                        "layers": [{"mediaType": PLAIN, "digest": "sha256:" + sha256(blob),
                                    "size": len(blob)}]})
    path.write_bytes(oci([blob, config, m], {"schemaVersion": 2, "manifests": [
        tarkit.descriptor(MANIFEST, m, annotations={"io.containerd.image.name": TAGS[0]})]}))


def big_layer(size=16 << 20, seed=9):
    """(archive bytes, offset of the big layer's data): a valid image whose first
    layer holds `size` incompressible bytes, for signals and full disks."""
    rnd = random.Random(seed)
    big = tarkit.layer_tar([("opt/", None), ("opt/noise", rnd.randbytes(size))])
    base = Base()
    img = base.image(layers=[(base.a, big), (base.b, base.l2)])
    data = tarkit.legacy_archive([img])
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        m = {x.name: x for x in t}[base.a + "/layer.tar"]
    return data, m.offset_data
