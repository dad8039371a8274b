"""Every producer's layout gives the contract's output, from a file and from a pipe.

For each archive in fixtures.LAYOUTS: every layer file decompresses to its
config's diff_id, is ONE gzip member with mtime 0 and no name, reads with
tarfile r|gz; manifest.json, digests.json, the configs and repositories are
what the input says; there is nothing else; and a second run writes the same
bytes.  Expectations come from expect.Archive, which reads the input itself.
"""
import json
import hashlib
import itertools
import subprocess
import sys

import expect
import fixtures
from harness import REPO, assert_error, layersplit, snapshot, split

_order = itertools.count(1)


def _register(name, fn, doc):
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    fn.__module__ = __name__
    fn.order = next(_order)
    globals()[name] = fn


def _stem(archive):
    return archive.split(".")[0] + "".join("_" + s for s in archive.split(".")[1:] if s != "tar")


def _file_test(archive):
    def test(tmp):
        split(fixtures.path(archive), tmp / "out")
        expect.check_output(fixtures.path(archive), tmp / "out")
    return test


def _pipe_test(archive):
    def test(tmp):
        split(fixtures.path(archive), tmp / "out", pipe=True)
        expect.check_output(fixtures.path(archive), tmp / "out")
    return test


def _twice_test(archive):
    def test(tmp):
        split(fixtures.path(archive), tmp / "one")
        split(fixtures.path(archive), tmp / "two", pipe=True)
        one, two = snapshot(tmp / "one"), snapshot(tmp / "two")
        assert sorted(one) == sorted(two), "file sets differ: %r vs %r" % (sorted(one), sorted(two))
        differ = [n for n in one if one[n] != two[n]]
        assert not differ, "second run wrote different bytes in %r" % differ
    return test


for _archive, _what in fixtures.LAYOUTS.items():
    _s = _stem(_archive)
    _register("test_%s_from_file" % _s, _file_test(_archive), "%s, read from a file" % _what)
    _register("test_%s_from_pipe" % _s, _pipe_test(_archive), "%s, read from a pipe" % _what)
    _register("test_%s_gives_same_bytes_twice" % _s, _twice_test(_archive),
              "%s: two runs (file, pipe) write identical files" % _what)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def test_fixture_layers_match_their_configs(tmp):
    """The test's own reading of every fixture agrees with its configs, so a
    failure below is the tool's, not the fixture's."""
    for archive in fixtures.LAYOUTS:
        for img in expect.Archive(fixtures.path(archive)).images:
            assert len(img.blobs) == len(img.diff_ids), archive
            for blob, diff in zip(img.blobs, img.diff_ids):
                content = expect.outer_decompress(blob)
                assert "sha256:" + sha256(content) == diff, "%s: %s" % (archive, diff)


def test_sample_archive_splits(tmp):
    """tests/data/sample.tar, the demo archive, follows the contract."""
    sample = REPO / "tests" / "data" / "sample.tar"
    split(sample, tmp / "out")
    expect.check_output(sample, tmp / "out")


def test_sample_archive_is_what_make_sample_writes(tmp):
    sample = REPO / "tests" / "data" / "sample.tar"
    subprocess.run([sys.executable, str(REPO / "tests" / "make_sample.py"), str(tmp / "s.tar")], check=True)
    assert (tmp / "s.tar").read_bytes() == sample.read_bytes(), \
        "tests/data/sample.tar is stale: rerun python3 tests/make_sample.py"
    assert sample.stat().st_size < 100 * 1024


def test_symlinked_duplicate_layer_is_written_under_its_own_layer_id(tmp):
    """docker <= 24: `<later>/layer.tar -> ../<first>/layer.tar` (later sorts first)
    still gives `<later>.tar.gz`, the same bytes as `<first>.tar.gz`."""
    archive = expect.Archive(fixtures.path("legacy_symlink.tar"))
    ids = archive.images[0].layer_ids
    first, later = ids[3], ids[5]
    assert archive.members[later + "/layer.tar"].issym() and later < first, "fixture"
    split(fixtures.path("legacy_symlink.tar"), tmp / "out")
    a = (tmp / "out" / (first + ".tar.gz")).read_bytes()
    b = (tmp / "out" / (later + ".tar.gz")).read_bytes()
    assert a == b, "the two copies of one diff differ"


def test_hardlinked_duplicate_layer_is_written_under_both_layer_ids(tmp):
    archive = expect.Archive(fixtures.path("legacy_hardlink.tar"))
    ids = archive.images[0].layer_ids
    assert archive.members[ids[3] + "/layer.tar"].islnk(), "fixture"
    split(fixtures.path("legacy_hardlink.tar"), tmp / "out")
    assert (tmp / "out" / (ids[3] + ".tar.gz")).read_bytes() == (tmp / "out" / (ids[5] + ".tar.gz")).read_bytes()


