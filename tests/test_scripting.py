"""SCRIPTING.md and the policy API it describes.

- Every ```lua block of SCRIPTING.md is a file of the repository (examples/ or
  lua/policies/) quoted whole, every examples/*.lua is quoted, and every
  example is run below with its output checked against Python's own reading
  of the same archive.
- A policy given by path that fails (syntax error at load, error in setup,
  entry or finish) is reported as `layersplit: policy site.lua:LINE: ...`,
  exit 4, with nothing left in or beside OUTDIR.
- --trace writes one line per archive entry in the documented format.
"""
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import zlib

import expect
import fixtures
from harness import REPO, assert_error, binary, layersplit, split

EXAMPLES = REPO / "examples"
RUN = set()   # the examples a test below runs


def runs(name):
    """Marks a test as the one that runs examples/<name>."""
    def mark(fn):
        RUN.add(name)
        return fn
    return mark


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def lua_blocks(text):
    return re.findall(r"^```lua\n(.*?)^```$", text, re.S | re.M)


def quotable_files():
    files = sorted(EXAMPLES.glob("*.lua")) + sorted((REPO / "lua" / "policies").glob("*.lua"))
    return {str(p.relative_to(REPO)): p.read_text() for p in files}


def test_every_lua_block_in_scripting_md_is_a_file_quoted_whole(tmp):
    blocks = lua_blocks((REPO / "SCRIPTING.md").read_text())
    assert blocks, "no ```lua blocks in SCRIPTING.md"
    files = quotable_files()
    for block in blocks:
        same = [name for name, text in files.items() if text == block]
        assert same, "a ```lua block in SCRIPTING.md is no file of examples/ or lua/policies/ " \
                     "(quote files whole; it starts %r)" % block[:80]


def test_every_example_is_quoted_in_scripting_md(tmp):
    blocks = lua_blocks((REPO / "SCRIPTING.md").read_text())
    for p in sorted(EXAMPLES.glob("*.lua")):
        assert p.read_text() in blocks, "SCRIPTING.md does not quote %s" % p.relative_to(REPO)


def test_every_bundled_policy_is_documented_and_runs_by_name(tmp):
    """--help and SCRIPTING.md name each lua/policies/*.lua (test_docs checks
    the manual), and --policy NAME runs it."""
    usage = layersplit("--help").stdout.decode()
    scripting = (REPO / "SCRIPTING.md").read_text()
    for p in sorted((REPO / "lua" / "policies").glob("*.lua")):
        name = p.stem
        assert name in usage, "--help does not name the %s policy" % name
        assert "| `%s`" % name in scripting, "SCRIPTING.md's table lacks the %s policy" % name
        if name == "push":   # needs a registry: runs by name under `layersplit push` (test_push)
            assert_error(layersplit("--policy", name, fixtures.path("legacy_symlink.tar"), tmp / name),
                         2, ["layersplit push"])
            continue
        split(fixtures.path("legacy_symlink.tar"), tmp / name, "-q", "--policy", name)


# ---------------------------------------------------------------- the examples

def kind_of(head):
    """image.sniff, in Python."""
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    if head[257:262] == b"ustar" or (len(head) >= 512 and not head[:512].strip(b"\0")):
        return "tar"
    if head.lstrip()[:1] in (b"{", b"["):
        return "json"
    return "unknown"


def entry_type(m):
    return ("file" if m.isreg() else "dir" if m.isdir() else "symlink" if m.issym()
            else "hardlink" if m.islnk() else "other")


@runs("entries.lua")
def test_example_entries_lists_every_entry_with_its_kind(tmp):
    for archive in ("docker25_containerd.tar", "legacy_symlink.tar"):
        path = fixtures.path(archive)
        p = layersplit("run", EXAMPLES / "entries.lua", path)
        assert p.returncode == 0, p.err
        want = []
        with tarfile.open(path) as t:
            for m in t:
                kind = kind_of(t.extractfile(m).read(512)) if m.isreg() else ""
                name = m.name + (" -> " + m.linkname if m.issym() or m.islnk() else "")
                want.append("%-8s %04o %10d %-7s %s" % (entry_type(m), m.mode, m.size if m.isreg() else 0,
                                                      kind, name))
        got = p.stdout.decode().splitlines()
        assert got == want, "%s:\n%s\nwant\n%s" % (archive, "\n".join(got), "\n".join(want))
        assert p.err == "%d bytes read\n" % path.stat().st_size, p.err


