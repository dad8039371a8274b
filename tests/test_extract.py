"""--policy extract: the files of each layer that match the rules, under
OUT/extracted/<layer_id>/, or the image's final filesystem (view=final)
under OUT/extracted/<config-hex>/, in the same pass as the launchpad output.

Every extracted byte is checked against the layer tars as Python's tarfile
reads them from the archive, and the final view against an overlay model
written here (whiteouts, opaque directories, a file replacing a directory
and back), on every corpus layout, on images umoci makes by deleting files
between repacks, and on hand-made layers.  Hostile layer paths stay inside
OUT; caps and settings are checked too."""
import io
import json
import os
import posixpath
import subprocess
import tarfile

import expect
import fixtures
import tarkit
from fixtures_hostile import info, raw_tar
from harness import assert_error, assert_rejected, binary, layersplit, snapshot, split
from tarkit import Entry, sha256

EVERYTHING = "paths=**"


# ---------------------------------------------------------------- the model

def clean(name):
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts)


def members(blob):
    """[(path, kind, content)] of a layer blob as Python's tarfile reads it:
    content is the data of a file (a hard link's: its target's), a symlink's
    target as bytes, None for the rest."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(expect.outer_decompress(blob))) as t:
        for m in t:
            path = clean(m.name)
            if m.isreg():
                out.append((path, "file", t.extractfile(m).read()))
            elif m.islnk():
                out.append((path, "hardlink", clean(m.linkname)))
            elif m.issym():
                out.append((path, "symlink", m.linkname.encode("utf-8", "surrogateescape")))
            elif m.isdir():
                out.append((path, "dir", None))
            else:
                out.append((path, "other", None))
    return out


def whiteout(path):
    base, d = posixpath.basename(path), posixpath.dirname(path)
    if base == ".wh..wh..opq":
        return "opaque", d
    if base.startswith(".wh.") and not base.startswith(".wh..wh."):
        return "whiteout", posixpath.join(d, base[4:])
    return None, None


def extracted_from(layer):
    """What the policy writes for one layer with paths=**: {path: bytes}."""
    files = {}
    for path, kind, content in layer:
        if not path or whiteout(path)[0]:
            continue
        if kind == "file":
            files[path] = content
        elif kind == "symlink":
            files[path + ".symlink"] = content
        elif kind == "hardlink" and content in files:
            files[path] = files[content]
    return files


def final_view(layers):
    """The image's filesystem, an overlay of its layers (bottom first):
    {path: (kind, stored bytes)} for what is not a directory."""
    fs = {}

    def drop_below(prefix):
        for p in [p for p in fs if prefix == "" or p.startswith(prefix + "/")]:
            del fs[p]

    for layer in layers:
        files = extracted_from(layer)
        for path, _, _ in layer:
            kind, target = whiteout(path)
            if kind == "opaque":
                drop_below(target)
            elif kind == "whiteout":
                fs.pop(target, None)
                drop_below(target)
        for path, kind, content in layer:
            if not path or whiteout(path)[0]:
                continue
            parts = path.split("/")
            for i in range(1, len(parts)):   # a parent that was not a directory is one now
                parent = "/".join(parts[:i])
                if parent in fs and fs[parent][0] != "dir":
                    del fs[parent]
            if kind == "dir":
                if path in fs and fs[path][0] != "dir":
                    del fs[path]
                fs.setdefault(path, ("dir", None))
            else:
                drop_below(path)
                fs[path] = (kind, files.get(path + ".symlink" if kind == "symlink" else path))
    out = {}
    for path, (kind, data) in fs.items():
        if kind in ("file", "hardlink", "symlink") and data is not None:
            out[path + ".symlink" if kind == "symlink" else path] = data
    return out


def tree_of(d):
    """{relative path: bytes} of the regular files under d; no symlinks allowed."""
    out = {}
    for top, dirs, files in os.walk(d):
        for n in dirs + files:
            assert not os.path.islink(os.path.join(top, n)), "a symlink was made: %s" % n
        for n in files:
            p = os.path.join(top, n)
            out[os.path.relpath(p, d)] = open(p, "rb").read()
    return out


def check_per_layer(archive, out):
    model = expect.Archive(archive)
    want_dirs = set()
    for img in model.images:
        for lid, blob in zip(img.layer_ids, img.blobs):
            want_dirs.add(lid)
            got = tree_of(out / "extracted" / lid)
            want = extracted_from(members(blob))
            assert got == want, "%s: layer %s: extracted %s, want %s" % (
                archive.name, lid, sorted(got), sorted(want))
    assert set(os.listdir(out / "extracted")) == want_dirs, sorted(os.listdir(out / "extracted"))


def check_final(archive, out):
    model = expect.Archive(archive)
    want_dirs = set()
    for img in model.images:
        hexd = sha256(img.config)
        want_dirs.add(hexd)
        got = tree_of(out / "extracted" / hexd)
        want = final_view([members(b) for b in img.blobs])
        assert got == want, "%s: image %s: final view %s, want %s" % (
            archive.name, hexd[:12], sorted(got), sorted(want))
    assert set(os.listdir(out / "extracted")) == want_dirs, sorted(os.listdir(out / "extracted"))
    return model


# ---------------------------------------------------------------- every layout

def test_every_layout_per_layer_files_are_the_layer_tars_files(tmp):
    for name in fixtures.LAYOUTS:
        archive = fixtures.path(name)
        out = tmp / name
        split(archive, out, "-q", "--policy", "extract", "--set", EVERYTHING)
        expect.check_output(archive, out, extra=["extracted"])   # launchpad's output, unchanged
        check_per_layer(archive, out)


def test_every_layout_final_view_is_the_overlay_of_the_layers(tmp):
    for name in fixtures.LAYOUTS:
        archive = fixtures.path(name)
        out = tmp / name
        split(archive, out, "-q", "--policy", "extract", "--set", EVERYTHING, "--set", "view=final")
        expect.check_output(archive, out, extra=["extracted"])
        check_final(archive, out)


def test_a_whiteout_from_umoci_deletes_and_a_later_layer_adds_back(tmp):
    """legacy_symlink.tar's image: opt/dup added, deleted (umoci wrote
    opt/.wh.dup), added again; the final view has it from the last layer."""
    archive = fixtures.path("legacy_symlink.tar")
    img = expect.Archive(archive).images[0]
    marks = [(lid, p) for lid, b in zip(img.layer_ids, img.blobs)
             for p, _, _ in members(b) if whiteout(p)[0]]
    assert marks and marks[0][1] == "opt/.wh.dup", marks
    p = split(archive, tmp / "out", "--json", "--policy", "extract", "--set", EVERYTHING,
              "--set", "view=final")
    report = json.loads(p.stdout)["images"][0]
    by_path = {f["path"]: f["layer_id"] for f in report["extracted"]}
    assert by_path["opt/dup/f"] == img.layer_ids[-1], (by_path, img.layer_ids)
    assert by_path["etc/os-release"] == img.layer_ids[0]
    for layer in report["layers"]:   # per layer: what the image shows from it
        assert layer["extracted"] == sorted(p for p, lid in by_path.items() if lid == layer["layer_id"]), layer
    assert sum(len(l["extracted"]) for l in report["layers"]) == len(by_path)


def test_the_default_paths_take_os_release(tmp):
    archive = fixtures.path("podman_two_images.tar")
    split(archive, tmp / "out", "-q", "--policy", "extract")
    got = {str(p.relative_to(tmp / "out" / "extracted")) for p in (tmp / "out" / "extracted").rglob("*")
           if p.is_file()}
    assert got and all(g.endswith("/etc/os-release") for g in got), got


# ---------------------------------------------------------------- umoci deletions

def test_files_deleted_between_umoci_repacks_are_gone_from_the_final_view(tmp):
    L = str(tmp / "oci")
    fixtures.run("umoci", "init", "--layout", L)
    fixtures.run("umoci", "new", "--image", L + ":t")
    b = fixtures.Bundle(L, "t", tmp / "bundle")
    b.write("etc/os-release", b"ID=first\n")
    b.write("etc/gone", b"deleted later\n")
    b.write("var/tree/a", b"a\n")
    b.write("var/tree/sub/b", b"b\n")
    b.write("usr/keep", b"kept\n")
    b.commit("t")
    os.unlink(b.rootfs / "etc/gone")
    subprocess.run(["rm", "-rf", str(b.rootfs / "var/tree")], check=True)
    b.write("etc/os-release", b"ID=second\n")
    b.commit("t")
    fixtures.run("umoci", "config", "--image", L + ":t", "--created", fixtures.CREATED, "--no-history")
    for transport in ("docker-archive", "oci-archive"):
        archive = tmp / (transport + ".tar")
        fixtures.run("skopeo", "copy", "-q", "oci:%s:t" % L, "%s:%s:example.com/deleted:t" % (transport, archive))
        out = tmp / ("out-" + transport)
        split(archive, out, "-q", "--policy", "extract", "--set", EVERYTHING, "--set", "view=final")
        model = check_final(archive, out)
        got = tree_of(out / "extracted" / sha256(model.images[0].config))
        assert got == {"etc/os-release": b"ID=second\n", "usr/keep": b"kept\n"}, got
        per = tmp / ("per-" + transport)
        split(archive, per, "-q", "--policy", "extract", "--set", EVERYTHING)
        check_per_layer(archive, per)


# ---------------------------------------------------------------- hand-made layers

def legacy(layers, tags=("example.com/hand:1",)):
    return tarkit.legacy_archive([{"tags": list(tags), "config": tarkit.config_for(layers),
                                   "layers": [(tarkit.pick_id("hand/%d/%s" % (i, sha256(t))), t)
                                              for i, t in enumerate(layers)]}])


def test_opaque_directories_whiteouts_and_replaced_types(tmp):
    l1 = tarkit.tar_bytes([Entry("d/", "dir"), Entry("d/old", "file", b"old"),
                           Entry("d/sub/", "dir"), Entry("d/sub/deep", "file", b"deep"),
                           Entry("keep", "file", b"v1"), Entry("f", "file", b"a file"),
                           Entry("g/", "dir"), Entry("g/inner", "file", b"inner"),
                           Entry("root-gone", "file", b"x")])
    # the marker after an entry of its own layer: it still hides only lower layers
    l2 = tarkit.tar_bytes([Entry("d/new", "file", b"new"), Entry("d/.wh..wh..opq", "file", b""),
                           Entry(".wh.keep", "file", b""), Entry("f/", "dir"),
                           Entry("f/inside", "file", b"inside"), Entry("g", "file", b"g is a file"),
                           Entry(".wh.root-gone", "file", b"")])
    l3 = tarkit.tar_bytes([Entry("keep", "file", b"v3"), Entry("link", "symlink", target="keep")])
    archive = tmp / "hand.tar"
    archive.write_bytes(legacy([l1, l2, l3]))
    out = tmp / "out"
    split(archive, out, "-q", "--policy", "extract", "--set", EVERYTHING, "--set", "view=final")
    model = check_final(archive, out)
    got = tree_of(out / "extracted" / sha256(model.images[0].config))
    assert got == {"d/new": b"new", "f/inside": b"inside", "g": b"g is a file",
                   "keep": b"v3", "link.symlink": b"keep"}, got
    per = tmp / "per"
    split(archive, per, "-q", "--policy", "extract", "--set", EVERYTHING)
    check_per_layer(archive, per)   # markers are not files in the per-layer view


def hostile_layer():
    dev = info("dev/null", tarfile.CHRTYPE)
    dev.devmajor, dev.devminor = 1, 3
    long_name = "n" * 300
    return raw_tar([
        (info("../../escape", size=4), b"esc\n"),
        (info("/abs/file", size=4), b"abs\n"),
        (info("evil", tarfile.SYMTYPE, linkname="/etc"), None),
        (info("evil/passwd", size=5), b"mine\n"),
        (info("dir/up", tarfile.SYMTYPE, linkname="../../../../../tmp"), None),
        (info("dir/up/x", size=2), b"x\n"),
        (info("hl", tarfile.LNKTYPE, linkname="../../etc/passwd"), None),
        (info("hl-missing", tarfile.LNKTYPE, linkname="never/there"), None),
        (info("data", size=4), b"data"),
        (info("hl-ok", tarfile.LNKTYPE, linkname="data"), None),
        (dev, None),
        (info("fifo", tarfile.FIFOTYPE), None),
        (info(long_name + "/f", size=1), b"L"),
        (info("a/./b", size=2), b"ab"),
        (info("a//c", size=2), b"ac"),
        (info("dup", size=5), b"first"),
        (info("dup", size=6), b"second"),
        (info("x", size=1), b"x"),
        (info("x/y", size=1), b"y"),
        (info("odd\nname\\", size=3), b"odd"),
    ])


def test_hostile_layer_paths_stay_inside_out_and_are_refused_one_by_one(tmp):
    layer = hostile_layer()
    archive = tmp / "hostile.tar"
    archive.write_bytes(legacy([layer]))
    parent = tmp / "parent"
    parent.mkdir()
    decoy = tmp / "decoy"
    decoy.mkdir()
    (decoy / "keep").write_text("keep")
    before = snapshot(tmp)
    del before["parent"]
    out = parent / "out"
    p = layersplit("--json", "-v", "--policy", "extract", "--set", EVERYTHING, archive, out)
    assert p.returncode == 0, p.err
    after = snapshot(tmp)
    assert {k: v for k, v in after.items() if not k.startswith("parent")} == before, \
        "something changed outside OUT"
    assert sorted(os.listdir(parent)) == ["out"]
    model = expect.Archive(archive)
    lid = model.images[0].layer_ids[0]
    got = tree_of(out / "extracted" / lid)
    assert got == {"evil.symlink": b"/etc", "evil/passwd": b"mine\n",
                   "dir/up.symlink": b"../../../../../tmp", "dir/up/x": b"x\n",
                   "data": b"data", "hl-ok": b"data", "a/b": b"ab", "a/c": b"ac",
                   "dup": b"second", "x": b"x", "odd\nname\\": b"odd"}, sorted(got)
    report = json.loads(p.stdout)
    assert report["extracted_files"] == len(got), report["extracted_files"]   # "dup" counted once
    assert report["extracted_bytes"] == sum(map(len, got.values())), report["extracted_bytes"]
    assert sorted(report["images"][0]["layers"][0]["extracted"]) == sorted(got)
    refused = {r["path"]: r["why"] for r in report["images"][0]["layers"][0]["refused"]}
    for path, why in (("../../escape", "climbs out"), ("/abs/file", "absolute"),
                      ("hl", "climbs out"), ("hl-missing", "not extracted"),
                      ("dev/null", "device"), ("fifo", "FIFO"),
                      ("n" * 300 + "/f", "File name too long"), ("x/y", "Not a directory")):
        assert path in refused and why in refused[path], (path, refused.get(path), refused)
    assert len(refused) == 8, refused
    # --verbose names each one refused
    for path in ("dev/null", "fifo", "hl-missing"):
        assert ("%s: not extracted: " % path) in p.err, p.err
    expect.check_output(archive, out, extra=["extracted"])


def test_caps_on_file_count_and_total_size_reject_the_archive(tmp):
    archive = fixtures.path("legacy_symlink.tar")
    (tmp / "count").mkdir()
    (tmp / "size").mkdir()
    line = assert_rejected(tmp / "count", archive, ["more than 3 files"],
                           options=("--policy", "extract", "--set", EVERYTHING, "--set", "max_files=3"))
    assert "max_files" in line, line
    assert_rejected(tmp / "size", archive, ["more than 1000 bytes", "max_total_size"],
                    options=("--policy", "extract", "--set", EVERYTHING, "--set", "max_total_size=1000"))


def test_a_file_over_max_file_size_is_skipped_and_listed(tmp):
    archive = fixtures.path("legacy_symlink.tar")
    p = split(archive, tmp / "out", "--json", "-v", "--policy", "extract", "--set", EVERYTHING,
              "--set", "max_file_size=100K")
    layers = json.loads(p.stdout)["images"][0]["layers"]
    refused = [(l["layer_id"], r["path"], r["why"]) for l in layers for r in l["refused"]]
    assert len(refused) == 1 and refused[0][1] == "var/lib/layersplit/data.bin", refused
    assert "over max_file_size (102400)" in refused[0][2], refused
    assert not (tmp / "out" / "extracted" / refused[0][0] / "var/lib/layersplit/data.bin").exists()
    assert "var/lib/layersplit/data.bin: not extracted: " in p.err
    extracted = {l["layer_id"]: l["extracted"] for l in layers}
    assert "etc/os-release" in extracted[layers[0]["layer_id"]], extracted


# ---------------------------------------------------------------- rules and reports

def test_globs_match_as_documented(tmp):
    script = tmp / "globs.lua"
    script.write_text("""local extract = require "layersplit.policies.extract"
