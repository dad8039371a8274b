-- layersplit.driver: one pass over the archive.  Each entry goes to the
-- policy's entry hook as it streams past; at the end the policy's finish hook
-- writes the manifests, and the staging directory is renamed into place.
local archive = require "layersplit.archive"
local errors = require "layersplit.errors"
local fs = require "layersplit.fs"
local gzip = require "layersplit.gzip"
local json = require "layersplit.json"
local image = require "layersplit.image"
local progress = require "layersplit.progress"
local settings = require "layersplit.settings"

local check, raise, printable = errors.check, errors.raise, errors.printable

local driver = {}

-- A plain Lua error in a hook as a "policy" error naming the script's file
-- and line; a value raised that is not a string is described, with the
-- place it was raised from.
local function policy_error(e)
	if errors.is_error(e) then
		e.traceback = e.traceback or debug.traceback(nil, 2)
		return e
	end
	local message
	if type(e) == "string" or type(e) == "number" then
		message = "policy " .. tostring(e)
	else
		local where = errors.where(2)
		message = string.format("policy %s%s value raised as an error: %s",
			where and where .. ": " or "", type(e), errors.describe(e))
	end
	return {class = "policy", message = message, traceback = debug.traceback(nil, 2)}
end

-- Runs a policy hook; a plain Lua error in it becomes a "policy" error.
local function call_hook(name, fn, ...)
	local results = table.pack(xpcall(fn, policy_error, ...))
	if not results[1] then
		error(results[2], 0)
	end
	return table.unpack(results, 2, results.n)
end

-- Loads a policy by bundled name or by file name.
function driver.load_policy(name)
	local policy
	if name:find("/", 1, true) or name:match("%.lua$") then
		local chunk, err = loadfile(name)
		if not chunk then
			if fs.kind(name) == nil then
				raise("usage", name, "no such policy file")
			end
			raise("policy", "policy " .. err)
		end
		policy = call_hook("load", chunk)
	else
		local module = "layersplit.policies." .. name
		if package.preload[module] == nil and not package.searchpath(module, package.path) then
			raise("usage", "--policy " .. name, "unknown policy")
		end
		policy = require(module)
	end
	if type(policy) ~= "table" or type(policy.entry) ~= "function" then
		raise("policy", "policy " .. name, "must return a table with an entry function")
	end
	return policy
end

local Context = {}
Context.__index = Context

-- The path of `name` inside the staging directory.
function Context:path(name)
	return fs.join(self.stage, name)
end

-- Whether the run will fsync its output: then the writers start the disk's
-- writeback as a file grows, so the fsync before the commit finds little
-- left (a push without --out writes only its spool, never synced).
local function writeback(ctx)
	return ctx.options.outdir ~= nil and ctx.options.sync ~= false
end

-- A gzip writer for `name` in the staging directory, with the run's options;
-- sinks, if given, also get the gzip bytes.
function Context:gzip_writer(name, sinks)
	return check(gzip.writer(self:path(name), {
		level = self.options.level,
		engine = self.options.engine,
		threads = self.options.jobs,
		sinks = sinks,
		writeback = writeback(self),
	}))
end

-- A plain file writer (fs.writer) for `name` in the staging directory.
function Context:file_writer(name)
	return check(fs.writer(self:path(name), {writeback = writeback(self)}))
end

function Context:log(fmt, ...)
	if self.options.verbose then
		io.stderr:write("layersplit: ", printable(string.format(fmt, ...)), "\n")
	end
end

-- what may be nil: the current entry's path during `entry`, else the
-- archive's name, stands for it.
function Context:fail(class, what, why)
	if what == nil then
		what = self.entry_path or (self.input == "-" and "<stdin>" or self.input)
	end
	raise(class, what, why)
end

-- "trace: <path> [<type>[ -> <target>], <size> bytes]: <action>"
local function trace_line(entry, action)
	local what = entry.type
	if entry.target then
		what = what .. " -> " .. printable(entry.target)
	end
	io.stderr:write(string.format("trace: %s [%s, %d bytes]: %s\n",
		printable(entry.path), what, entry.size or 0,
		printable(action == nil and "skip" or errors.describe(action))))
end

-- The progress line on stderr: "auto" shows it on a terminal, unless other
-- lines go there (--trace, --verbose) or none should (--quiet).
local function start_progress(opts, reader)
	local mode = opts.progress or "auto"
	if mode == "never" or (mode == "auto" and (opts.quiet or opts.trace or opts.verbose
		or not progress.is_terminal())) then
		return nil
	end
	-- No progress line is no reason to fail the run.
	return (progress.start(reader, {total = progress.input_size(opts.input)}))
end

-- opts.input_data, when set, is the archive itself as a string (the fuzzer
-- uses it); opts.input then only names it in messages.
local function open_input(opts)
	local options = {max_size = opts.max_layer_size or image.max_layer_size,
		max_ratio = opts.max_ratio or image.max_ratio}
	if opts.input_data then
		return archive.open_memory(opts.input_data, options)
	end
	return archive.open(opts.input, options)
end