@runs("entries.lua")
def test_example_entries_fails_on_garbage_like_the_tool(tmp):
    p = layersplit("run", EXAMPLES / "entries.lua", fixtures.path("hostile/garbage.bin"))
    assert_error(p, 1, ["unrecognized"])


@runs("layer-files.lua")
def test_example_layer_files_hashes_and_lists_each_layer(tmp):
    for archive in ("docker25_containerd.tar", "legacy_symlink.tar"):
        path = fixtures.path(archive)
        p = layersplit("run", EXAMPLES / "layer-files.lua", path)
        assert p.returncode == 0, p.err
        want = []
        with tarfile.open(path) as t:
            for m in t:
                if not m.isreg():
                    continue
                blob = t.extractfile(m).read()
                if kind_of(blob[:512]) not in ("tar", "gzip", "zstd"):
                    continue
                want.append("%s sha256:%s" % (m.name, sha256(blob)))
                with tarfile.open(fileobj=io.BytesIO(expect.outer_decompress(blob))) as layer:
                    for f in layer:
                        name = f.name[2:] if f.name.startswith("./") else f.name
                        want.append("  %-8s %10d %s" % (entry_type(f), f.size if f.isreg() else 0,
                                                        name.rstrip("/") or "."))
        got = p.stdout.decode().splitlines()
        assert got == want, "%s:\n%s\nwant\n%s" % (archive, "\n".join(got), "\n".join(want))


@runs("gzip.lua")
def test_example_gzip_writes_one_reproducible_member_and_reports_it(tmp):
    src = fixtures.path("legacy_symlink.tar")
    data = src.read_bytes()
    p = layersplit("run", EXAMPLES / "gzip.lua", src, tmp / "a.gz", "9")
    assert p.returncode == 0, p.err
    out = (tmp / "a.gz").read_bytes()
    assert expect.gunzip_one_member(out, "a.gz") == data
    assert p.stdout.decode().splitlines() == [
        "%s: %d bytes, sha256 %s" % (src, len(data), sha256(data)),
        "%s: %d bytes, sha256 %s" % (tmp / "a.gz", len(out), sha256(out)),
        "1 gzip member, inflates to the same sha256"], p.stdout
    # a compressed input is read decompressed; level 1 gives other bytes
    (tmp / "in.gz").write_bytes(gzip.compress(data))
    p = layersplit("run", EXAMPLES / "gzip.lua", tmp / "in.gz", tmp / "b.gz", "1")
    assert p.returncode == 0, p.err
    b = (tmp / "b.gz").read_bytes()
    assert zlib.decompress(b, 31) == data and b != out
    assert_error(layersplit("run", EXAMPLES / "gzip.lua", src), 2, ["expected FILE"])


@runs("max-layer-size.lua")
def test_example_max_layer_size_rejects_a_large_layer(tmp):
    archive = fixtures.path("legacy_two_images.tar")
    big = max((len(b), lid) for img in expect.Archive(archive).images
              for lid, b in zip(img.layer_ids, img.blobs))
    assert big[0] > 1 << 20, "fixture: no layer over 1M"
    parent = tmp / "p"
    parent.mkdir()
    p = layersplit("--policy", EXAMPLES / "max-layer-size.lua", "--set", "max_layer_size=1M",
                   archive, parent / "out")
    line = assert_error(p, 1, ["over the limit"])
    assert big[1] in line, "the message does not name layer %s: %r" % (big[1], line)
    assert os.listdir(parent) == [], os.listdir(parent)
    split(archive, tmp / "out", "--policy", EXAMPLES / "max-layer-size.lua",
          "--set", "max_layer_size=2M")
    expect.check_output(archive, tmp / "out")
    p = layersplit("--policy", EXAMPLES / "max-layer-size.lua", "--set", "max_layer_size=lots",
                   archive, parent / "out")
    assert_error(p, 2, ["max_layer_size"])
    # A kept gzip layer too: the policy's own limit, not --max-layer-size
    # (the policy's ctx field is not the option).
    p = layersplit("--policy", EXAMPLES / "max-layer-size.lua", "--set", "max_layer_size=1K",
                   fixtures.path("oci_archive.tar"), parent / "out")
    line = assert_error(p, 1, ["over the limit of 1024"])
    assert "--max-layer-size" not in line, line


