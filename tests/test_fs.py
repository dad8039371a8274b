"""layersplit.fs as a policy sees it (SCRIPTING.md): the path rules, the
staging directory and fs.writer, driven through `layersplit run`."""
import os

from harness import layersplit, staging_dirs

# show(...) prints its values joined by "|", so nil, message, class is one line.
PRELUDE = """local fs = require "layersplit".fs
local function show(...)
	local t = table.pack(...)
	for i = 1, t.n do t[i] = tostring(t[i]) end
	print(table.concat(t, "|", 1, t.n))
end
"""


def run_lua(tmp, body, *args):
    script = tmp / "script.lua"
    script.write_text(PRELUDE + body)
    p = layersplit("run", script, *args)
    assert p.returncode == 0, "exit %d: %s" % (p.returncode, p.err.strip())
    return p.stdout.decode().splitlines()


def test_normalize_drops_dot_and_empty_components_and_resolves_dotdot(tmp):
    out = run_lua(tmp, """
for _, p in ipairs{"a", "./a", "a//b/./c/", "a/b/../c", "x/../y/../z"} do
	show(fs.normalize(p))
end""")
    assert out == ["a", "a", "a/b/c", "a/c", "z"], out


def test_normalize_refuses_absolute_climbing_and_empty_paths(tmp):
    out = run_lua(tmp, """
for _, p in ipairs{"/etc/passwd", "..", "a/../..", "./a/..", "", "a\\0b"} do
	show(fs.normalize(p))
end""")
    assert out == [
        "nil|/etc/passwd: absolute path|archive",
        "nil|..: path climbs out of the archive|archive",
        "nil|a/../..: path climbs out of the archive|archive",
        "nil|./a/..: empty path|archive",
        "nil|empty path|archive",
        "nil|a: NUL byte in path|archive",
    ], out


def test_resolve_link_is_relative_to_the_links_directory(tmp):
    out = run_lua(tmp, """
show(fs.resolve_link("a", "b"))
show(fs.resolve_link("d/a", "../x"))
show(fs.resolve_link("d/e/a", "../../x/./y"))
show(fs.resolve_link("d/a", "x//y/"))""")
    assert out == ["b", "x", "x/y", "d/x/y"], out


def test_resolve_link_refuses_targets_outside_the_archive(tmp):
    out = run_lua(tmp, """
show(fs.resolve_link("a", "/etc/passwd"))
show(fs.resolve_link("d/a", "../.."))
show(fs.resolve_link("d/a", ".."))
show(fs.resolve_link("a", ""))
show(fs.resolve_link("../a", "b"))""")
    assert out == [
        "nil|a -> /etc/passwd: link target is absolute|archive",
        "nil|d/a -> ../..: link target climbs out of the archive|archive",
        "nil|d/a -> ..: link target is the archive root|archive",
        "nil|a: empty link target|archive",
        "nil|../a: path climbs out of the archive|archive",
    ], out


def test_join_adds_one_slash_and_raises_on_unsafe_names(tmp):
    out = run_lua(tmp, """
show(fs.join("d", "a/b"), fs.join("d/", "a"))
for _, name in ipairs{"", "/a", "a//b", "a/./b", "a/../b", "a/"} do
	local ok, err = pcall(fs.join, "d", name)
	show(ok, (err:match("%((.*)%)")))
end""")
    assert out == [
        "d/a/b|d/a",
        "false|unsafe name '': empty name",
        "false|unsafe name '/a': absolute name",
        "false|unsafe name 'a//b': empty component",
        "false|unsafe name 'a/./b': '.' component",
        "false|unsafe name 'a/../b': '..' component",
        "false|unsafe name 'a/': empty component",
    ], out


def test_commit_renames_the_stage_into_place_once(tmp):
    out = run_lua(tmp, """
local outdir = arg[1]
local stage = assert(fs.stage(outdir .. "/"))
assert(fs.write_file(fs.join(stage, "f"), "data"))
show(fs.commit(stage, outdir))
show(pcall(fs.commit, stage, outdir))""", tmp / "out")
    assert out[0] == "true", out
    assert out[1].startswith("false|") and "is not an uncommitted stage" in out[1], out
    assert (tmp / "out" / "f").read_bytes() == b"data"
    assert staging_dirs(tmp) == [], staging_dirs(tmp)


