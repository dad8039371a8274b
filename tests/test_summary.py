"""What a run reports: --json on stdout for build scripts (checked against the
files written, digests.json and the archive itself), and the one summary
line on stderr for people."""
import gzip
import hashlib
import json
import re

import expect
import fixtures
from harness import layersplit, split

# The layouts with something to say: shared and duplicated layers, several
# images, kept gzip and recompressed zstd blobs, a multi-member gzip blob,
# a compressed archive, platforms.
JSON_LAYOUTS = ("legacy_two_images.tar", "podman_dup.tar", "docker25_containerd.tar",
                "containerd_multimember.tar", "legacy_symlink.tar.gz", "oci_platforms.tar")


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def run_json(archive, out, *options, pipe=False):
    p = split(archive, out, "--json", *options, pipe=pipe)
    text = p.stdout.decode()
    assert text.endswith("}\n") and text.count("\n") == 1, "stdout is not one JSON line: %r" % text
    summary = json.loads(text)   # raises on anything but exactly one document
    assert p.stderr == b"", "--json left stderr %r" % p.stderr
    return summary


def check_summary(archive_path, out, summary):
    """Every claim of the summary against the output and the archive."""
    archive = expect.Archive(archive_path)
    digests = json.loads((out / "digests.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    assert summary["bytes_in"] == archive_path.stat().st_size, \
        "bytes_in %d, the archive has %d" % (summary["bytes_in"], archive_path.stat().st_size)
    assert summary["policy"] == "launchpad" and summary["outdir"] == str(out)
    assert summary["entries"] == len(archive.members), (summary["entries"], len(archive.members))
    assert len(summary["images"]) == len(archive.images) == len(manifest)
    files = sorted(p.name for p in out.glob("*.tar.gz"))
    assert summary["layers"] == len(files), (summary["layers"], files)
    assert summary["bytes_out"] == sum((out / f).stat().st_size for f in files)
    assert isinstance(summary["seconds"], (int, float)) and summary["seconds"] >= 0
    assert isinstance(summary["bytes_per_second"], int) and summary["bytes_per_second"] >= 0
    for i, (image, want) in enumerate(zip(summary["images"], archive.images)):
        assert image["config"] == manifest[i]["Config"] == sha256(want.config) + ".json"
        assert image["repo_tags"] == manifest[i]["RepoTags"]
        assert [layer["layer_id"] + "/layer.tar" for layer in image["layers"]] == manifest[i]["Layers"]
        assert [layer["diff_id"] for layer in image["layers"]] == want.diff_ids
        for layer, blob in zip(image["layers"], want.blobs):
            data = (out / layer["file"]).read_bytes()
            what = "image %d layer %s" % (i, layer["layer_id"])
            assert layer["file"] == layer["layer_id"] + ".tar.gz", what
            assert layer["digest"] == sha256(data), what + ": digest is not the file's sha256"
            assert digests[i][layer["diff_id"]]["digest"] == layer["digest"], what
            # a diff used twice in one image has one digests.json entry
            assert digests[i][layer["diff_id"]]["layer_id"] in [
                other["layer_id"] for other in image["layers"]
                if other["diff_id"] == layer["diff_id"]], what
            assert layer["compressed_size"] == len(data), what
            tar = gzip.decompress(data)
            assert layer["uncompressed_size"] == len(tar), what
            assert "sha256:" + sha256(tar) == layer["diff_id"], what
            kind = ("gzip" if blob[:2] == b"\x1f\x8b" else
                    "zstd" if blob[:4] == b"\x28\xb5\x2f\xfd" else "tar")
            assert layer["stored_as"] == kind, "%s: stored_as %s, the archive has %s" % (
                what, layer["stored_as"], kind)
            kept = kind == "gzip" and expect.blob_is_single_gzip_member(blob)
            assert layer["kept"] is kept, "%s: kept is %s" % (what, layer["kept"])
            if kept:
                assert data == blob, what + ": kept, yet not the archive's bytes"


def test_json_summary_matches_files_digests_and_archive(tmp):
    for name in JSON_LAYOUTS:
        out = tmp / name
        check_summary(fixtures.path(name), out, run_json(fixtures.path(name), out))


def test_json_summary_from_a_pipe_counts_the_same_bytes(tmp):
    name = "docker25_containerd.tar"
    summary = run_json(fixtures.path(name), tmp / "out", pipe=True)
    assert summary["input"] == "-"
    check_summary(fixtures.path(name), tmp / "out", summary)


def test_json_names_the_engine_level_and_library_versions(tmp):
    """The bytes depend on engine, level, block size and library version:
    the summary says which, the same library versions as --version."""
    version = layersplit("--version").stdout.decode().splitlines()[1]
    libraries = dict(part.split(" ") for part in version[len("compression: "):].split(", "))
    name = "legacy_symlink.tar"
    for options, engine, level in (((), None, 6), (("--engine", "zlib", "--level", "1"), "zlib", 1),
                                   (("--engine", "libdeflate", "--level", "12"), "libdeflate", 12)):
        c = run_json(fixtures.path(name), tmp / ("out%d" % level), *options)["compression"]
        assert c["level"] == level and c["libraries"] == libraries, c
        assert engine is None or c["engine"] == engine, c
        assert c["block_size"] == {"zlib": 128 * 1024, "isal": 1024 * 1024,
                                   "libdeflate": 1024 * 1024}[c["engine"]], c


def test_json_reports_kept_and_recompressed_layers(tmp):
    """containerd store: a gzip blob kept as it is, a zstd blob recompressed;
    a multi-member gzip blob recompressed too."""
    kinds = set()
    for name in ("docker25_containerd.tar", "containerd_multimember.tar"):
        summary = run_json(fixtures.path(name), tmp / name)
        for layer in summary["images"][0]["layers"]:
            kinds.add((layer["stored_as"], layer["kept"]))
    assert {("gzip", True), ("zstd", False), ("gzip", False)} <= kinds, kinds


def test_json_with_v2metadata_names_the_registry_digest(tmp):
    archive = expect.Archive(fixtures.path("legacy_two_images.tar"))
    pulled = archive.images[0].diff_ids[0]
    meta = tmp / "v2metadata"
    meta.mkdir()
    (meta / pulled.split(":")[1]).write_text(json.dumps([
        {"Digest": "sha256:" + "ab" * 32, "SourceRepository": "docker.io/library/ubuntu", "HMAC": ""}]))
    summary = run_json(fixtures.path("legacy_two_images.tar"), tmp / "out", "--v2metadata", meta)
    for image in summary["images"]:
        for layer in image["layers"]:
            data = (tmp / "out" / layer["file"]).read_bytes()
            assert layer["digest"] == sha256(data)
            if layer["diff_id"] == pulled:
                assert layer["registry_digest"] == "sha256:" + "ab" * 32
                assert layer["source"] == "docker.io/library/ubuntu"
            else:
                assert "registry_digest" not in layer and "source" not in layer, layer


def test_json_is_printed_with_quiet_too(tmp):
    p = split(fixtures.path("oci_archive.tar"), tmp / "out", "--json", "--quiet")
    assert json.loads(p.stdout)["layers"] == len(list((tmp / "out").glob("*.tar.gz")))
    assert p.stderr == b""


def test_json_is_not_printed_on_failure(tmp):
    p = layersplit("--json", fixtures.path("hostile/truncated_in_layer.tar"), tmp / "out")
    assert p.returncode == 1 and p.stdout == b"", (p.returncode, p.stdout)


def test_summary_line_counts_images_layers_and_bytes(tmp):
    name = "legacy_two_images.tar"
    p = split(fixtures.path(name), tmp / "out")
    lines = p.err.splitlines()
    assert len(lines) == 1 and p.stdout == b"", p.err
    files = list((tmp / "out").glob("*.tar.gz"))
    m = re.fullmatch(r"layersplit: (.+): (\d+) images?, (\d+) layer files?, "
                     r"([\d.]+ (?:B|KiB|MiB)) read, ([\d.]+ (?:B|KiB|MiB)) written, "
                     r"in [\d.]+ s, [\d.]+ (?:B|KiB|MiB|GiB)/s", lines[0])
    assert m, lines[0]
    assert m.group(1) == str(tmp / "out")
    assert int(m.group(2)) == len(expect.Archive(fixtures.path(name)).images)
    assert int(m.group(3)) == len(files)
    assert m.group(4) == human(fixtures.path(name).stat().st_size)
    assert m.group(5) == human(sum(f.stat().st_size for f in files))


def human(n):
    if n < 1024:
        return "%d B" % n
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            return "%.1f %s" % (n, unit)
