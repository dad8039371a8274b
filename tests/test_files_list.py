"""The bundled files-list policy: launchpad's output plus a listing per layer.

Each `<layer_id>.files.json` must list the entries of that layer's tar as
Python's tarfile reads them from the input archive (path, type, size, mode,
link target), for plain, gzip, multi-member gzip and zstd layers; and with the
listings set aside, what remains must satisfy the launchpad contract
(expect.check_output).
"""
import io
import json
import os
import shutil
import tarfile

import expect
import fixtures
import tarkit
from harness import layersplit, split
from tarkit import Entry


def tarfile_listing(blob):
    """What the layer holds, read by Python from the archive's own bytes."""
    items = []
    with tarfile.open(fileobj=io.BytesIO(expect.outer_decompress(blob)), mode="r:") as t:
        for m in t:
            name = m.name
            while name.startswith("./"):
                name = name[2:].lstrip("/")
            item = {"path": name.rstrip("/") or ".", "mode": m.mode & 0o7777,
                    "size": m.size if m.isreg() else 0,
                    "type": "file" if m.isreg() else "dir" if m.isdir() else
                            "symlink" if m.issym() else "hardlink" if m.islnk() else "other"}
            if m.issym():
                item["target"] = m.linkname
            elif m.islnk():
                target = m.linkname
                while target.startswith("./"):
                    target = target[2:]
                item["target"] = target
            items.append(item)
    return items


def _listing_test(archive):
    def test(tmp):
        out = tmp / "out"
        split(fixtures.path(archive), out, "--policy", "files-list")
        model = expect.Archive(fixtures.path(archive))
        listed = set()
        for img in model.images:
            for lid, blob in zip(img.layer_ids, img.blobs):
                got = json.loads((out / (lid + ".files.json")).read_bytes())
                want = tarfile_listing(blob)
                assert want, "fixture: layer %s is empty" % lid
                assert got == want, "%s.files.json differs from tarfile's listing:\n%r\nwant\n%r" % (
                    lid, got, want)
                listed.add(lid + ".files.json")
        rest = tmp / "rest"
        rest.mkdir()
        for p in out.iterdir():
            if p.name.endswith(".files.json"):
                assert p.name in listed, "%s lists no layer of the archive" % p.name
                p.unlink()
            else:
                shutil.copy(p, rest / p.name)
        expect.check_output(model, rest)
    return test


test_legacy_symlink_layers_are_listed = _listing_test("legacy_symlink.tar")
test_legacy_hardlink_layers_are_listed = _listing_test("legacy_hardlink.tar")
test_podman_two_images_layers_are_listed = _listing_test("podman_two_images.tar")
test_containerd_gzip_and_zstd_layers_are_listed = _listing_test("docker25_containerd.tar")
test_multimember_gzip_layer_is_listed = _listing_test("containerd_multimember.tar")
test_oci_archive_layers_are_listed = _listing_test("oci_archive.tar")


def test_listing_comes_from_the_same_pass_as_compression(tmp):
    """From a pipe (nothing to read twice), the trace says each layer was
    compressed or kept and listed as it passed."""
    archive = fixtures.path("docker25_containerd.tar")
    p = split(archive, tmp / "out", "-q", "--trace", "--policy", "files-list", pipe=True)
    actions = [line.rsplit("]: ", 1)[1] for line in p.err.splitlines() if line.startswith("trace: ")]
    layers = [a for a in actions if a.startswith("layer ")]
    assert layers and all(a.endswith(", listed") for a in layers), actions
    assert sorted(layers) == ["layer gzip, kept, listed", "layer gzip, kept, listed",
                              "layer zstd, compressed, listed"], layers


def test_corrupt_layer_fails_the_listing_and_leaves_nothing(tmp):
    """A layer.tar whose bytes are not a tar past the first block: the nested
    reader's failure is an archive error (exit 1) and OUTDIR is not made."""
    src = fixtures.path("legacy_symlink.tar")
    bad = tmp / "bad.tar"
    with tarfile.open(src) as t, tarfile.open(bad, "w", format=tarfile.GNU_FORMAT) as o:
        for m in t:
            data = t.extractfile(m).read() if m.isfile() else None
            if m.name.endswith("/layer.tar") and m.isfile() and m.size > 4096:
                data = data[:512] + b"\xff" * 1024 + data[1536:]
            o.addfile(m, io.BytesIO(data) if data is not None else None)
    parent = tmp / "p"
    parent.mkdir()
    p = layersplit("--policy", "files-list", bad, parent / "out")
    assert p.returncode == 1, "exit %d: %s" % (p.returncode, p.err)
    assert len(p.err.splitlines()) == 1 and p.err.startswith("layersplit: "), p.err
    # the listing stops it during the pass, before the diff_ids are compared
    assert "/layer.tar: " in p.err and "diff_id" not in p.err, p.err
    assert not list(parent.iterdir()), list(parent.iterdir())


def test_names_that_are_not_utf8_are_escaped_losslessly(tmp):
    """A layer file named with bytes that are not UTF-8 (and a symlink to it):
    the listing is valid UTF-8, each such byte written as \\udc80-\\udcff
    (Python's surrogateescape), so os.fsencode gives the exact name back."""
    name = "srv/caf\udce9-\udcff\udcfe"          # b"srv/caf\xe9-\xff\xfe"
    layer = tarkit.tar_bytes([Entry("srv/", "dir"), Entry(name, "file", b"latin-1 name\n"),
                              Entry("srv/link", "symlink", target=name[4:]),
                              Entry("srv/ok-\u00e9", "file", b"utf-8 name\n")])
    archive = tmp / "names.tar"
    lid = tarkit.pick_id("names/1")
    archive.write_bytes(tarkit.legacy_archive([{"tags": ["example.com/names:1"],
                                                "config": tarkit.config_for([layer]),
                                                "layers": [(lid, layer)]}]))
    split(archive, tmp / "out", "--policy", "files-list")
    raw = (tmp / "out" / (lid + ".files.json")).read_bytes()
    raw.decode("utf-8")  # strict: raises on anything that is not UTF-8
    listing = json.loads(raw)
    paths = [os.fsencode(item["path"]) for item in listing]
    assert paths == [b"srv", b"srv/caf\xe9-\xff\xfe", b"srv/link", "srv/ok-\u00e9".encode()], paths
    assert os.fsencode(listing[2]["target"]) == b"caf\xe9-\xff\xfe", listing[2]
    assert b"\\udce9" in raw and b"\\udcff" in raw, raw