def test_discard_removes_the_stage_without_following_symlinks(tmp):
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    out = run_lua(tmp, """
local stage = assert(fs.stage(arg[1]))
assert(fs.mkdir(stage .. "/d"))
assert(fs.mkdir(stage .. "/d/e"))
assert(fs.write_file(stage .. "/d/e/f", "x"))
assert(os.execute(("ln -s '%s' '%s/d/link' && ln -s '%s/keep' '%s/top'"):format(
	arg[2], stage, arg[2], stage)))
show(fs.discard(stage))
show(fs.kind(stage))
show(pcall(fs.discard, stage))""", tmp / "out", outside)
    assert out[:2] == ["true", "nil"], out
    assert out[2].startswith("false|") and "is not an uncommitted stage" in out[2], out
    assert staging_dirs(tmp) == [], staging_dirs(tmp)
    assert (outside / "keep").read_text() == "keep"


def test_uncommitted_stage_is_removed_when_the_script_ends(tmp):
    (tmp / "outside").mkdir()
    (tmp / "outside" / "keep").write_text("keep")
    out = run_lua(tmp, """
local stage = assert(fs.stage(arg[1]))
assert(fs.mkdir(stage .. "/d"))
assert(fs.write_file(stage .. "/d/f", "x"))
assert(os.execute(("ln -s '%s' '%s/d/link'"):format(arg[2], stage)))
print(stage)""", tmp / "out", tmp / "outside")
    assert out and ".out.layersplit-" in out[0], out
    assert staging_dirs(tmp) == [], staging_dirs(tmp)
    assert not (tmp / "out").exists(), "outdir made without a commit"
    assert (tmp / "outside" / "keep").read_text() == "keep"


def test_stage_refuses_outdirs_that_are_not_empty_directories(tmp):
    (tmp / "full").mkdir()
    (tmp / "full" / "x").write_text("x")
    (tmp / "file").write_text("x")
    os.symlink(tmp / "full", tmp / "link")
    out = run_lua(tmp, """
for _, name in ipairs{"full", "file", "link", "."} do
	show(fs.stage(arg[1] .. "/" .. name))
end""", tmp)
    assert out == [
        "nil|%s/full: output directory is not empty|usage" % tmp,
        "nil|%s/file: not a directory|usage" % tmp,
        "nil|%s/link: not a directory (a symbolic link)|usage" % tmp,
        "nil|%s/.: not usable as an output directory|usage" % tmp,
    ], out
    assert staging_dirs(tmp) == [], staging_dirs(tmp)


def test_writer_counts_bytes_and_never_overwrites(tmp):
    out = run_lua(tmp, """
local w = assert(fs.writer(arg[1]))
assert(w:write("abc"))
assert(w:write("defg"))
show(w:close())
show(w:close())
show(pcall(w.write, w, "x"))
show(fs.writer(arg[1]))""", tmp / "f")
    assert out == [
        "7",
        "7",
        "false|attempt to use a closed writer",
        "nil|%s/f: File exists|io" % tmp,
    ], out
    assert (tmp / "f").read_bytes() == b"abcdefg"


def test_rename_moves_a_file_and_never_overwrites(tmp):
    (tmp / "a").write_bytes(b"layer")
    (tmp / "b").write_bytes(b"other")
    out = run_lua(tmp, """
show(fs.rename(arg[1] .. "/a", arg[1] .. "/c"))
show(fs.rename(arg[1] .. "/c", arg[1] .. "/b"))
show(fs.rename(arg[1] .. "/missing", arg[1] .. "/d"))""", tmp)
    assert out == [
        "true",
        "nil|%s/b: File exists|io" % tmp,
        "nil|%s/missing: No such file or directory|io" % tmp,
    ], out
    assert not (tmp / "a").exists()
    assert (tmp / "c").read_bytes() == b"layer" and (tmp / "b").read_bytes() == b"other"