def test_containerd_gzip_blob_is_kept_and_zstd_blob_becomes_gzip(tmp):
    """docker >= 25 containerd store: a gzip blob comes out byte for byte (so its
    name is its own sha256); a zstd blob comes out as gzip of the same tar."""
    archive = expect.Archive(fixtures.path("docker25_containerd.tar"))
    img = archive.images[0]
    kinds = [b[:4] for b in img.blobs]
    assert kinds[0][:2] == b"\x1f\x8b" and kinds[1] == b"\x28\xb5\x2f\xfd", "fixture"
    split(fixtures.path("docker25_containerd.tar"), tmp / "out")
    gz = (tmp / "out" / (img.layer_ids[0] + ".tar.gz")).read_bytes()
    assert sha256(gz) == img.layer_ids[0], "gzip blob not kept byte for byte"
    zs = (tmp / "out" / (img.layer_ids[1] + ".tar.gz")).read_bytes()
    content = expect.gunzip_one_member(zs, "zstd layer")
    assert "sha256:" + sha256(content) == img.diff_ids[1]
    digests = json.loads((tmp / "out" / "digests.json").read_bytes())[0]
    assert digests[img.diff_ids[0]]["digest"] == img.layer_ids[0]
    assert digests[img.diff_ids[1]]["digest"] == sha256(zs)


def test_multimember_gzip_blob_becomes_one_member(tmp):
    archive = expect.Archive(fixtures.path("containerd_multimember.tar"))
    img = archive.images[0]
    assert not expect.blob_is_single_gzip_member(img.blobs[2]), "fixture"
    split(fixtures.path("containerd_multimember.tar"), tmp / "out")
    data = (tmp / "out" / (img.layer_ids[2] + ".tar.gz")).read_bytes()
    assert "sha256:" + sha256(expect.gunzip_one_member(data, "layer")) == img.diff_ids[2]


def test_two_platform_index_gives_both_images_in_index_order(tmp):
    split(fixtures.path("oci_platforms.tar"), tmp / "out")
    manifest = json.loads((tmp / "out" / "manifest.json").read_bytes())
    arches = [json.loads((tmp / "out" / m["Config"]).read_bytes())["architecture"] for m in manifest]
    assert arches == ["amd64", "arm64"], arches


def test_existing_empty_outdir_is_filled(tmp):
    (tmp / "out").mkdir()
    split(fixtures.path("legacy_two_images.tar"), tmp / "out")
    expect.check_output(fixtures.path("legacy_two_images.tar"), tmp / "out")


def test_v2metadata_digest_and_source_replace_computed_ones(tmp):
    """--v2metadata DIR: where DIR/<diff hex> exists, its first record's Digest
    and SourceRepository are used; other layers keep the computed digest."""
    archive = expect.Archive(fixtures.path("legacy_two_images.tar"))
    pulled = archive.images[0].diff_ids[0].split(":")[1]
    meta = tmp / "v2metadata"
    meta.mkdir()
    (meta / pulled).write_text(json.dumps([
        {"Digest": "sha256:" + "ab" * 32, "SourceRepository": "docker.io/library/ubuntu", "HMAC": ""},
        {"Digest": "sha256:" + "cd" * 32, "SourceRepository": "registry.example.com/other", "HMAC": ""}]))
    (meta / ("ef" * 32)).write_text(json.dumps([
        {"Digest": "sha256:" + "01" * 32, "SourceRepository": "docker.io/library/unrelated", "HMAC": ""}]))
    split(fixtures.path("legacy_two_images.tar"), tmp / "out", "--v2metadata", meta)
    expect.check_output(archive, tmp / "out",
                        v2metadata={pulled: ("sha256:" + "ab" * 32, "docker.io/library/ubuntu")})


def test_v2metadata_directory_that_does_not_exist_is_a_usage_error(tmp):
    p = layersplit("--v2metadata", tmp / "absent", fixtures.path("legacy_two_images.tar"), tmp / "out")
    assert_error(p, 2, ["no such directory"])
    assert not (tmp / "out").exists()


def test_v2metadata_digest_that_is_not_sha256_hex_is_rejected(tmp):
    """The first record's Digest goes into digests.json as a layer's digest:
    anything but sha256:<64 lowercase hex> rejects the run (exit 1, naming
    the file), nothing is written."""
    archive = expect.Archive(fixtures.path("legacy_two_images.tar"))
    pulled = archive.images[0].diff_ids[0].split(":")[1]
    for i, bad in enumerate(["sha256:" + "AB" * 32, "sha256:" + "ab" * 31, "md5:" + "ab" * 16,
                             "sha256:" + "ab" * 32 + "\n", "../../etc/passwd"]):
        meta = tmp / ("meta%d" % i)
        meta.mkdir()
        (meta / pulled).write_text(json.dumps([{"Digest": bad, "SourceRepository": "x", "HMAC": ""}]))
        p = layersplit("--v2metadata", meta, fixtures.path("legacy_two_images.tar"), tmp / "out")
        assert_error(p, 1, ["Digest is not sha256"])
        assert pulled in p.err, p.err
        assert not (tmp / "out").exists()
