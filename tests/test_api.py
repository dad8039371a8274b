"""The scripting API's edges a new site meets (SCRIPTING.md): ctx.summary in
--json, fs.rename of directories, fs.list, fs.tree and fs.remove_tree kept
inside the staging directory, reader:next()'s two failure classes, the
store's repeatable calls and fields, useful messages for odd errors and
actions, and the REPL (errors global, line numbers, entries() without an
archive, run_policy)."""
import gzip
import io
import json
import os
import subprocess
import tarfile

import expect
import fixtures
import tarkit
from harness import assert_error, binary, layersplit, split, staging_dirs
from tarkit import Entry

EXAMPLES = fixtures.REPO / "examples"


def policy_file(tmp, source, name="site.lua"):
    (tmp / name).write_text(source)
    return tmp / name


def run_site(tmp, source, *options, archive="legacy_symlink.tar"):
    """layersplit --policy site.lua (from tmp, so messages say site.lua)."""
    policy_file(tmp, source)
    parent = tmp / "p"
    parent.mkdir(exist_ok=True)
    p = subprocess.run([binary(), "--policy", "site.lua"] + list(options)
                       + [str(fixtures.path(archive)), str(parent / "out")], cwd=tmp,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120)
    p.err = p.stderr.decode(errors="replace")
    return p, parent


# ---------------------------------------------------------------- ctx.summary

def test_json_images_is_the_list_the_policy_reports_and_extra_fields_pass_through(tmp):
    archive = fixtures.path("legacy_two_images.tar")
    p = split(archive, tmp / "out", "--json", "--policy", EXAMPLES / "configs-only.lua")
    report = json.loads(p.stdout)
    model = expect.Archive(archive)
    assert len(report["images"]) == len(model.images) == 2, report
    assert report["images"] == json.loads((tmp / "out" / "images.json").read_bytes())
    assert report["configs_written"] == len({img.config for img in model.images}), report
    p = split(archive, tmp / "out2", "--policy", EXAMPLES / "configs-only.lua")
    assert ": 2 images, " in p.err, p.err


def test_summary_images_that_is_not_a_list_is_a_policy_error(tmp):
    p, parent = run_site(tmp, "return {entry = function(ctx) ctx.reader:skip() end,\n"
                         "finish = function(ctx) ctx.summary.images = 1 end}\n")
    line = assert_error(p, 4, ["ctx.summary.images"])
    assert "expected a list" in line and "got number 1" in line, line
    assert os.listdir(parent) == []
    p, parent = run_site(tmp, "return {entry = function(ctx) ctx.reader:skip() end,\n"
                         "finish = function(ctx) ctx.summary.f = print end}\n")
    assert_error(p, 4, ["ctx.summary", "JSON"])
    assert os.listdir(parent) == []


# ---------------------------------------------------------------- fs

FS = """local fs = require "layersplit.fs"
local function show(...)
	local t = table.pack(...)
	for i = 1, t.n do t[i] = tostring(t[i]) end
	print(table.concat(t, "|", 1, t.n))
end
"""


def run_lua(tmp, body, *args, code=0):
    script = tmp / "script.lua"
    script.write_text(FS + body)
    p = layersplit("run", script, *args)
    assert p.returncode == code, "exit %d: %s" % (p.returncode, p.err.strip())
    return p.stdout.decode().splitlines()


def test_rename_moves_a_directory_and_list_names_its_entries_sorted(tmp):
    d = tmp / "d"
    (d / "sub").mkdir(parents=True)
    for name in ("b", "a", "C", "sub/x"):
        (d / name).write_text(name)
    out = run_lua(tmp, """
show(fs.rename(arg[1] .. "/d", arg[1] .. "/e"))
show(table.concat(fs.list(arg[1] .. "/e"), ","))
show(#fs.list(arg[1] .. "/e/sub"))
show(fs.list(arg[1] .. "/missing"))
show(fs.list(arg[1] .. "/e/a"))""", tmp)
    assert out == ["true", "C,a,b,sub", "1",
                   "nil|%s/missing: No such file or directory|io" % tmp,
                   "nil|%s/e/a: Not a directory|io" % tmp], out
    assert (tmp / "e" / "sub" / "x").read_text() == "sub/x"


