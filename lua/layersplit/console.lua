-- layersplit.console: `layersplit repl [ARCHIVE]`, a Lua prompt with the
-- modules as globals, and the helpers it gives: entries(), run_policy(),
-- push().  The read-eval-print loop itself is the C module layersplit.repl.
local cli = require "layersplit.cli"
local errors = require "layersplit.errors"
local host = require "layersplit.host"

local raise, usage_error = errors.raise, cli.usage_error

local console = {}

-- Lists the entries left in a reader (by default the global `reader`),
-- consuming it: type, size, path and link target, one line each.
local function list_entries(reader)
	reader = reader or _G.reader
	if reader == nil then
		raise("usage", "entries()", "no archive: start the REPL as `layersplit repl ARCHIVE`, "
			.. "or set reader = archive.open(PATH), or pass a reader")
	end
	local count = 0
	while true do
		local entry = errors.check(reader:next())
		if entry == nil then
			return count
		end
		count = count + 1
		print(string.format("%-8s %12d  %s%s", entry.type, entry.size or 0,
			errors.printable(entry.path),
			entry.target and " -> " .. errors.printable(entry.target) or ""))
	end
end

-- run_policy(POLICY, ARCHIVE [, opts]): a whole run in the REPL; returns the
-- context, which is also the global `ctx`, kept when the run fails.
-- opts: outdir (default: a new temporary name, see ctx.outdir), settings
-- ({KEY = "VALUE" or {"A", "B"}}), trace, verbose, level, engine, jobs,
-- v2metadata.
local function run_policy(policy, input, opts)
	if type(policy) ~= "string" or type(input) ~= "string"
		or (opts ~= nil and type(opts) ~= "table") then
		raise("usage", "run_policy", "expected run_policy(POLICY, ARCHIVE [, {outdir =, settings =, ...}])")
	end
	opts = opts or {}
	local outdir = opts.outdir
	if outdir == nil then
		outdir = os.tmpname() -- made by mkstemp: a fresh name, made empty for the run
		os.remove(outdir)
	end
	local run = {
		input = input, outdir = outdir, policy = policy, settings = opts.settings or {},
		level = opts.level, engine = opts.engine, jobs = opts.jobs,
		trace = opts.trace, verbose = opts.verbose, v2metadata = opts.v2metadata,
		progress = "never", quiet = true,
	}
	cli.validate_run(run)
	require("layersplit.driver").run(run, function(ctx)
		_G.ctx = ctx
	end)
	return _G.ctx
end

-- push(ARCHIVE, DEST [, opts]) in the REPL: `layersplit push` with the
-- options by name (tls_verify = false, creds = "USER:PASSWORD", format =
-- "oci", out = DIR, policy = FILE, ...); returns what was pushed, and the
-- context becomes the global `ctx` (kept when the push fails).
local function repl_push(input, dest, opts)
	if type(input) ~= "string" or type(dest) ~= "string" or (opts ~= nil and type(opts) ~= "table") then
		raise("usage", "push", "expected push(ARCHIVE, DEST [, {tls_verify =, creds =, ...}])")
	end
	local run = {positional = {input, dest}, settings = {}, progress = "never", quiet = true}
	for k, v in pairs(opts or {}) do
		run[k] = type(v) == "number" and tostring(v) or v
	end
	cli.validate_push(run)
	require("layersplit.driver").run(run, function(ctx)
		_G.ctx = ctx
	end)
	return _G.ctx.summary.pushed
end

-- layersplit repl [ARCHIVE]: a Lua prompt with the modules as globals.
function console.repl(args)
	local path = args[2]
	if #args > 2 then
		usage_error("repl", "expected at most one ARCHIVE")
	elseif path == "-" or (path and path:sub(1, 1) == "-") then
		usage_error("repl " .. path, "expected an archive file (statements come from standard input)")
	end
	local layersplit = require "layersplit"
	_G.layersplit = layersplit
	for _, name in ipairs(console.globals) do
		_G[name] = layersplit[name]
	end
	_G.entries = list_entries
	_G.run_policy = run_policy
	_G.push = repl_push
	local banner = string.format("layersplit %s REPL (%s): %s;\nrun_policy(POLICY, ARCHIVE) runs one, "
		.. "push(ARCHIVE, DEST) pushes", host.version, _VERSION,
		"layersplit, " .. table.concat(console.globals, ", "))
	if path then
		_G.ARCHIVE = path
		_G.reader = errors.check(layersplit.archive.open(path))
		banner = banner .. ", reader = archive.open(ARCHIVE), entries() lists it"
	end
	local home = os.getenv("HOME")
	local failed, interactive = require("layersplit.repl").run {
		history = home and home ~= "" and home .. "/.layersplit_history" or nil,
		banner = banner .. ".  Ctrl-D ends.\n",
	}
	-- Statements from a pipe are a script: its failure shows in the status.
	return failed > 0 and not interactive and 4 or 0
end

-- The modules the REPL has as globals, besides `layersplit` itself.
console.globals = {"archive", "gzip", "digest", "fs", "json", "image", "errors", "settings",
	"registry", "client"}

return console