@runs("configs-only.lua")
def test_example_configs_only_writes_configs_and_images_json(tmp):
    for archive in ("legacy_two_images.tar", "oci_platforms.tar", "podman_dup.tar"):
        model = expect.Archive(fixtures.path(archive))
        out = tmp / archive
        split(fixtures.path(archive), out, "--policy", EXAMPLES / "configs-only.lua")
        images = json.loads((out / "images.json").read_bytes())
        want = [{"config": sha256(img.config) + ".json", "repo_tags": img.tags,
                 "diff_ids": img.diff_ids} for img in model.images]
        assert images == want, "%s: images.json %r, want %r" % (archive, images, want)
        configs = {img.config for img in model.images}
        assert {p.name for p in out.iterdir()} == {"images.json"} | {sha256(c) + ".json" for c in configs}
        for c in configs:
            assert (out / (sha256(c) + ".json")).read_bytes() == c


@runs("site-extract.lua")
def test_example_site_extract_writes_the_final_views_os_release_and_docs(tmp):
    """Its rules against Python's own reading of the layer tars (the overlay
    model of test_extract); --set docs=no leaves the docs out; its settings
    are its own."""
    from test_extract import final_view, members
    policy = EXAMPLES / "site-extract.lua"
    for archive_name in ("legacy_symlink.tar", "docker25_containerd.tar"):
        archive = fixtures.path(archive_name)
        for docs in ("yes", "no"):
            out = tmp / ("%s-%s" % (archive_name, docs))
            split(archive, out, "-q", "--policy", policy, "--set", "docs=" + docs)
            for img in expect.Archive(archive).images:
                view = final_view([members(b) for b in img.blobs])
                want = {p: d for p, d in view.items()
                        if p in ("etc/os-release", "usr/lib/os-release") or p.endswith(".spdx.json")
                        or (docs == "yes" and p.startswith("usr/share/doc/"))}
                d = out / "extracted" / sha256(img.config)
                got = {str(q.relative_to(d)): q.read_bytes() for q in d.rglob("*") if q.is_file()}
                assert got == want, (archive_name, docs, sorted(got), sorted(want))
                if archive_name == "legacy_symlink.tar":   # the fixture has both
                    assert "etc/os-release" in got, sorted(got)
                    assert any(k.startswith("usr/share/doc/") for k in got) == (docs == "yes"), sorted(got)
    text = layersplit("--policy", policy, "--help").stdout.decode()
    assert "docs=yes" in text and "max_file_size=4M" in text, text
    assert_error(layersplit("--policy", policy, "--set", "paths=**", fixtures.path("legacy_symlink.tar"),
                            tmp / "x"), 2, ["unknown setting", "docs, max_file_size"])


@runs("push-mirror.lua")
def test_example_push_mirror_pushes_the_same_image_to_two_registries(tmp):
    from registry import Registry, skopeo_inspect_raw
    archive = fixtures.path("podman_two_images.tar")
    with Registry(tmp) as first, Registry(tmp) as second:
        env = dict(os.environ, HOME=str(tmp), XDG_CACHE_HOME=str(tmp / "cache"))
        p = subprocess.run([binary(), "push", "--tls-verify=false", "--json",
                            "--policy", EXAMPLES / "push-mirror.lua",
                            "--set", "mirror=%s/mirror/x" % second.host,
                            archive, "%s/team/app" % first.host],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=120)
        assert p.returncode == 0, p.stderr.decode()
        doc = json.loads(p.stdout)
        refs = sorted("%s:%s" % (x["repository"], x["tag"]) for x in doc["pushed"])
        assert refs == sorted("%s/%s:%s" % (h, r, t) for h, r in ((first.host, "team/app"),
                              (second.host, "mirror/x")) for t in ("base", "second")), refs
        for tag in ("base", "second"):
            a = skopeo_inspect_raw("%s/team/app:%s" % (first.host, tag))
            b = skopeo_inspect_raw("%s/mirror/x:%s" % (second.host, tag))
            assert a == b
            model = [img for img in expect.Archive(archive).images if "example.com/app:" + tag in img.tags][0]
            assert json.loads(a)["config"]["digest"] == "sha256:" + sha256(model.config)
        assert second.count("PATCH") == 0     # the mirror gets whole blobs from the spool