def test_tree_and_remove_tree_stay_inside_the_stage(tmp):
    """Names that climb, absolute names, symlinks planted in the stage: each
    is refused for that name only (class "entry"); nothing outside changes."""
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    out = run_lua(tmp, """
local stage = assert(fs.stage(arg[1] .. "/out"))
local t = assert(fs.tree(stage, "x"))
local w = assert(t:file("a/b/c", 4))
show(w:write("1234") ~= nil, w:write("5"))
w:close()
show(t:file("a/b/c"))
show(t:file("../escape"))
show(t:file("/abs"))
show(t:file("a//b"))
show(t:file(string.rep("n", 300)))
os.execute(string.format("ln -s %q %q", arg[2], stage .. "/x/link"))
show(t:file("link/planted"))
show(t:kind("link"), (t:copy("link", "copy")), t:rename("link", "a/moved"))
show(t:copy("a/moved", "copy"))
show(t:copy("a/b/c", "d/e"), t:rename("d", "f"), t:kind("f/e"))
show(t:remove("a"), t:kind("a"), t:remove("never-there"))
show(fs.remove_tree(stage, "x/f"), fs.kind(stage .. "/x/f"))
show(pcall(fs.remove_tree, stage, "../outside"))
show(pcall(fs.tree, arg[2]))
show(pcall(fs.remove_tree, arg[2], "keep"))
show(fs.remove_tree(stage, "x"), fs.kind(stage .. "/x"))
fs.discard(stage)""", tmp, outside)
    assert out[0] == "true|nil|a/b/c: more than 4 bytes|archive", out
    assert out[1] == "nil|a/b/c: File exists|entry", out
    assert out[2] == "nil|../escape: '..' component|entry", out
    assert out[3] == "nil|/abs: absolute name|entry", out
    assert out[4] == "nil|a//b: empty component|entry", out
    assert out[5].endswith(": File name too long|entry"), out
    assert out[6] == "nil|link/planted: Not a directory|entry", out
    assert out[7] == "link|nil|true", out   # copy refuses the link; rename moves the link itself
    assert out[8] == "nil|a/moved: Too many levels of symbolic links|entry", out
    assert out[9] == "4|true|file", out
    assert out[10] == "true|nil|true", out
    assert out[11] == "true|nil", out
    assert out[12].startswith("false|") and "unsafe name" in out[12], out
    assert out[13].startswith("false|") and "not an uncommitted stage" in out[13], out
    assert out[14].startswith("false|") and "not an uncommitted stage" in out[14], out
    assert out[15] == "true|nil", out
    assert sorted(os.listdir(outside)) == ["keep"] and (outside / "keep").read_text() == "keep"
    assert not staging_dirs(tmp)


# ---------------------------------------------------------------- reader:next()

def unsafe_then_fine():
    return tarkit.tar_bytes([Entry("ok-before", "file", b"1"), Entry("../climbs", "file", b"2"),
                             Entry("/etc/abs", "file", b"3"),
                             Entry("hl", "hardlink", target="../../etc/passwd"),
                             Entry("ok-after", "file", b"4")])


def test_next_refuses_an_unsafe_entry_as_entry_and_goes_on(tmp):
    (tmp / "a.tar").write_bytes(unsafe_then_fine())
    out = run_lua(tmp, """
local archive = require "layersplit.archive"
local r = assert(archive.open(arg[1]))
while true do
	local e, err, class = r:next()
	if e == nil and err == nil then break end
	show(e and e.path, err, class)
end""", tmp / "a.tar")
    assert out == ["ok-before|nil|nil",
                   "nil|../climbs: path climbs out of the archive with ..|entry",
                   "nil|/etc/abs: absolute path in archive|entry",
                   "nil|hl: hard link to ../../etc/passwd: path climbs out of the archive with ..|entry",
                   "ok-after|nil|nil"], out


