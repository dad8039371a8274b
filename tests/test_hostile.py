"""Hostile and unusual archives beyond test_errors.py, and the resource limits.

A hostile archive must be rejected with exit 1 and one line `layersplit:
<what>: <why>` naming the flaw, from a file into an absent OUTDIR, into an
empty one, and from a pipe; and nothing may change anywhere: OUTDIR stays
absent or empty, no staging directory stays beside it, its parent holds
nothing new, the working directory stays empty, and the decoy directory that
the escaping archives aim at keeps exactly its one file.  The valid-but-unusual
ones must give the contract's output (expect.check_output).  The archives are
made by fixtures_hostile.py: the fixed ones in build/fixtures/hostile/, the
big ones and those naming the decoy in the test's own directory.

Cases already covered elsewhere, not repeated here: test_errors.py (truncated
inside a layer and inside a header, random bytes, empty file, zeros, duplicate
and malformed manifest.json, JSON nested 100 000 deep, missing layer and
config, diff_id value and count mismatches, absolute and `..` entry paths,
absolute, escaping, dangling and looping symlinks) and test_layouts.py
(outer gzip, zstd, xz and bzip2; duplicate layers as hard links, before or
after their target).
"""
import itertools
import json
import os
from pathlib import Path

import expect
import fixtures
import fixtures_hostile
from harness import (assert_error, assert_rejected, make_decoy, run_in,
                     snapshot, staging_dirs)

_order = itertools.count(1)


def hostile(name):
    return fixtures.path("hostile/" + name)




def accepted(tmp, archive, *options):
    """archive split from a file and from a pipe, both outputs as the contract says."""
    for pipe in (False, True):
        out = tmp / ("out-pipe" if pipe else "out-file")
        if pipe:
            p = run_in(list(options) + ["-", out], tmp, Path(archive).read_bytes())
        else:
            p = run_in(list(options) + [archive, out], tmp)
        assert p.returncode == 0, "exit %d: %s" % (p.returncode, p.err.strip())
        expect.check_output(archive, out)
        assert not staging_dirs(tmp), staging_dirs(tmp)


def _case(name, doc, fixture, keywords, mentions=None):
    def test(tmp):
        assert_rejected(tmp, hostile(fixture), keywords, mentions=mentions)
    test.__name__ = test.__qualname__ = "test_" + name
    test.__doc__ = doc
    test.__module__ = __name__
    test.order = next(_order)
    globals()[test.__name__] = test


B = fixtures_hostile.Base()
LB = B.b + "/layer.tar"