def test_every_example_is_run_by_a_test(tmp):
    have = {p.name for p in EXAMPLES.glob("*.lua")}
    assert have == RUN, "examples no test runs: %r; tests of missing examples: %r" % (
        sorted(have - RUN), sorted(RUN - have))


# ---------------------------------------------------------------- policy errors

def run_policy(tmp, source, archive="legacy_two_images.tar", *options):
    """layersplit --policy site.lua (named relatively, from its directory);
    returns the process and OUTDIR's parent."""
    (tmp / "site.lua").write_text(source)
    parent = tmp / "p"
    parent.mkdir()
    p = subprocess.run([binary(), "--policy", "site.lua"] + list(options)
                       + [str(fixtures.path(archive)), str(parent / "out")],
                       cwd=tmp, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=120)
    p.err = p.stderr.decode(errors="replace")
    return p, parent


def policy_failed(p, parent, line_no, words):
    line = assert_error(p, 4)
    prefix = "layersplit: policy site.lua:%d: " % line_no
    assert line.startswith(prefix), "want %r..., got %r" % (prefix, line)
    assert all(w in line for w in words), "%r lacks %r" % (line, words)
    assert os.listdir(parent) == [], "left behind: %r" % os.listdir(parent)


WRAPPED = """local launchpad = require "layersplit.policies.launchpad"
local policy = setmetatable({}, {__index = launchpad})
"""


def test_syntax_error_at_load_names_file_and_line(tmp):
    p, parent = run_policy(tmp, WRAPPED + "function policy.entry(ctx, entry)\n"
                           "\treturn launchpad.entry(ctx entry)\nend\nreturn policy\n")
    policy_failed(p, parent, 4, ["')' expected"])


def test_error_in_setup_names_file_and_line(tmp):
    p, parent = run_policy(tmp, WRAPPED + "function policy.setup(ctx, settings)\n"
                           "\tlaunchpad.setup(ctx, settings)\n"
                           "\tctx.limit = settings.limit + 1\nend\nreturn policy\n")
    policy_failed(p, parent, 5, ["arithmetic", "limit"])


def test_error_in_entry_names_file_and_line(tmp):
    p, parent = run_policy(tmp, WRAPPED + "function policy.entry(ctx, entry)\n"
                           "\tif entry.path:match('%.json$') then\n"
                           "\t\terror('no JSON wanted: ' .. entry.path)\n"
                           "\tend\n\treturn launchpad.entry(ctx, entry)\nend\nreturn policy\n")
    policy_failed(p, parent, 5, ["no JSON wanted: "])


def test_error_in_finish_after_all_layers_names_file_and_line(tmp):
    """Every layer staged, manifests written: the error still leaves nothing."""
    p, parent = run_policy(tmp, WRAPPED + "function policy.finish(ctx)\n"
                           "\tlaunchpad.finish(ctx)\n"
                           "\tlocal oops = ctx.store.nothing.here\nend\nreturn policy\n")
    policy_failed(p, parent, 5, ["nothing"])


def test_policy_without_entry_function_is_a_policy_error(tmp):
    p, parent = run_policy(tmp, "return {setup = function() end}\n")
    assert_error(p, 4, ["entry function"])
    assert os.listdir(parent) == []


def test_missing_policy_file_and_unknown_name_are_usage_errors(tmp):
    archive = fixtures.path("legacy_symlink.tar")
    assert_error(layersplit("--policy", tmp / "absent.lua", archive, tmp / "out"), 2, ["no such policy"])
    assert_error(layersplit("--policy", "no-such-policy", archive, tmp / "out"), 2, ["unknown policy"])
    assert not (tmp / "out").exists()


def test_ctx_fail_sets_the_exit_status_by_class(tmp):
    for cls, code in (("archive", 1), ("usage", 2), ("io", 3), ("policy", 4)):
        d = tmp / cls
        d.mkdir()
        p, parent = run_policy(d, "return {entry = function(ctx, entry)\n"
                               "\tctx:fail(%r, entry.path, 'refused by the site')\nend}\n" % cls)
        line = assert_error(p, code, ["refused by the site"])
        assert os.listdir(parent) == [], line