def test_next_on_a_damaged_stream_fails_as_archive_every_time(tmp):
    data = fixtures.path("legacy_symlink.tar").read_bytes()
    (tmp / "cut.tar").write_bytes(data[:len(data) // 2 + 100])
    out = run_lua(tmp, """
local archive = require "layersplit.archive"
local r = assert(archive.open(arg[1]))
local n = 0
while true do
	local e, err, class = r:next()
	if e == nil then
		show(class)
		show(select(3, r:next()))
		break
	end
	r:skip()
	n = n + 1
end""", tmp / "cut.tar")
    assert out == ["archive", "archive"], out


def test_entries_example_lists_past_refused_entries_and_fails_on_damage(tmp):
    (tmp / "a.tar").write_bytes(unsafe_then_fine())
    p = layersplit("run", EXAMPLES / "entries.lua", tmp / "a.tar")
    assert p.returncode == 0, p.err
    assert [l.split()[-1] for l in p.stdout.decode().splitlines()] == ["ok-before", "ok-after"]
    refused = [l for l in p.err.splitlines() if l.startswith("refused: ")]
    assert len(refused) == 3 and "../climbs" in refused[0], p.err
    data = fixtures.path("legacy_symlink.tar").read_bytes()
    (tmp / "cut.tar").write_bytes(data[:len(data) // 2 + 100])
    p = layersplit("run", EXAMPLES / "entries.lua", tmp / "cut.tar")
    assert p.returncode == 1, (p.returncode, p.err)
    assert p.err.splitlines()[-1].startswith("layersplit: "), p.err


# ---------------------------------------------------------------- the store

def test_store_images_and_check_diff_ids_repeat_and_files_are_the_output_names(tmp):
    p, parent = run_site(tmp, """local launchpad = require "layersplit.policies.launchpad"
local json = require "layersplit.json"
local policy = setmetatable({}, {__index = launchpad})
function policy.finish(ctx)
	local store = ctx.store
	local first = json.encode(store:images())
	launchpad.finish(ctx)
	assert(json.encode(store:images()) == first, "images() changed")
	for _, img in ipairs(store:images()) do
		local a = json.encode({store:check_diff_ids(img)})
		assert(json.encode({store:check_diff_ids(img)}) == a)
	end
	local names = {}
	for name, record in pairs(store.files) do
		assert(record.file == name or store.files[record.file] == record)
		names[#names + 1] = name
	end
	table.sort(names)
	ctx.summary.staged = names
end
return policy
""", "--json", archive="legacy_two_images.tar")
    assert p.returncode == 0, p.err
    staged = json.loads(p.stdout)["staged"]
    out = parent / "out"
    assert staged == sorted(n.name for n in out.glob("*.tar.gz")), staged


# ---------------------------------------------------------------- odd errors and actions

def test_a_table_raised_in_a_hook_names_file_line_and_fields(tmp):
    p, parent = run_site(tmp, "return {entry = function(ctx, entry)\n"
                         "\tctx.reader:skip()\n"
                         "\tif entry.path == 'repositories' then error({code = 1, why = 'x'}) end\nend}\n")
    line = assert_error(p, 4)
    assert line == 'layersplit: policy site.lua:3: table value raised as an error: {code = 1, why = "x"}', line
    assert os.listdir(parent) == []
    p, _ = run_site(tmp, "return {entry = function(ctx, entry) error() end}\n")
    line = assert_error(p, 4)
    assert line == "layersplit: policy site.lua:1: nil value raised as an error: nil", line


def test_ctx_fail_without_what_names_the_entry_or_the_archive(tmp):
    p, _ = run_site(tmp, "return {entry = function(ctx, entry)\n"
                    "\tif entry.path == 'repositories' then ctx:fail('archive', nil, 'refused') end\n"
                    "\tctx.reader:skip()\nend}\n")
    assert assert_error(p, 1) == "layersplit: repositories: refused"
    p, _ = run_site(tmp, "return {entry = function(ctx) ctx.reader:skip() end,\n"
                    "finish = function(ctx) ctx:fail('policy', nil, 'no images wanted') end}\n")
    line = assert_error(p, 4)
    assert line == "layersplit: %s: no images wanted" % fixtures.path("legacy_symlink.tar"), line


def test_trace_shows_a_table_action_by_its_fields(tmp):
    p, _ = run_site(tmp, "return {entry = function(ctx, entry)\n"
                    "\tctx.reader:skip()\n\treturn {kept = false, why = 'site rule'}\nend}\n",
                    "--trace", "-q")
    assert p.returncode == 0, p.err
    lines = p.err.splitlines()
    assert lines and all(l.endswith(': {kept = false, why = "site rule"}') for l in lines), lines[:3]


# ---------------------------------------------------------------- the REPL

def repl(statements, *args):
    return layersplit("repl", *args, input=statements.encode())


def test_repl_has_errors_and_settings_as_globals(tmp):
    p = repl("errors.check(nil, 'x.tar: bad', 'archive')\nprint(settings.size('2K'))\n")
    assert p.returncode == 4
    assert p.err.splitlines()[0] == "x.tar: bad [archive]", p.err
    assert p.stdout.decode() == "2048\n"


def test_repl_errors_name_the_line_of_the_input(tmp):
    p = repl("x = 1\n\nlocal y = 2\nfor i = 1, 2 do\n  local z = nil + i\nend\nerror('boom')\nreturn +\n")
    lines = [l for l in p.err.splitlines() if l.startswith("stdin:")]
    assert lines[0] == "stdin:5: attempt to perform arithmetic on a nil value", p.err
    assert lines[1] == "stdin:7: boom", p.err
    assert lines[2].startswith("stdin:8: "), p.err


def test_repl_entries_without_an_archive_says_what_to_do(tmp):
    p = repl("entries()\n")
    assert p.returncode == 4
    first = p.err.splitlines()[0]
    assert first.startswith("entries(): no archive: ") and "layersplit repl ARCHIVE" in first, first
    assert "[usage]" in first, first


def test_repl_run_policy_returns_ctx_and_keeps_it_after_a_failure(tmp):
    archive = fixtures.path("legacy_two_images.tar")
    out = tmp / "out"
    p = repl("c = run_policy('launchpad', ARCHIVE, {outdir = %r})\n"
             "print(c == ctx, #ctx.summary.images, ctx.summary.layers, ctx.outdir)\n"
             "for path, r in pairs(ctx.store.blobs) do n = (n or 0) + 1 end\n"
             "print(n)\n"
             "run_policy('oci-layout', ARCHIVE, {settings = {ref_name = 'nope'}})\n"
             "ok, e = pcall(run_policy, %r, ARCHIVE, {outdir = %r, settings = {max_layer_size = '1K'}})\n"
             "print(ok, e.class, ctx.store ~= nil, next(ctx.store.blobs) ~= nil)\n"
             % (str(out), str(EXAMPLES / "max-layer-size.lua"), str(tmp / "out2")), archive)
    lines = p.stdout.decode().splitlines()
    model = expect.Archive(archive)
    assert lines[0] == "true\t2\t%d\t%s" % (len({l for i in model.images for l in i.layer_ids}), out), lines
    expect.check_output(archive, out)
    assert p.err.splitlines()[0] == "--set ref_name=nope: expected tag or reference [usage]", p.err
    # the run refused: its error, and ctx as it was when it stopped
    assert lines[2] == "false\tarchive\ttrue\ttrue", lines
    assert not (tmp / "out2").exists() and not staging_dirs(tmp)
    assert p.returncode == 4   # the refused setting


def test_repl_run_policy_without_outdir_uses_a_fresh_directory(tmp):
    p = repl("c = run_policy('launchpad', ARCHIVE)\nprint(c.outdir)\n",
             fixtures.path("legacy_symlink.tar"))
    assert p.returncode == 0, p.err
    outdir = p.stdout.decode().strip()
    try:
        expect.check_output(fixtures.path("legacy_symlink.tar"), outdir)
    finally:
        subprocess.run(["rm", "-rf", outdir])


def transcript(heading):
    """The statements and the output lines of the first ``` block after
    heading in SCRIPTING.md (a REPL session)."""
    text = (fixtures.REPO / "SCRIPTING.md").read_text()
    block = text.split(heading, 1)[1].split("\n```\n", 1)[1].split("\n```\n", 1)[0]
    lines = block.splitlines()
    assert lines[0].startswith("$ layersplit repl "), lines[0]
    statements = [l[2:] for l in lines[1:] if l.startswith("> ")]
    output = [l for l in lines[1:] if not l.startswith("> ")]
    return lines[0].split()[-1], statements, output


def test_scripting_md_policy_debugging_session_is_what_the_repl_does(tmp):
    """The walkthrough in SCRIPTING.md, run: every output line it shows (the
    pairs() loop in any order), the error with its class, the traceback
    through the policy's line, and OUT written by the second run."""
    archive, statements, output = transcript("### Debugging a policy")
    os.symlink(fixtures.REPO / "examples", tmp / "examples")
    archive = fixtures.path(os.path.basename(archive))
    p = subprocess.run([binary(), "repl", str(archive)], cwd=tmp,
                       input="\n".join(statements).encode() + b"\n",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    err = p.stderr.decode()
    error_lines = [l for l in output if l.endswith("[archive]")]
    assert len(error_lines) == 1 and err.splitlines()[0] == error_lines[0], err
    assert "\texamples/max-layer-size.lua:28: in function" in err, err
    shown = [l for l in output if l not in error_lines and l != "stack traceback:"
             and not l.startswith("\t")]
    assert sorted(p.stdout.decode().splitlines()) == sorted(shown), (p.stdout.decode(), shown)
    assert p.returncode == 4   # one statement failed
    expect.check_output(archive, tmp / "OUT")


def test_tree_file_max_zero_takes_nothing_and_no_max_takes_anything(tmp):
    out = run_lua(tmp, """
local stage = assert(fs.stage(arg[1] .. "/out"))
local t = assert(fs.tree(stage))
local w = assert(t:file("empty", 0))
show(w:write(""), (w:write("x")))
local u = assert(t:file("free"))
show(u:write(string.rep("y", 100000)) ~= nil, u:close())
fs.discard(stage)""", tmp)
    assert out[0].startswith("fs.writer (empty)|nil"), out
    assert out[1] == "true|100000", out


def test_inflater_max_size_fails_the_write_that_passes_it(tmp):
    """gzip.inflater's opts.max_size: exactly max_size inflated bytes pass,
    one more fails that write as "archive" before it reaches the sinks;
    0 is no limit; a bad value raises."""
    (tmp / "thousand.gz").write_bytes(gzip.compress(bytes(1000)))
    out = run_lua(tmp, """
local gzip = require "layersplit.gzip"
local digest = require "layersplit.digest"
local data = assert(io.open(arg[1], "rb")):read("a")
for _, max in ipairs({1000, 999, 0}) do
	local h = digest.sha256()
	local i = gzip.inflater(h, {max_size = max})
	local ok, msg, class = i:write(data)
	if ok then
		local r = assert(i:close())
		show(max, "ok", r.out_size)
	else
		show(max, msg, class, h:size())
	end
end
show(pcall(gzip.inflater, digest.sha256(), {max_size = -1}))
show(pcall(gzip.inflater, digest.sha256(), {max_size = 1.5}))
show(pcall(gzip.inflater, digest.sha256(), {max_size = "1000"}))""", tmp / "thousand.gz")
    assert out[0] == "1000|ok|1000", out
    assert out[1] == "999|more than 999 bytes of data, the --max-layer-size limit|archive|0", out
    assert out[2] == "0|ok|1000", out
    for bad in out[3:6]:   # -1, 1.5, "1000"
        assert bad.startswith("false|") and "max_size must be an integer >= 0" in bad, out
    assert len(out) == 6, out


def test_a_script_raising_a_value_that_is_not_a_string_names_where(tmp):
    for body, want in (
            ("local x = 1\nerror({code = 1})\n", "s.lua:2: table value raised as an error (a table without a message)"),
            ("error(nil)\n", "s.lua:1: nil value raised as an error"),
            ("error(setmetatable({}, {__tostring = function() return 'custom' end}))\n", "s.lua:1: custom")):
        (tmp / "s.lua").write_text(body)
        p = subprocess.run([binary(), "run", "s.lua"], cwd=tmp, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        p.err = p.stderr.decode()
        assert assert_error(p, 4) == "layersplit: " + want, p.err