# name, what it is, keywords of the message, what it must name
for _name, _doc, _keys, _mentions in [
    ("hardlink_wrong_layer", "a layer stored as a hard link to another layer: the config's diff_id contradicts it",
     ["diff_id mismatch"], LB),
    ("hardlink_to_non_layer", "a layer that is a hard link to a small JSON file", ["not a tar"], LB),
    ("hardlink_absolute", "a hard link to /etc/passwd", ["absolute"], "/etc/passwd"),
    ("hardlink_dotdot", "a hard link to ../../etc/passwd", ["climbs out"], "../../etc/passwd"),
    ("hardlink_to_itself", "a hard link to itself", ["loop"], LB),
    ("symlink_chain_too_long", "a layer behind a chain of 45 symlinks", ["chain of more than 40 links"], None),
    ("manifest_symlink_absolute", "manifest.json as a symlink to /etc/passwd", ["absolute"], "manifest.json"),
    ("manifest_config_climbs_out", "manifest.json's Config climbing out with ../..", ["climbs out"], "Config"),
    ("manifest_config_absolute", "manifest.json's Config an absolute path", ["absolute"], "Config"),
    ("manifest_layer_climbs_out", "manifest.json's Layers climbing out with ..", ["climbs out"], "Layers"),
    ("manifest_absent", "no manifest.json and no index.json", ["no manifest.json or index.json"], None),
    ("manifest_is_an_object", "manifest.json an object, not a list", ["expected a list of images"], "manifest.json"),
    ("manifest_is_a_string", "manifest.json a JSON string", ["expected a list of images"], "manifest.json"),
    ("manifest_list_of_numbers", "manifest.json a list of numbers", ["expected an object"], "manifest.json"),
    ("manifest_config_is_a_number", "manifest.json's Config a number", ["expected a path string"], "Config"),
    ("manifest_layers_not_strings", "manifest.json's Layers holding an object", ["not a string"], "Layers"),
    ("manifest_empty_list", "manifest.json an empty list: no image to write", ["lists no images"], "manifest.json"),
    ("config_nested_deep", "the config nested 100 000 objects deep", ["nested deeper than 64 levels"], B.cfg_name),
    ("config_not_json", "the config truncated JSON", ["invalid JSON"], B.cfg_name),
    ("config_without_rootfs", "the config without rootfs.diff_ids", ["no rootfs.diff_ids"], B.cfg_name),
    ("truncated_in_manifest", "the stream ends inside manifest.json", ["truncated"], "manifest.json"),
    ("truncated_in_layer_head", "the stream ends in a layer's first block, before its kind is known",
     ["truncated"], "/layer.tar"),
    ("truncated_between_entries", "the stream ends after manifest.json, where repositories and "
     "tar's end blocks should follow: without the check, an output without repositories",
     ["truncated: the stream ends between two entries"], None),
    ("layer_is_random_bytes", "a layer.tar of random bytes", ["not a tar"], LB),
    ("layer_is_a_device", "a layer.tar that is a character device", ["not a tar"], LB),
    ("layer_is_a_fifo", "a layer.tar that is a FIFO", ["not a tar"], LB),
    ("layer_is_a_directory", "a layer.tar that is a directory", ["not a tar"], LB),
    ("duplicate_layer_entry", "the same layer.tar twice with different data", ["duplicate entry"], LB),
    ("gzip_layer_truncated", "a gzip layer blob cut in half", ["unexpected end of data"], "blobs/sha256/"),
    ("gzip_layer_corrupt", "a gzip layer blob with a flipped byte", ["invalid"], "blobs/sha256/"),
    ("gzip_layer_trailing_garbage", "a gzip layer blob followed by garbage", ["trailing garbage"], "blobs/sha256/"),
    ("oci_layer_digest_climbs_out", "an OCI layer digest sha256:../../../etc/passwd", ["malformed digest"],
     "../../../etc/passwd"),
    ("oci_config_digest_not_sha256", "an OCI config digest that is not sha256", ["malformed digest"], "md5:"),
    ("oci_index_nested_too_deep", "OCI image indexes nested 12 deep", ["nested too deeply"], None),
    ("layer_id_too_long", "a layer directory named with 300 characters: no file can have its name",
     ["too long"], "l" * 40),
    ("oci_layer_digest_mismatch", "an OCI tar layer blob whose data is not its name's digest",
     ["digest mismatch"], "blobs/sha256/"),
    ("oci_config_digest_mismatch", "an OCI config blob with a space added under its old name",
     ["digest mismatch"], "blobs/sha256/"),
    ("oci_manifest_digest_mismatch", "an OCI image manifest blob changed under its old name",
     ["digest mismatch"], "blobs/sha256/"),
    ("oci_index_digest_mismatch", "a nested OCI image index changed under its old name",
     ["digest mismatch"], "blobs/sha256/"),
    ("oci_gzip_blob_digest_mismatch", "a gzip layer blob whose data is not its name's digest",
     ["digest mismatch"], "blobs/sha256/"),
    ("oci_zstd_blob_digest_mismatch", "a zstd layer blob whose data is not its name's digest",
     ["digest mismatch"], "blobs/sha256/"),
    ("bzip2_layer_trailing_garbage", "a bzip2 layer blob followed by garbage", ["trailing garbage"],
     "blobs/sha256/"),
    ("bzip2_layer_trailing_zeros", "a bzip2 layer blob followed by zero bytes", ["trailing garbage"],
     "blobs/sha256/"),
    ("xz_layer_trailing_garbage", "an xz layer blob followed by garbage", ["lzma", "trailing garbage"],
     "blobs/sha256/"),
    ("zstd_layer_trailing_garbage", "a zstd layer blob followed by garbage", ["zstd", "trailing garbage"],
     "blobs/sha256/"),
    ("zstd_holding_gzip_layer", "a zstd blob holding a gzip stream of the tar", ["nested compression"],
     "blobs/sha256/"),
    ("xz_holding_zstd_layer", "an xz blob holding a zstd stream of the tar", ["nested compression"],
     "blobs/sha256/"),
    ("bzip2_holding_xz_layer", "a bzip2 blob holding an xz stream of the tar", ["nested compression"],
     "blobs/sha256/"),
    ("gzip_holding_gzip_layer", "a gzip blob holding a gzip stream of the tar", ["nested compression"],
     "blobs/sha256/"),
    ("gzip_holding_bzip2_layer", "a gzip blob holding a bzip2 stream of the tar", ["nested compression"],
     "blobs/sha256/"),
    ("sparse_layer_entry", "a layer.tar stored as a sparse entry with a 1 TiB hole", ["sparse"], LB),
    ("sparse_map_past_size", "a layer.tar whose sparse map ends past its size (not flagged sparse) with a 1 TiB hole",
     ["sparse data"], LB),
    ("duplicate_entry_double_slash", "a layer.tar twice, once as <id>//layer.tar", ["duplicate entry"], LB),
    ("duplicate_entry_dot_component", "a layer.tar twice, once as <id>/./layer.tar", ["duplicate entry"], LB),
    ("layer_id_dotdot", "a podman-style root layer named ...tar: its layer id would be ..",
     ["not a plain name"], "...tar"),
    ("layer_id_control_character", "a layer directory whose name holds an escape character",
     ["not a plain name"], None),
    ("layer_id_not_utf8", "a layer directory whose name is not UTF-8", ["not a plain name"], None),
    ("pax_path_with_nul", "a layer.tar whose PAX path goes on after a NUL byte", ["NUL byte"], None),
    ("pax_linkpath_with_nul", "a symlink whose PAX linkpath goes on after a NUL byte", ["NUL byte"], None),
    ("repo_tag_not_utf8", "a RepoTags entry that is not UTF-8", ["not valid UTF-8"], "RepoTags"),
    ("repo_tag_control_character", "a RepoTags entry holding an escape character", ["not valid UTF-8"],
     "RepoTags"),
]:
    _case(_name, _doc, _name + ".tar", _keys, _mentions)