def test_settings_reach_setup_as_strings(tmp):
    p, _ = run_policy(tmp, "return {\n"
                      "setup = function(ctx, settings) ctx.seen = settings end,\n"
                      "entry = function(ctx, entry) ctx.reader:skip() end,\n"
                      "finish = function(ctx)\n"
                      "\tlocal keys = {}\n"
                      "\tfor k, v in pairs(ctx.seen) do keys[#keys + 1] = k .. '=' .. type(v) .. ':' .. v end\n"
                      "\ttable.sort(keys)\n"
                      "\tctx:fail('policy', 'settings', table.concat(keys, ' '))\nend}\n",
                      "legacy_symlink.tar", "--set", "a.b-c=1", "--set", "x=", "--set", "a.b-c=2")
    line = assert_error(p, 4)
    assert line == "layersplit: settings: a.b-c=string:2 x=string:", line


# ---------------------------------------------------------------- --trace

TRACE = re.compile(r"^trace: (.*) \[(\w+)(?: -> (.*))?, (\d+) bytes\]: (.*)$")


def traced(archive, out, *options):
    p = split(archive, out, "-q", "--trace", *options)
    lines = p.err.splitlines()
    parsed = [TRACE.match(line) for line in lines]
    assert all(parsed), "not a trace line: %r" % [l for l, m in zip(lines, parsed) if not m]
    return [m.groups() for m in parsed]


def test_trace_is_one_line_per_entry_with_type_size_and_decision(tmp):
    archive = fixtures.path("legacy_symlink.tar")
    got = traced(archive, tmp / "out")
    with tarfile.open(archive) as t:
        members = t.getmembers()
    assert len(got) == len(members), "%d trace lines for %d entries" % (len(got), len(members))
    for (path, typ, target, size, action), m in zip(got, members):
        assert path == m.name and typ == entry_type(m), (path, typ, m.name)
        assert int(size) == (m.size if m.isreg() else 0), (path, size)
        assert target == (m.linkname if m.issym() else None), (path, target)
        if m.name.endswith("/layer.tar"):
            want = "layer tar, compressed" if m.isreg() else "link"
        elif m.name in ("manifest.json", "repositories") or re.fullmatch(r"[0-9a-f]{64}\.json", m.name):
            want = "document"
        else:
            want = "skip"
        assert action == want, "%s: %r, want %r" % (path, action, want)


def test_trace_shows_kept_and_recompressed_blobs(tmp):
    archive = fixtures.path("docker25_containerd.tar")
    actions = {path: action for path, _, _, _, action in traced(archive, tmp / "out")}
    model = expect.Archive(archive)
    blobs = model.images[0].refs
    assert [actions[b] for b in blobs] == ["layer gzip, kept", "layer zstd, compressed",
                                           "layer gzip, kept"], [actions[b] for b in blobs]
    json_blobs = [p for p in actions if p.startswith("blobs/sha256/") and p not in blobs]
    assert len(json_blobs) == 2 and all(actions[p] == "document" for p in json_blobs), actions


def test_trace_keeps_odd_names_on_one_line(tmp):
    """A name with a newline and a backslash is escaped as \\ddd; a hook's
    own action string is shown as it returned it, nil as skip."""
    archive = tmp / "odd.tar"
    with tarfile.open(fixtures.path("legacy_symlink.tar")) as t, \
            tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as o:
        for m in t:
            o.addfile(m, t.extractfile(m) if m.isfile() else None)
        odd = tarfile.TarInfo("notes\nmore\\x.txt")
        odd.size = 3
        o.addfile(odd, io.BytesIO(b"abc"))
    got = traced(archive, tmp / "out")
    assert got[-1] == ("notes\\010more\\092x.txt", "file", None, "3", "skip"), got[-1]
    p, _ = run_policy(tmp, WRAPPED + "function policy.entry(ctx, entry)\n"
                      "\tlocal action = launchpad.entry(ctx, entry)\n"
                      "\tif action == 'skip' then return nil end\n"
                      "\treturn 'site: ' .. action\nend\nreturn policy\n",
                      "legacy_symlink.tar", "-q", "--trace")
    assert p.returncode == 0, p.err
    actions = [TRACE.match(l).group(5) for l in p.err.splitlines()]
    assert "site: layer tar, compressed" in actions and "skip" in actions, actions
    assert all(a == "skip" or a.startswith("site: ") for a in actions), actions
