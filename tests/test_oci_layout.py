"""The bundled oci-layout policy: an OCI image layout that skopeo reads back.

For archives of every docker-archive producer: the output is exactly
`oci-layout`, `index.json` and `blobs/sha256/`; every blob hashes to its name
and has the size its descriptor says; manifests and configs have the OCI media
types; each layer is one gzip member that decompresses to its config's
diff_id; configs are the archive's bytes.  Then skopeo, an independent reader,
finds each image by its tag (`oci:OUT:TAG`) and copies it to a docker-archive
whose layers hash to the input config's diff_ids.
"""
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import zlib

import expect
import fixtures
from harness import assert_error, layersplit, snapshot, split, with_repo_tags

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def tag_of(reference):
    name, _, tag = reference.rpartition(":")
    return tag if name and "/" not in tag else reference


def skopeo(*args):
    p = subprocess.run(["skopeo"] + [str(a) for a in args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=120)
    assert p.returncode == 0, "skopeo %s: %s" % (" ".join(map(str, args)), p.stderr.decode().strip())
    return p.stdout


def check_layout(out, model, ref_name="tag"):
    """out is a valid OCI layout holding model's images under their names;
    returns {ref name: manifest} for the names it checked."""
    files = {str(p.relative_to(out)) for p in out.rglob("*") if not p.is_dir()}
    blobs = {f for f in files if f.startswith("blobs/sha256/")}
    assert files - blobs == {"oci-layout", "index.json"}, "files: %r" % sorted(files - blobs)
    assert json.loads((out / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    for b in blobs:
        assert sha256((out / b).read_bytes()) == b.rsplit("/", 1)[1], "%s does not hash to its name" % b

    def blob(descriptor, media_type):
        assert descriptor["mediaType"] == media_type, "mediaType %r, want %r" % (descriptor["mediaType"], media_type)
        algo, hexd = descriptor["digest"].split(":")
        data = (out / "blobs" / algo / hexd).read_bytes()
        assert len(data) == descriptor["size"], "%s: size %d, descriptor says %d" % (
            hexd, len(data), descriptor["size"])
        used.add("blobs/sha256/" + hexd)
        return data

    used = set()
    index = json.loads((out / "index.json").read_bytes())
    assert index["schemaVersion"] == 2 and index["mediaType"] == INDEX, index
    by_name = {}
    descriptors = []
    for d in index["manifests"]:
        name = (d.get("annotations") or {}).get(REF_NAME)
        if d["mediaType"] == INDEX:    # several platforms under one name
            nested = json.loads(blob(d, INDEX))
            assert nested["schemaVersion"] == 2 and nested["mediaType"] == INDEX, nested
            assert all("platform" in m for m in nested["manifests"]), "a platform entry without platform"
            descriptors += [(name, m) for m in nested["manifests"]]
        else:
            descriptors.append((name, d))
    for name, d in descriptors:
        manifest = json.loads(blob(d, MANIFEST))
        assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == MANIFEST, manifest
        config = blob(manifest["config"], CONFIG)
        diff_ids = json.loads(config)["rootfs"]["diff_ids"]
        assert len(manifest["layers"]) == len(diff_ids), "%d layers, %d diff_ids" % (
            len(manifest["layers"]), len(diff_ids))
        for layer, diff in zip(manifest["layers"], diff_ids):
            data = blob(layer, LAYER)
            z = zlib.decompressobj(31)
            content = z.decompress(data) + z.flush()
            assert z.eof and not z.unused_data, "%s is not one gzip member" % layer["digest"]
            assert "sha256:" + sha256(content) == diff, "layer %s is not %s" % (layer["digest"], diff)
        by_name.setdefault(name, []).append((manifest, config))
    assert used == blobs, "blobs no manifest uses: %r" % sorted(blobs - used)
    for img in model.images:
        for tag in img.tags:
            name = tag_of(tag) if ref_name == "tag" else tag
            assert name in by_name, "no index entry named %r (have %r)" % (name, sorted(by_name))
            assert img.config in [c for _, c in by_name[name]], "%s: config differs from the archive's" % name
    return by_name


def check_with_skopeo(tmp, out, model, ref_name="tag"):
    """skopeo finds every tag and copies it out with the input's diff_ids."""
    for i, img in enumerate(model.images):
        want = json.loads(img.config)["rootfs"]["diff_ids"]
        for tag in img.tags:
            name = tag_of(tag) if ref_name == "tag" else tag
            config = json.loads(skopeo("inspect", "--config", "oci:%s:%s" % (out, name)))
            assert config["rootfs"]["diff_ids"] == want, "skopeo inspect %s: diff_ids differ" % name
        copy = tmp / ("copy%d.tar" % i)
        skopeo("copy", "-q", "oci:%s:%s" % (out, tag_of(img.tags[0]) if ref_name == "tag" else img.tags[0]),
               "docker-archive:%s" % copy)
        with tarfile.open(copy) as t:
            section = json.load(t.extractfile("manifest.json"))[0]
            config = t.extractfile(section["Config"]).read()
            assert config == img.config, "the copied config differs from the archive's"
            got = ["sha256:" + sha256(t.extractfile(layer).read()) for layer in section["Layers"]]
        assert got == want, "skopeo copy: layers hash to %r, want %r" % (got, want)
        copy.unlink()


def _round_trip_test(archive):
    def test(tmp):
        split(fixtures.path(archive), tmp / "out", "--policy", "oci-layout")
        model = expect.Archive(fixtures.path(archive))
        check_layout(tmp / "out", model)
        check_with_skopeo(tmp, tmp / "out", model)
    return test


test_legacy_symlink_layout_reads_back_with_skopeo = _round_trip_test("legacy_symlink.tar")
test_legacy_two_images_layout_reads_back_with_skopeo = _round_trip_test("legacy_two_images.tar")
test_docker25_containerd_layout_reads_back_with_skopeo = _round_trip_test("docker25_containerd.tar")
test_podman_two_images_layout_reads_back_with_skopeo = _round_trip_test("podman_two_images.tar")


def test_ref_name_reference_names_entries_by_whole_reference(tmp):
    """--set ref_name=reference: `oci:OUT:example.com/app:second` works."""
    archive = fixtures.path("podman_two_images.tar")
    split(archive, tmp / "out", "--policy", "oci-layout", "--set", "ref_name=reference")
    model = expect.Archive(archive)
    names = check_layout(tmp / "out", model, ref_name="reference")
    assert set(names) == {t for img in model.images for t in img.tags}, sorted(names)
    check_with_skopeo(tmp, tmp / "out", model, ref_name="reference")


def test_tag_entries_carry_the_full_name_for_containerd(tmp):
    """As docker >= 25 writes it: ref.name the tag, io.containerd.image.name the
    whole reference; an image with two tags has two index entries, one manifest."""
    split(fixtures.path("legacy_two_images.tar"), tmp / "out", "--policy", "oci-layout")
    index = json.loads((tmp / "out" / "index.json").read_bytes())
    got = [(d["annotations"][REF_NAME], d["annotations"]["io.containerd.image.name"], d["digest"])
           for d in index["manifests"]]
    assert [(a, b) for a, b, _ in got] == [
        ("base", "example.com/legacy:base"), ("second", "example.com/legacy:second"),
        ("latest", "example.com/legacy:latest")], got
    assert got[1][2] == got[2][2] != got[0][2], "two tags of one image must share its manifest"


def test_platforms_under_one_name_become_an_image_index(tmp):
    """An OCI archive with amd64 and arm64 manifests under one name: index.json
    names an image index of both, and skopeo picks the platform asked for."""
    split(fixtures.path("oci_platforms.tar"), tmp / "out", "--policy", "oci-layout")
    model = expect.Archive(fixtures.path("oci_platforms.tar"))
    check_layout(tmp / "out", model)
    index = json.loads((tmp / "out" / "index.json").read_bytes())
    assert [(d["mediaType"], d["annotations"][REF_NAME]) for d in index["manifests"]] == [(INDEX, "1.0")], index
    hexd = index["manifests"][0]["digest"].split(":")[1]
    nested = json.loads((tmp / "out" / "blobs" / "sha256" / hexd).read_bytes())
    assert [m["platform"]["architecture"] for m in nested["manifests"]] == ["amd64", "arm64"], nested
    for arch in ("amd64", "arm64"):
        config = json.loads(skopeo("--override-arch", arch, "inspect", "--config",
                                   "oci:%s:1.0" % (tmp / "out")))
        assert config["architecture"] == arch, "asked for %s, skopeo got %s" % (arch, config["architecture"])


def test_familiar_names_are_written_in_full_for_containerd(tmp):
    """io.containerd.image.name holds the reference as docker normalizes it;
    ref.name is the tag, also after a registry port."""
    archive = with_repo_tags(tmp / "names.tar", ["ubuntu:22.04"], ["localhost:5000/x/y:1", "user/app:2"])
    split(archive, tmp / "out", "--policy", "oci-layout")
    index = json.loads((tmp / "out" / "index.json").read_bytes())
    got = [(d["annotations"][REF_NAME], d["annotations"]["io.containerd.image.name"])
           for d in index["manifests"]]
    assert got == [("22.04", "docker.io/library/ubuntu:22.04"), ("1", "localhost:5000/x/y:1"),
                   ("2", "docker.io/user/app:2")], got
    check_with_skopeo(tmp, tmp / "out", expect.Archive(archive))


def test_same_tag_for_two_images_is_a_usage_error(tmp):
    """a.example/x:latest and b.example/y:latest would both be "latest": the
    run fails, says what to set, and leaves nothing."""
    archive = with_repo_tags(tmp / "same_tag.tar", ["a.example/x:latest"], ["b.example/y:latest"])
    parent = tmp / "p"
    parent.mkdir()
    p = layersplit("--policy", "oci-layout", archive, parent / "out")
    line = assert_error(p, 2, ["ref_name=reference"])
    assert "latest" in line, line
    assert os.listdir(parent) == [], os.listdir(parent)
    split(archive, tmp / "out", "--policy", "oci-layout", "--set", "ref_name=reference")
    check_layout(tmp / "out", expect.Archive(archive), ref_name="reference")


def test_unknown_ref_name_setting_is_a_usage_error(tmp):
    p = layersplit("--policy", "oci-layout", "--set", "ref_name=short",
                   fixtures.path("legacy_symlink.tar"), tmp / "out")
    assert_error(p, 2, ["ref_name"])
    assert not (tmp / "out").exists()


def test_layer_blobs_are_the_launchpad_layer_files(tmp):
    """The same compression as the default policy: each layer blob has the
    bytes of launchpad's <layer_id>.tar.gz (so the registry digests agree)."""
    archive = fixtures.path("docker25_containerd.tar")
    split(archive, tmp / "oci", "--policy", "oci-layout")
    split(archive, tmp / "lp")
    digests = json.loads((tmp / "lp" / "digests.json").read_bytes())[0]
    blobs = {p.name for p in (tmp / "oci" / "blobs" / "sha256").iterdir()}
    for diff, rec in digests.items():
        assert rec["digest"] in blobs, "launchpad's %s.tar.gz (%s) is not a blob" % (rec["layer_id"], diff)
        data = (tmp / "lp" / (rec["layer_id"] + ".tar.gz")).read_bytes()
        assert (tmp / "oci" / "blobs" / "sha256" / rec["digest"]).read_bytes() == data


def test_oci_layout_gives_same_bytes_twice(tmp):
    archive = fixtures.path("legacy_two_images.tar")
    split(archive, tmp / "one", "--policy", "oci-layout")
    split(archive, tmp / "two", "--policy", "oci-layout", pipe=True)
    assert snapshot(tmp / "one") == snapshot(tmp / "two"), "a second run wrote different bytes"