def _escape(name, keywords):
    def test(tmp):
        decoy = make_decoy(tmp)
        archive = tmp / (name + ".tar")
        archive.write_bytes(fixtures_hostile.escaping(decoy)[name])
        assert_rejected(tmp, archive, keywords, decoy=decoy)
    test.__name__ = test.__qualname__ = "test_" + name
    test.__doc__ = "an entry aiming at the decoy directory (%s): rejected, the decoy untouched" % name
    test.__module__ = __name__
    test.order = next(_order)
    globals()[test.__name__] = test


for _name, _keys in [("file_absolute_into_decoy", ["absolute"]),
                     ("file_climbing_into_decoy", ["climbs out"]),
                     ("symlink_to_decoy_absolute", ["absolute"]),
                     ("symlink_to_decoy_climbing", ["climbs out"]),
                     ("hardlink_to_decoy", ["absolute"]),
                     ("symlink_dir_then_file_through_it", ["absolute"]),
                     ("manifest_config_in_decoy", ["climbs out"])]:
    _escape(_name, _keys)


def test_truncated_layer_head_with_every_bundled_policy(tmp):
    """Each bundled policy sniffs a layer's first bytes; a stream that ends
    there is an archive error for all of them, not a policy crash (found by
    the fuzzer)."""
    policies = sorted(p.stem for p in (Path(__file__).parent.parent / "lua" / "policies").glob("*.lua"))
    assert "launchpad" in policies, policies
    for policy in policies:
        if policy == "push":   # needs a registry: test_push_faults truncates its input
            continue
        sub = tmp / policy
        sub.mkdir()
        assert_rejected(sub, hostile("truncated_in_layer_head.tar"), ["truncated"], options=["--policy", policy])