local settings = require "layersplit.settings"
for line in io.lines(arg[1]) do
	local globs, path = line:match("^(.-) (.*)$")
	print(extract.matcher(settings.list(globs))(path))
end
""")
    cases = [
        ("etc/os-release", "etc/os-release", True), ("etc/os-release", "etc/os-release2", False),
        ("**/*.spdx.json", "a.spdx.json", True), ("**/*.spdx.json", "usr/share/x/a.spdx.json", True),
        ("**/*.spdx.json", "usr/a.spdx.json.gz", False), ("*.json", "x/a.json", False),
        ("*.json", ".hidden.json", True), ("usr/**", "usr/a/b/c", True), ("usr/**", "usr", False),
        ("usr/**/lib", "usr/lib", True), ("usr/**/lib", "usr/x/y/lib", True),
        ("usr/**/lib", "usr/xlib", False), ("etc/?s-release", "etc/os-release", True),
        ("etc/?s-release", "etc//s-release", False), ("[a-c]x", "bx", True), ("[a-c]x", "dx", False),
        ("[!a-c]x", "dx", True), ("[!a-c]x", "/x", False), ("a\\*b", "a*b", True),
        ("a\\*b", "axxb", False), ("x\\,y", "x,y", True), ("nope,etc/*", "etc/hosts", True),
        ("a*b*c*d*e*f*g*h", "a" * 60 + "x", False),
    ]
    (tmp / "cases").write_text("".join("%s %s\n" % (g, p) for g, p, _ in cases))
    r = layersplit("run", script, tmp / "cases")
    assert r.returncode == 0, r.err
    got = r.stdout.decode().split()
    for (g, path, want), res in zip(cases, got):
        assert res == str(want).lower(), "%r against %r: %s, want %s" % (g, path, res, want)
    assert len(got) == len(cases)


def test_same_pass_trace_and_json_report(tmp):
    archive = fixtures.path("docker25_containerd.tar")
    p = split(archive, tmp / "out", "--json", "--trace", "--policy", "extract", "--set",
              "paths=etc/**")
    actions = [l.rsplit("]: ", 1)[1] for l in p.err.splitlines() if "]: layer" in l]
    assert actions and all(", extracted" in a or " extracted" in a for a in actions), actions
    report = json.loads(p.stdout)
    assert report["policy"] == "extract" and report["extracted_files"] >= 2, report
    for layer in report["images"][0]["layers"]:
        on_disk = sorted(str(q.relative_to(tmp / "out" / "extracted" / layer["layer_id"]))
                         for q in (tmp / "out" / "extracted" / layer["layer_id"]).rglob("*") if q.is_file())
        assert layer["extracted"] == on_disk, (layer["extracted"], on_disk)


def test_a_layer_under_two_layer_ids_is_extracted_under_both(tmp):
    archive = fixtures.path("legacy_symlink_chain.tar")
    out = tmp / "out"
    split(archive, out, "-q", "--policy", "extract", "--set", EVERYTHING)
    check_per_layer(archive, out)
    img = expect.Archive(archive).images[0]
    dups = [lid for lid, d in zip(img.layer_ids, img.diff_ids) if img.diff_ids.count(d) > 1]
    assert len(dups) >= 3, dups


def test_extract_settings_errors_and_help(tmp):
    archive = fixtures.path("legacy_symlink.tar")
    for setting, words in (("view=sideways", ["view=sideways", "layers or final"]),
                           ("max_file_size=lots", ["max_file_size=lots"]),
                           ("max_files=-1", ["max_files=-1", "whole number"]),
                           ("path=etc/*", ["unknown setting", "paths"])):
        assert_error(layersplit("--policy", "extract", "--set", setting, archive, tmp / "o"), 2, words)
    assert_error(layersplit("--policy", "extract", "--set", "view=final", "--set", "view=layers",
                            archive, tmp / "o"), 2, ["given twice"])
    assert not (tmp / "o").exists()
    text = layersplit("--policy", "extract", "--help").stdout.decode()
    for key in ("paths=etc/os-release,usr/lib/os-release", "view=layers", "max_file_size=16M",
                "max_files=10000", "max_total_size=1G", "KEY=A,B or repeated"):
        assert key in text, "%s missing from %r" % (key, text)
    # a list setting adds up
    out = tmp / "out"
    split(archive, out, "-q", "--policy", "extract", "--set", "paths=etc/hello", "--set", "paths=opt/keep")
    got = {str(q.relative_to(out / "extracted")).split("/", 1)[1]
           for q in (out / "extracted").rglob("*") if q.is_file()}
    assert got == {"etc/hello", "opt/keep"}, got


def test_from_a_pipe_the_same_files(tmp):
    archive = fixtures.path("legacy_two_images.tar.zst")
    for view in ("layers", "final"):
        a, b = tmp / ("file-" + view), tmp / ("pipe-" + view)
        split(archive, a, "-q", "--policy", "extract", "--set", EVERYTHING, "--set", "view=" + view)
        split(archive, b, "-q", "--policy", "extract", "--set", EVERYTHING, "--set", "view=" + view,
              pipe=True)
        assert tree_of(a / "extracted") == tree_of(b / "extracted") != {}, view
