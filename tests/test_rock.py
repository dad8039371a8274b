"""rocks/layersplit-scm-1.rockspec: the C core and the Lua runtime built by
luarocks as modules for a plain lua5.4, used the way a policy uses them."""
import hashlib
import os
import shutil
import subprocess

import expect
import fixtures
from harness import REPO

ARCHIVE = "podman_dup.tar"   # layers at the root as <diff_id hex>.tar, one used twice

CHECK = r"""
local archive_path, outdir, driver_out, truncated, failed_out = ...
local ls = require "layersplit"
for _, name in ipairs {"archive", "digest", "fs", "gzip", "json", "errors", "image"} do
  assert(type(ls[name]) == "table", "layersplit." .. name .. " missing")
end
print("archive.so", package.searchpath("layersplit.archive", package.cpath))
print("engines", table.concat(ls.gzip.engines(), ","))

-- One pass: every root <hex>.tar layer into a gzip writer and a digest.
local reader <close> = assert(ls.archive.open(archive_path))
while true do
  local entry, err = reader:next()
  assert(entry or not err, err)
  if not entry then break end
  local hex = entry.type == "file" and entry.path:match("^(%x+)%.tar$")
  if hex then
    local sha = ls.digest.sha256()
    local writer = assert(ls.gzip.writer(ls.fs.join(outdir, hex .. ".tar.gz"), {level = 6}))
    assert(reader:pipe(sha, writer))
    local result = assert(writer:close())
    assert(result.in_sha256 == sha:hex(), "writer and digest disagree")
    print("layer", hex, sha:hex(), result.out_sha256, result.in_size)
  elseif entry.path:match("^%x+%.json$") then
    local config = assert(ls.json.decode(reader:read(1 << 20)))
    print("config", table.concat(config.rootfs.diff_ids, ","))
  end
end

-- The whole job, as the binary runs it, through the driver and a bundled policy.
local ctx = require("layersplit.driver").run {
  input = archive_path, outdir = driver_out, policy = "launchpad",
  level = 6, engine = "zlib", progress = "never", settings = {},
}
print("driver", ctx.summary.layers)

-- A run that fails leaves nothing behind, here too.
local ok, err = pcall(require("layersplit.driver").run, {
  input = truncated, outdir = failed_out, policy = "launchpad",
  level = 6, engine = "zlib", progress = "never", settings = {},
})
assert(not ok, "a truncated archive was accepted")
print("failed", err.class)
"""


def tree_files(d):
    return sorted(str(p.relative_to(d)) for p in d.rglob("*")
                  if ".git" not in p.relative_to(d).parts)