-- The --set pairs in command line order: opts.setting_list (cli.parse), or
-- opts.settings, a table of strings, in the order of its keys.
local function given_settings(opts)
	if opts.setting_list then
		return opts.setting_list
	end
	local keys, list = {}, {}
	for k in pairs(opts.settings or {}) do
		keys[#keys + 1] = k
	end
	table.sort(keys)
	for _, k in ipairs(keys) do
		local v = opts.settings[k]
		for _, item in ipairs(type(v) == "table" and v or {v}) do
			list[#list + 1] = {k, item} -- a table: a list setting given once per item
		end
	end
	return list
end

-- What a policy put in ctx.summary must be what --json can print.
local function check_summary(summary)
	local function expect(field, want, ok)
		if not ok then
			raise("policy", "ctx.summary." .. field, string.format("expected %s, got %s %s",
				want, type(summary[field]), errors.describe(summary[field])))
		end
	end
	expect("images", "a list of images (one table per image)",
		summary.images == nil or type(summary.images) == "table")
	expect("layers", "a number of layer files", summary.layers == nil or math.type(summary.layers))
	expect("bytes_out", "a number of bytes", summary.bytes_out == nil or math.type(summary.bytes_out))
	local ok, err = pcall(json.encode, summary)
	if not ok then
		raise("policy", "ctx.summary", "not printable as JSON: " .. tostring(err))
	end
end

-- opts: input, outdir, policy, level, engine, jobs, v2metadata, max_layer_size, settings,
-- trace, verbose, quiet, progress, sync (false: no fsync), before_commit (a
-- function of the context, called when the output is complete and on disk,
-- just before the rename: the last thing that may still fail the run).
-- Without outdir (a push without --out) the files are staged in a private
-- directory under opts.spool (default $TMPDIR) and removed at the end.
-- Returns the context (its summary for the caller).  on_context, if given,
-- is called with the context as soon as it is made (the REPL's run_policy
-- keeps it, also when the run fails).
function driver.run(opts, on_context)
	local started = progress.clock()
	local policy = driver.load_policy(opts.policy)
	local values = settings.resolve(policy, opts.policy, given_settings(opts))
	local spool = opts.spool or os.getenv("TMPDIR")
	spool = spool and spool ~= "" and spool or "/tmp"
	local stage, stale = check(fs.stage(opts.outdir or fs.join(spool, "layersplit-spool")))
	local ctx
	-- The binary also removes an uncommitted stage at exit; in plain Lua
	-- (the rock) only this does.  A failed run first lets the policy undo
	-- what it started outside (policy.abort: open uploads).
	local committed, finished = false, false
	local discard <close> = setmetatable({}, {__close = function(_, err)
		if not finished and ctx and policy.abort then
			pcall(policy.abort, ctx, err)
		end
		if not committed then
			pcall(fs.discard, stage)
		end
	end})
	local reader <close> = check(open_input(opts))
	local meter <close> = start_progress(opts, reader)
	ctx = setmetatable({
		options = opts,
		settings = values,
		input = opts.input,
		outdir = opts.outdir,
		stage = stage,
		reader = reader,
		summary = {entries = 0},
	}, Context)
	if on_context then
		on_context(ctx)
	end

	for _, path in ipairs(stale) do
		ctx:log("%s: removed the staging directory of a run that is gone", path)
	end
	if policy.setup then
		call_hook("setup", policy.setup, ctx, ctx.settings)
	end
	while true do
		local entry, err, class = reader:next()
		if entry == nil then
			if err ~= nil then
				-- An entry refused ("entry") rejects the image like a damaged
				-- stream.  Its message names the entry; the reader's other
				-- messages name the input already.
				if class == "entry" then
					raise("archive", opts.input == "-" and "<stdin>" or opts.input, err)
				end
				raise(class or "archive", err)
			end
			break
		end
		ctx.summary.entries = ctx.summary.entries + 1
		if meter then
			meter:label(entry.path)
		end
		ctx.entry_path = entry.path
		local action = call_hook("entry", policy.entry, ctx, entry)
		ctx.entry_path = nil
		if meter and type(action) == "string" and action:find("^layer") then
			meter:layer_done()
		end
		if opts.trace then
			trace_line(entry, action)
		end
	end
	if ctx.summary.entries == 0 then
		raise("archive", opts.input == "-" and "<stdin>" or opts.input,
			"not an image archive: no entries")
	end
	if policy.finish then
		call_hook("finish", policy.finish, ctx)
	end
	check_summary(ctx.summary)
	ctx.summary.bytes_in = reader:bytes_in()
	reader:close()
	local sync = opts.outdir ~= nil and opts.sync ~= false
	if sync then
		check(fs.sync(stage))
	end
	if meter then
		meter:stop()
	end
	ctx.summary.seconds = progress.clock() - started
	if opts.before_commit then
		opts.before_commit(ctx)
	end
	if opts.outdir then
		local _, warning = check(fs.commit(stage, opts.outdir, {sync = sync}))
		committed = true
		if warning then
			-- Best effort: the output is in place, nothing may fail the run now.
			io.stderr:write("layersplit: warning: ", printable(warning), "\n")
		end
	end
	finished = true
	return ctx
end

return driver