def test_outer_gzip_stream_truncated(tmp):
    """`docker save | gzip` cut in half: the tar inside ends early."""
    data = fixtures.path("legacy_symlink.tar.gz").read_bytes()
    (tmp / "half.tar.gz").write_bytes(data[:len(data) // 2])
    assert_rejected(tmp, tmp / "half.tar.gz", ["truncated", "unexpected end", "eof"])


def test_outer_zstd_stream_truncated(tmp):
    data = fixtures.path("legacy_two_images.tar.zst").read_bytes()
    (tmp / "half.tar.zst").write_bytes(data[:len(data) // 2])
    assert_rejected(tmp, tmp / "half.tar.zst", ["truncated", "unexpected end", "eof", "zstd"])


def test_outer_gzip_of_random_bytes(tmp):
    """A valid gzip stream around bytes that are no tar."""
    import gzip
    import random
    (tmp / "noise.gz").write_bytes(gzip.compress(random.Random(3).randbytes(100000), mtime=0))
    assert_rejected(tmp, tmp / "noise.gz", [])


# ---------------------------------------------------------------- valid but unusual

def test_unreferenced_entry_with_5000_character_name_is_ignored(tmp):
    accepted(tmp, hostile("ok_unreferenced_long_name.tar"))


def test_unreferenced_tar_with_5000_character_name_is_ignored(tmp):
    """An unreferenced entry that looks like a layer (<name>.tar holding a tar)
    and whose layer file name could not exist: staged under another name, dropped."""
    accepted(tmp, hostile("ok_unreferenced_long_tar_name.tar"))


def test_layer_directory_with_200_character_name(tmp):
    """A v1 id past ustar's 100-character name field (a PAX header): a 207-byte file name."""
    accepted(tmp, hostile("ok_long_layer_dir_pax.tar"))
    assert (tmp / "out-file" / ("p" * 200 + ".tar.gz")).is_file()


def test_gzip_layer_with_zero_padding_is_recompressed(tmp):
    """A gzip blob followed by zero padding is no single member: the layer
    file is the recompressed tar, one member (expect.check_output checks it)."""
    accepted(tmp, hostile("ok_gzip_layer_zero_padded.tar"))


def test_gzip_layer_of_two_members_is_recompressed(tmp):
    accepted(tmp, hostile("ok_gzip_layer_two_members.tar"))


def test_shared_children_index_fan_out(tmp):
    """index.json leading through 7 image indexes of 12 descriptors each, all
    naming the next index (12**7 = 35 million paths over 9 blobs): each index
    is read once, through the first path, so the output is that of one index
    naming the manifest 12 times."""
    base = fixtures_hostile.Base()
    archive, plain = tmp / "fanout.tar", tmp / "plain.tar"
    archive.write_bytes(fixtures_hostile.shared_fanout(base, 12, 7))
    # The last index alone: checked against the contract, and the fan-out's
    # output must be the same bytes (expect's own model would walk every path).
    plain.write_bytes(fixtures_hostile.shared_fanout(base, 12, 1))
    accepted(tmp, plain)
    p = run_in([archive, tmp / "fanout"], tmp)
    assert p.returncode == 0, p.err
    assert snapshot(tmp / "fanout") == snapshot(tmp / "out-file")


def test_more_images_than_the_cap(tmp):
    """10 001 manifest.json sections (one image, one config) are past the cap
    of 10 000 images; 10 000 are not, and the config is written once."""
    fixtures_hostile.many_images(tmp / "over.tar.gz", 10001)
    line = assert_rejected(tmp, tmp / "over.tar.gz", ["more than 10000 images"], mentions="manifest.json")
    assert "limit" in line, line
    fixtures_hostile.many_images(tmp / "at.tar.gz", 10000)
    p = run_in([tmp / "at.tar.gz", tmp / "ok"], tmp)
    assert p.returncode == 0, p.err
    assert len(json.loads((tmp / "ok" / "manifest.json").read_bytes())) == 10000


def test_more_index_images_than_the_cap(tmp):
    fixtures_hostile.many_index_images(tmp / "over.tar.gz", 10001)
    assert_rejected(tmp, tmp / "over.tar.gz", ["more than 10000 images"], mentions="index.json")


def test_more_layers_than_the_cap(tmp):
    """10 001 layer blobs in one archive (empty tars, 0.4 MB gzip-compressed):
    rejected at the 10 001st, naming the cap."""
    fixtures_hostile.many_layers_staged(tmp / "layers.tar.gz", 10001)
    line = assert_rejected(tmp, tmp / "layers.tar.gz", ["more than 10000 layer blobs"], mentions="10000.tar")
    assert "limit" in line, line


def test_max_layer_size_caps_a_decompressed_layer(tmp):
    """A zstd layer of 64 MiB of zeros (a few KB) under --max-layer-size 16M:
    exit 1 naming the limit; a gzip layer (kept as it is) the same; without
    the caps both split."""
    for kind in ("zstd", "gzip"):
        sub = tmp / kind
        sub.mkdir()
        archive = sub / "zeros.tar"
        fixtures_hostile.high_ratio_layer(archive, kind, 64 << 20)
        line = assert_rejected(sub, archive, ["--max-layer-size"],
                               options=["--max-layer-size", "16M", "--max-ratio", "0"])
        assert "16777216" in line, line
        accepted(sub, archive, "--max-ratio", "0")


def test_max_layer_size_stops_a_gzip_layer_as_it_inflates(tmp):
    """A kept gzip layer is capped while it is inflated, not after: 8 MiB of
    zeros in one member, then garbage.  Without a cap the whole member is
    inflated and the garbage rejected; under --max-layer-size 1M the
    inflation stops at the cap, before the garbage is reached."""
    archive = tmp / "zeros.tar"
    fixtures_hostile.high_ratio_layer(archive, "gzip", 8 << 20, garbage=b"not gzip")
    (tmp / "capped").mkdir()
    line = assert_rejected(tmp / "capped", archive, ["more than 1048576 bytes of data, the --max-layer-size limit"],
                           options=["--max-layer-size", "1M"])
    assert "garbage" not in line, line
    (tmp / "uncapped").mkdir()
    assert_rejected(tmp / "uncapped", archive, ["trailing garbage after gzip data"])


def test_max_ratio_caps_a_decompression_bomb(tmp):
    """zstd, xz and bzip2 layers of 64 MiB of zeros, each far past gzip's
    1032:1: rejected by default naming --max-ratio and the blob; with
    --max-ratio 0 they split; a gzip layer cannot pass 1032:1 and splits."""
    for kind in ("zstd", "xz", "bzip2"):
        sub = tmp / kind
        sub.mkdir()
        archive = sub / "zeros.tar"
        fixtures_hostile.high_ratio_layer(archive, kind, 64 << 20)
        line = assert_rejected(sub, archive, ["--max-ratio"], mentions="blobs/sha256/")
        assert "1032 times" in line, line
        if kind == "zstd":
            accepted(sub, archive, "--max-ratio", "0")
    p = run_in(["--max-ratio", "x", hostile("base2.tar"), tmp / "out"], tmp)
    assert_error(p, 2, ["--max-ratio"])


def test_max_layer_size_caps_a_plain_layer(tmp):
    line = assert_rejected(tmp, hostile("base2.tar"), ["--max-layer-size"], options=["--max-layer-size", "1K"])
    assert "1024 bytes" in line, line


def test_max_layer_size_bad_values_are_usage_errors(tmp):
    for value in ("1T", "-1", "8X", "99999999999G"):
        p = run_in(["--max-layer-size", value, hostile("base2.tar"), tmp / "out"], tmp)
        assert_error(p, 2, ["--max-layer-size"])
        assert os.listdir(tmp) == [], os.listdir(tmp)


def test_gnu_long_names(tmp):
    """GNU tar's ././@LongLink names instead of PAX headers."""
    accepted(tmp, hostile("ok_gnu_long_names.tar"))


def test_fuzz_seeds_are_valid_archives(tmp):
    """The fuzzer's tiny seeds (every layout) split cleanly, so fuzzing starts
    from inputs that reach the end of a run."""
    seeds = sorted(fixtures.path("seeds").iterdir())
    assert len(seeds) >= 8, seeds
    for seed in seeds:
        sub = tmp / seed.name
        sub.mkdir()
        accepted(sub, seed)


# ---------------------------------------------------------------- resource limits

def test_manifest_of_20_mb_is_too_large(tmp):
    """A document is read into memory only up to 16 MiB; the message says so."""
    fixtures_hostile.big_manifest(tmp / "big.tar")
    line = assert_rejected(tmp, tmp / "big.tar", ["too large"], mentions="manifest.json")
    assert "limit 16777216" in line, line


def test_many_tiny_entries_reach_the_heap_limit(tmp):
    """6000 entries with 2000-character names under --max-memory 8M: exit 3,
    the message names the limit and the option; without the cap the same
    archive splits (so the cap, not the archive, stopped it)."""
    fixtures_hostile.many_entries(tmp / "many.tar.gz", 6000, name_len=2000)
    line = assert_rejected(tmp, tmp / "many.tar.gz", ["Lua heap limit of 8 MiB reached"], code=3,
                    options=["--max-memory", "8M"])
    assert "--max-memory" in line, line
    p = run_in([tmp / "many.tar.gz", tmp / "ok"], tmp)
    assert p.returncode == 0, p.err


def test_manifest_with_a_million_layers_reaches_the_heap_limit(tmp):
    """8 MB of JSON that decodes to a list of a million strings: exit 3 under
    --max-memory 8M; with the default cap the list is read and the image
    rejected for what it says (2 diff_ids for a million layers)."""
    fixtures_hostile.many_layers(tmp / "million.tar", 1000000)
    assert_rejected(tmp, tmp / "million.tar", ["Lua heap limit of 8 MiB reached"], code=3,
             options=["--max-memory", "8M"])
    p = run_in([tmp / "million.tar", tmp / "out"], tmp)
    assert_error(p, 1, ["2 diff_ids for 1000000 layers"])


def test_tiny_heap_limit_fails_cleanly(tmp):
    """--max-memory 64K is too small to start: still one line, exit 3, nothing left."""
    assert_rejected(tmp, fixtures.path("legacy_symlink.tar"), ["Lua heap limit of 64 KiB reached"], code=3,
             options=["--max-memory", "64K"])


def test_max_memory_out_of_range_is_a_usage_error(tmp):
    for value in ("99999999999999G", "1025G", "-1", "8X"):
        p = run_in(["--max-memory", value, fixtures.path("legacy_symlink.tar"), tmp / "out"], tmp)
        assert_error(p, 2, ["--max-memory"])
        assert os.listdir(tmp) == [], os.listdir(tmp)


def _nul_layer():
    """A layer tar whose second entry's PAX path goes on after a NUL byte."""
    inner = fixtures_hostile.info("srv/file", size=3)
    inner.pax_headers = {"path": "srv/file\0.hidden"}
    return fixtures_hostile.raw_tar([(fixtures_hostile.info("srv/", fixtures_hostile.tarfile.DIRTYPE), None),
                                     (inner, b"abc")])


def _nul_listed_layer_archive():
    import tarkit
    layer = _nul_layer()
    return tarkit.legacy_archive([{"tags": ["example.com/nul:1"], "config": tarkit.config_for([layer]),
                                   "layers": [(tarkit.pick_id("nul/1"), layer)]}])


def test_pax_path_with_nul_inside_a_listed_layer(tmp):
    """files-list reads each layer's own tar: a PAX path with a NUL byte in
    it there is rejected too, not listed cut short."""
    archive = tmp / "a.tar"
    archive.write_bytes(_nul_listed_layer_archive())
    assert_rejected(tmp, archive, ["NUL byte"], options=["--policy", "files-list"])


def test_pax_path_with_nul_inside_a_listed_compressed_layer_blob(tmp):
    """The same layer as a gzip blob (read as a tar by the reader that
    decompresses it) and as a zstd blob, in a docker >= 25 layout."""
    import tarkit
    layer = _nul_layer()
    for kind in ("gzip", "zstd"):
        blob = fixtures_hostile.compressed(kind, layer)
        config = tarkit.config_for([layer])
        manifest = tarkit.oci_manifest(config, [(fixtures_hostile.PLAIN + "+" + kind, blob)])
        index = {"schemaVersion": 2, "manifests": [tarkit.descriptor(fixtures_hostile.MANIFEST, manifest)]}
        section = [{"Config": "blobs/sha256/" + tarkit.sha256(config), "RepoTags": ["example.com/nul:1"],
                    "Layers": ["blobs/sha256/" + tarkit.sha256(blob)]}]
        sub = tmp / kind
        sub.mkdir()
        (sub / "a.tar").write_bytes(fixtures_hostile.oci([blob, config, manifest], index, manifest=section))
        assert_rejected(sub, sub / "a.tar", ["NUL byte"], options=["--policy", "files-list"])


# The NUL cases above inside an outer compression (`docker save | gzip`): the
# PAX watch reads the decompressed tar, so each is rejected the same way.
OUTER = {"gzip": "gz", "zstd": "zst", "xz": "xz", "bzip2": "bz2"}


def _outer_nul(name, kind, make, options):
    def test(tmp):
        archive = tmp / ("a.tar." + OUTER[kind])
        archive.write_bytes(fixtures_hostile.compressed(kind, make()))
        assert_rejected(tmp, archive, ["NUL byte"], options=options)
    test.__name__ = test.__qualname__ = "test_%s_under_outer_%s" % (name, kind)
    test.__doc__ = "%s, the archive piped through %s: rejected from a file and a pipe" % (name, kind)
    test.__module__ = __name__
    test.order = next(_order)
    globals()[test.__name__] = test


for _kind in OUTER:
    _outer_nul("pax_path_with_nul", _kind, lambda: hostile("pax_path_with_nul.tar").read_bytes(), [])
    _outer_nul("pax_linkpath_with_nul", _kind, lambda: hostile("pax_linkpath_with_nul.tar").read_bytes(), [])
    _outer_nul("pax_path_with_nul_inside_a_listed_layer", _kind, _nul_listed_layer_archive,
               ["--policy", "files-list"])


def test_pax_headers_under_every_outer_compression_split(tmp):
    """A valid archive with PAX headers (a 200-character layer directory),
    piped through each compression: split as the contract says."""
    data = hostile("ok_long_layer_dir_pax.tar").read_bytes()
    for kind, ext in OUTER.items():
        sub = tmp / kind
        sub.mkdir()
        archive = sub / ("a.tar." + ext)
        archive.write_bytes(fixtures_hostile.compressed(kind, data))
        accepted(sub, archive)