def build_rock(tmp, isal=False):
    """The conventional command, from the top of a copy of the repository's
    files (a git repository of its own): `luarocks --lua-version 5.4 make
    --tree TREE rocks/layersplit-scm-1.rockspec`.  Checks that it leaves
    `git status` clean and writes nothing but build/.  Returns (tree,
    (LUA_PATH, LUA_CPATH))."""
    src = tmp / "src-copy"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, stdout=subprocess.PIPE,
                           check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        if (REPO / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, src / f)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "copy"]):
        subprocess.run(git + cmd, cwd=src, check=True, stdout=subprocess.DEVNULL)
    before = tree_files(src)
    tree = tmp / ("tree-isal" if isal else "tree")
    luarocks = ["luarocks", "--lua-version", "5.4", "--tree", str(tree)]
    env = {k: v for k, v in os.environ.items() if k != "ISAL"}
    if isal:
        env["ISAL"] = "1"
    p = subprocess.run(["luarocks", "--lua-version", "5.4", "make", "--tree", str(tree),
                        "rocks/layersplit-scm-1.rockspec"], cwd=src, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    assert p.returncode == 0, "luarocks make failed:\n" + p.stdout.decode()[-3000:]
    status = subprocess.run(["git", "status", "--porcelain"], cwd=src, stdout=subprocess.PIPE,
                            check=True).stdout.decode()
    assert status == "", "git status after luarocks make:\n" + status
    added = [f for f in tree_files(src) if f not in before and f != "build"
             and not f.startswith("build/")]
    assert added == [], "luarocks make wrote outside build/: %r" % added
    paths = []
    for flag in ("--lr-path", "--lr-cpath"):
        q = subprocess.run(luarocks + ["path", flag], stdout=subprocess.PIPE, check=True)
        paths.append(q.stdout.decode().strip() + ";;")   # ";;": then lua's defaults
    return tree, paths


def test_rock_with_isal_has_the_isal_engine(tmp):
    tree, (lua_path, lua_cpath) = build_rock(tmp, isal=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUA_")}
    env.update(LUA_PATH=lua_path, LUA_CPATH=lua_cpath)
    p = subprocess.run(["lua5.4", "-e", "local gzip = require 'layersplit.gzip'; "
                        "print(table.concat(gzip.engines(), ','), "
                        "package.searchpath('layersplit.gzip', package.cpath))"],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    engines, where = p.stdout.decode().split()
    assert "isal" in engines.split(",") and where.startswith(str(tree)), p.stdout


def test_rock_builds_and_plain_lua_splits_a_real_archive(tmp):
    tree, (lua_path, lua_cpath) = build_rock(tmp)
    installed = sorted(str(p.relative_to(tree)) for p in tree.rglob("*")
                       if p.suffix in (".lua", ".so"))
    for module in ("lib/lua/5.4/layersplit/archive.so", "lib/lua/5.4/layersplit/gzip.so",
                   "share/lua/5.4/layersplit/init.lua",
                   "share/lua/5.4/layersplit/policies/launchpad.lua"):
        assert module in installed, "%s not installed: %s" % (module, installed)
    assert not any(p.startswith("share/lua/5.4/policies") for p in installed), installed

    archive = fixtures.path(ARCHIVE)
    out, driver_out = tmp / "layers", tmp / "driver-out"
    out.mkdir()
    script = tmp / "check.lua"
    script.write_text(CHECK)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUA_")}
    env.update(LUA_PATH=lua_path, LUA_CPATH=lua_cpath)
    truncated = tmp / "half" / "truncated.tar"
    truncated.parent.mkdir()
    data = archive.read_bytes()
    truncated.write_bytes(data[:len(data) // 2])
    p = subprocess.run(["lua5.4", str(script), str(archive), str(out), str(driver_out),
                        str(truncated), str(truncated.parent / "out")],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    assert p.returncode == 0, "lua5.4 failed: %s" % p.stderr.decode()[-2000:]

    report = [line.split("\t") for line in p.stdout.decode().splitlines()]
    fields = {r[0]: r[1:] for r in report}
    assert fields["archive.so"][0].startswith(str(tree)), fields["archive.so"]
    assert {"zlib", "libdeflate"} <= set(fields["engines"][0].split(",")), fields["engines"]

    # The layers: each file is one gzip member of the layer, its digests are right.
    want = expect.Archive(archive)
    diff_ids = {d for img in want.images for d in img.diff_ids}
    written = [r[1:] for r in report if r[0] == "layer"]
    assert {"sha256:" + w[0] for w in written} == diff_ids, (written, diff_ids)
    for hex_, in_sha, out_sha, in_size in written:
        assert in_sha == hex_, "digest of %s.tar is %s" % (hex_, in_sha)
        data = (out / (hex_ + ".tar.gz")).read_bytes()
        assert hashlib.sha256(data).hexdigest() == out_sha, "out_sha256 of %s" % hex_
        layer = expect.gunzip_one_member(data, hex_ + ".tar.gz")
        assert hashlib.sha256(layer).hexdigest() == hex_ and len(layer) == int(in_size), hex_
    config_ids = set(fields["config"][0].split(","))
    assert config_ids == diff_ids, (config_ids, diff_ids)

    # The driver with the launchpad policy wrote what the binary writes.
    expect.check_output(archive, driver_out)
    assert fields["failed"] == ["archive"], fields["failed"]
    assert sorted(os.listdir(truncated.parent)) == ["truncated.tar"], \
        "a failed run left %s" % os.listdir(truncated.parent)
    layer_files = sorted(driver_out.glob("*.tar.gz"))
    assert fields["driver"] == [str(len(layer_files))], (fields["driver"], layer_files)
