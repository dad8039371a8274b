-- layersplit.cli: the command line.
local errors = require "layersplit.errors"
local fs = require "layersplit.fs"
local gzip = require "layersplit.gzip"
local host = require "layersplit.host"
local json = require "layersplit.json"

local raise = errors.raise

local cli = {}

cli.usage = [[
usage: layersplit [OPTIONS] ARCHIVE|- OUTDIR
       layersplit push [OPTIONS] [PUSH OPTIONS] ARCHIVE|- DEST
       layersplit run SCRIPT.lua [ARGS...]
       layersplit repl [ARCHIVE]

Reads an image archive (docker save, podman save, skopeo docker-archive or
oci-archive, docker >= 25, OCI layout tar; optionally gzip/zstd/xz/bzip2
compressed) once, as a stream, and writes into OUTDIR, which must be absent
or empty: one <layer_id>.tar.gz per layer, the config, manifest.json,
digests.json and repositories.  "-" reads standard input.

options:
  --policy NAME|FILE  the policy that decides what goes where: launchpad
                      (the default), oci-layout, files-list, extract,
                      or a Lua file
  --set KEY=VALUE     a setting for the policy (repeatable); a key the
                      policy does not declare is a usage error, and
                      --policy NAME --help lists the ones it takes
  --engine NAME       compression engine: libdeflate (the default: half
                      pigz -6's CPU, slightly smaller files; its bytes
                      change with libdeflate's version), zlib (the zlib
                      library's deflate, as pigz and gzip use: their sizes
                      and speed) or isal (fastest, files ~10% larger than
                      zlib's; where built in)
  --level N           compression level: libdeflate 1-12 (default 6; 12 is
                      the smallest and slowest), zlib 1-9 (default 6), isal
                      0-3 (default 2)
  -j, --jobs N        compression threads (default: online CPUs)
  --v2metadata DIR    docker's v2metadata-by-diffid directory: keep the
                      registry digests it records (a record whose Digest is
                      not sha256:<64 hex> is rejected)
  --max-layer-size N  cap on a layer's data as it expands (decompressed, or
                      a sparse entry's holes), bytes with an optional K, M
                      or G suffix (default 64G; 0: no cap); past it is exit 1
  --max-ratio N       cap on how many times its size a zstd, xz or bzip2
                      layer blob may expand (default 1032, gzip's own
                      maximum; 0: no cap); past it is exit 1
  --max-memory N      cap on the Lua heap (the archive's metadata, not its
                      data), bytes with an optional K, M or G suffix
                      (default 256M; 0: no cap); reaching it is exit 3
  --trace             one line on stderr per archive entry with the decision
  --progress WHEN     a progress line on stderr: auto (the default: when
                      stderr is a terminal, without --trace, --verbose or
                      --quiet), always or never
  --json              on success, a JSON summary on stdout (images, layers,
                      digests, sizes, bytes in, time) instead of the summary
                      line; written and flushed before OUTDIR is put in
                      place, so a failure to write it fails the run
  --no-sync           do not fsync the output files and directories (by
                      default, after a power loss OUTDIR is absent or complete)
  -v, --verbose       more detail, and a traceback with errors
  -q, --quiet         no summary
  -h, --help          this help
  --version           the version, and the compression libraries' versions

"push" streams the image(s) straight into a registry in the same single
pass: each layer is compressed (the same bytes as OUTDIR's files) and
uploaded as it streams past, then the configs and manifests are pushed.
DEST is [docker://]HOST[:PORT]/PATH[:TAG]; with no TAG the images keep their
own tags (else latest); an archive of several images needs a DEST without a
tag, a prefix under which each keeps its repository path.

push options:
  --format F          manifests: docker (schema 2, the default) or oci
  --creds USER:PASSWORD  credentials for the registry (else --authfile,
                      $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
                      ~/.docker/config.json and their credential helpers)
  --authfile FILE     a docker config.json / containers auth.json to use
  --cert-dir DIR      TLS: *.crt CA certificates, NAME.cert + NAME.key client
  --tls-verify=false  allow plain http and unverified TLS (default true)
  --retry-times N     retries of a failed request or upload (default 3)
  --timeout SECONDS   give up on a connection that does not connect, or
                      moves no byte, for that long (default 30)
  --cache DIR         blob-info cache (default ${XDG_CACHE_HOME:-~/.cache}/layersplit)
  --spool DIR         where each layer is spooled for retries (default $TMPDIR)
  --out DIR           also write the OUTDIR files into DIR in the same pass
  --trace             also one line per HTTP request: method, path, status

"run" runs a Lua script with the layersplit modules loaded (`arg` as in lua;
the script's return value, if an integer, is the exit status).  "repl" is a
Lua prompt with the modules as globals (layersplit, archive, gzip, digest, fs,
json, image, errors, settings, registry, client); with ARCHIVE, `reader` is
archive.open(ARCHIVE) and entries() lists its entries; run_policy(POLICY,
ARCHIVE) runs a whole policy and returns its ctx; push(ARCHIVE, DEST, opts)
pushes.  Ctrl-C stops a statement, Ctrl-D ends the session, and
statements can also come from a pipe.  See SCRIPTING.md.

exit status: 0 success, 1 the archive or its content was rejected, 2 usage
error, 3 I/O or system error (push: a registry refusal or network failure),
4 a policy script (or a REPL statement) failed,
128+N a signal.
]]

-- name -> {key, takes_value}
local options = {
	["policy"] = {"policy", true},
	["set"] = {"set", true},
	["level"] = {"level", true},
	["engine"] = {"engine", true},
	["jobs"] = {"jobs", true},
	["j"] = {"jobs", true},
	["v2metadata"] = {"v2metadata", true},
	["max-memory"] = {"max_memory", true},
	["max-layer-size"] = {"max_layer_size", true},
	["max-ratio"] = {"max_ratio", true},
	["trace"] = {"trace", false},
	["progress"] = {"progress", true},
	["json"] = {"json", false},
	["no-sync"] = {"no_sync", false},
	["verbose"] = {"verbose", false},
	["v"] = {"verbose", false},
	["quiet"] = {"quiet", false},
	["q"] = {"quiet", false},
	["help"] = {"help", false},
	["h"] = {"help", false},
	["version"] = {"version", false},
	["format"] = {"format", true},
	["creds"] = {"creds", true},
	["authfile"] = {"authfile", true},
	["cert-dir"] = {"cert_dir", true},
	["tls-verify"] = {"tls_verify", true},
	["retry-times"] = {"retry_times", true},
	["cache"] = {"cache", true},
	["spool"] = {"spool", true},
	["out"] = {"out", true},
	["timeout"] = {"timeout", true},
}

local push_only = {"format", "creds", "authfile", "cert_dir", "tls_verify", "retry_times",
	"cache", "spool", "out", "timeout"}

local function usage_error(what, why)
	raise("usage", what, (why or "") .. " (see layersplit --help)")
end
cli.usage_error = usage_error

-- Splits argv into options and positional arguments, getopt style:
-- --name=value, --name value, -j4, -j 4, -vq, and -- to end options.
function cli.parse(args)
	local opts = {settings = {}, setting_list = {}, positional = {}}
	local i = 1
	local function take_value(name, inline)
		if inline ~= nil then
			return inline
		end
		i = i + 1
		if args[i] == nil then
			usage_error("--" .. name, "needs a value")
		end
		return args[i]
	end
	local function set(name, value)
		local spec = options[name]
		if spec[1] == "set" then
			local key, v = value:match("^([%w_%.%-]+)=(.*)$")
			if not key then
				usage_error("--set " .. value, "expected KEY=VALUE")
			end
			opts.settings[key] = v
			opts.setting_list[#opts.setting_list + 1] = {key, v}
		else
			opts[spec[1]] = value
		end
	end
	while i <= #args do
		local a = args[i]
		if a == "--" then
			table.move(args, i + 1, #args, #opts.positional + 1, opts.positional)
			break
		elseif a:sub(1, 2) == "--" then
			local name, inline = a:match("^%-%-([^=]+)=(.*)$")
			name = name or a:sub(3)
			local spec = options[name]
			if not spec or #name == 1 then
				usage_error(a, "unknown option")
			end
			if spec[2] then
				set(name, take_value(name, inline))
			elseif inline ~= nil then
				usage_error(a, "takes no value")
			else
				set(name, true)
			end
		elseif a:sub(1, 1) == "-" and #a > 1 then
			local j = 2
			while j <= #a do
				local name = a:sub(j, j)
				local spec = options[name]
				if not spec then
					usage_error("-" .. name, "unknown option")
				end
				if spec[2] then
					local rest = a:sub(j + 1)
					set(name, take_value(name, rest ~= "" and rest or nil))
					break
				end
				set(name, true)
				j = j + 1
			end
		else
			opts.positional[#opts.positional + 1] = a
		end
		i = i + 1
	end
	return opts
end

-- A size option's value: bytes with an optional K, M or G suffix, at most
-- max_g gigabytes.
local function parse_size(option, text, max_g)
	local n, suffix = text:match("^(%d+)([KkMmGg]?)$")
	if not n then
		usage_error(option .. " " .. text, "expected a size such as 512M")
	end
	local scale = ({[""] = 1, k = 1 << 10, m = 1 << 20, g = 1 << 30})[suffix:lower()]
	local bytes = (tonumber(n) + 0.0) * scale -- a float: no integer wraparound
	local size = bytes <= max_g * 2 ^ 30 and math.tointeger(bytes)
	if not size then
		usage_error(option .. " " .. text, string.format("too large (at most %dG; 0 for no cap)", max_g))
	end
	return size
end

local function parse_integer(name, text, low, high)
	local n = math.tointeger(tonumber(text))
	if not n or n < low or n > high then
		usage_error("--" .. name .. " " .. text,
			string.format("expected a whole number from %d to %d", low, high))
	end
	return n
end

-- Checks the options of the main job and fills in the defaults.
function cli.validate(opts)
	if #opts.positional ~= 2 then
		usage_error("arguments", "expected ARCHIVE (or -) and OUTDIR")
	end
	for _, key in ipairs(push_only) do
		if opts[key] ~= nil then
			usage_error("--" .. key:gsub("_", "-"), "is a push option")
		end
	end
	opts.input, opts.outdir = opts.positional[1], opts.positional[2]
	return cli.validate_run(opts)
end

-- The options of a run, however given (the command line, run_policy).
function cli.validate_run(opts)
	opts.policy = opts.policy or "launchpad"
	opts.engine = opts.engine or gzip.engines()[1]
	local engine = gzip.engine(opts.engine)
	if not engine and opts.engine == "isal" then
		usage_error("--engine isal", "this build has no ISA-L engine (install libisal-dev and rebuild)")
	elseif not engine then
		usage_error("--engine " .. opts.engine,
			"unknown engine (" .. table.concat(gzip.engines(), ", ") .. ")")
	end
	opts.level = opts.level and parse_integer("level", tostring(opts.level), engine.min_level, engine.max_level)
		or engine.default_level
	if opts.jobs then
		opts.jobs = parse_integer("jobs", tostring(opts.jobs), 1, 1024)
	end
	if opts.max_memory then
		opts.max_memory = parse_size("--max-memory", opts.max_memory, 1024)
	end
	opts.max_layer_size = parse_size("--max-layer-size", opts.max_layer_size or "64G", 1 << 20)
	if opts.max_ratio then
		opts.max_ratio = parse_integer("max-ratio", opts.max_ratio, 0, 1 << 30)
	end
	if opts.v2metadata and fs.kind(opts.v2metadata) ~= "dir" then
		usage_error("--v2metadata " .. opts.v2metadata, "no such directory")
	end
	opts.progress = opts.progress or "auto"
	if not ({auto = true, always = true, never = true})[opts.progress] then
		usage_error("--progress " .. opts.progress, "expected auto, always or never")
	end
	return opts
end

-- Checks the options of a push and fills in the defaults.
function cli.validate_push(opts)
	if #opts.positional ~= 2 then
		usage_error("push arguments", "expected ARCHIVE (or -) and DEST")
	end
	opts.input, opts.destination = opts.positional[1], opts.positional[2]
	opts.outdir = opts.out
	opts.policy = opts.policy or "push"
	opts.format = opts.format or "docker"
	if opts.format ~= "docker" and opts.format ~= "oci" then
		usage_error("--format " .. opts.format, "expected docker or oci")
	end
	if opts.tls_verify == nil or opts.tls_verify == true or opts.tls_verify == "true" then
		opts.tls_verify = true
	elseif opts.tls_verify == false or opts.tls_verify == "false" then
		opts.tls_verify = false
	else
		usage_error("--tls-verify " .. opts.tls_verify, "expected true or false")
	end
	opts.retry_times = parse_integer("retry-times", opts.retry_times or "3", 0, 100)
	opts.timeout = parse_integer("timeout", opts.timeout or "30", 1, 3600)
	opts.cache = opts.cache or require("layersplit.blobcache").default_dir()
	if opts.spool and require("layersplit.fs").kind(opts.spool) ~= "dir" then
		usage_error("--spool " .. opts.spool, "not a directory")
	end
	if opts.creds then
		require("layersplit.credentials").parse_creds(opts.creds)
	end
	require("layersplit.policies.push").parse(opts.destination)
	return cli.validate_run(opts)
end

local function human_bytes(n)
	local units, u = {"KiB", "MiB", "GiB", "TiB"}, 0
	if n < 1024 then
		return string.format("%.0f B", n)
	end
	while n >= 1024 and u < #units do
		n, u = n / 1024, u + 1
	end
	return string.format("%.1f %s", n, units[u])
end

-- ctx.summary.images: the policy's list of images (the driver checks it is one).
local function image_count(s)
	return s.images and #s.images or 0
end

-- One line on stderr for people.
local function summary(ctx)
	local s = ctx.summary
	local images = image_count(s)
	local parts = {
		string.format("%d image%s", images, images == 1 and "" or "s"),
		string.format("%d layer file%s", s.layers or 0, s.layers == 1 and "" or "s"),
	}
	if s.bytes_in then
		parts[#parts + 1] = human_bytes(s.bytes_in) .. " read"
	end
	if s.bytes_out then
		parts[#parts + 1] = human_bytes(s.bytes_out) .. " written"
	end
	if s.seconds then
		local rate = s.bytes_in and s.seconds > 0
			and ", " .. human_bytes(s.bytes_in / s.seconds) .. "/s" or ""
		parts[#parts + 1] = string.format("in %.2f s%s", s.seconds, rate)
	end
	io.stderr:write("layersplit: ", errors.printable(ctx.outdir), ": ", table.concat(parts, ", "), "\n")
end

-- "compression: zlib 1.2.13, libdeflate 1.14, ...": the libraries whose
-- versions the layer bytes depend on.
function cli.libraries()
	local versions, parts = gzip.versions(), {}
	for _, name in ipairs {"zlib", "libdeflate", "isal"} do
		if versions[name] then
			parts[#parts + 1] = name .. " " .. versions[name]
		end
	end
	return "compression: " .. table.concat(parts, ", ")
end

-- The --json summary for build scripts: the run's numbers, the images and
-- layers the policy reported in ctx.summary, any other field it set there,
-- and the compression used.
local function json_summary(ctx)
	local s = ctx.summary
	local seconds = s.seconds or 0
	local out = {}
	for k, v in pairs(s) do
		out[k] = v
	end
	out.input, out.outdir, out.policy = ctx.input, ctx.outdir, ctx.options.policy
	out.seconds = math.floor(seconds * 1000 + 0.5) / 1000
	out.bytes_per_second = seconds > 0 and s.bytes_in and math.floor(s.bytes_in / seconds) or 0
	out.images = json.array(s.images or {})
	out.compression = {
		engine = ctx.options.engine,
		level = ctx.options.level,
		block_size = gzip.engine(ctx.options.engine).block_size,
		libraries = gzip.versions(),
	}
	return json.encode(out) .. "\n"
end

-- Runs the job, then prints the --json summary, or the summary line(ctx)
-- unless --quiet.
local function run_job(opts, line)
	if opts.max_memory then
		host.set_memory_limit(opts.max_memory)
	end
	opts.sync = not opts.no_sync
	if opts.json then
		-- Written and flushed before the rename: once OUTDIR is in place,
		-- nothing may fail the run.
		opts.before_commit = function(ctx)
			local ok, err = io.stdout:write(json_summary(ctx))
			if ok then
				ok, err = io.stdout:flush()
			end
			if not ok then
				raise(host.interrupted() and "signal" or "io", "standard output", err)
			end
		end
	end
	local ctx = require("layersplit.driver").run(opts)
	if not opts.json and not opts.quiet then
		-- After the rename: best effort, a failure to write it is ignored.
		pcall(line, ctx)
	end
	return 0
end

-- One line on stderr for a push.
local function push_summary(ctx)
	local s = ctx.summary
	local c = s.layer_counts or {}
	local images = image_count(s)
	local parts = {
		string.format("%d image%s", images, images == 1 and "" or "s"),
		string.format("%d layer%s (%d pushed, %d skipped, %d mounted)", s.layers or 0,
			s.layers == 1 and "" or "s", c.pushed or 0, c.skipped or 0, c.mounted or 0),
	}
	if s.bytes_in then
		parts[#parts + 1] = human_bytes(s.bytes_in) .. " read"
	end
	if s.seconds then
		parts[#parts + 1] = string.format("in %.2f s", s.seconds)
	end
	io.stderr:write("layersplit: push ", errors.printable(ctx.options.destination), ": ",
		table.concat(parts, ", "), "\n")
	for _, p in ipairs(s.pushed or {}) do
		io.stderr:write("layersplit: pushed ", errors.printable(p.repository .. ":" .. p.tag .. " " .. p.digest), "\n")
	end
end

-- layersplit push [OPTIONS] ARCHIVE|- DEST
function cli.push(args)
	local opts = cli.parse(table.move(args, 2, #args, 1, {}))
	host.set_verbose(opts.verbose)
	if opts.help then
		io.stdout:write(cli.usage)
		return 0
	end
	cli.validate_push(opts)
	return run_job(opts, push_summary)
end

function cli.main(args)
	if args[1] == "push" then
		return cli.push(args)
	elseif args[1] == "run" then
		return cli.run_script(args)
	elseif args[1] == "repl" then
		return cli.repl(args)
	end
	local opts = cli.parse(args)
	host.set_verbose(opts.verbose)
	if opts.help and opts.policy then
		-- layersplit --policy NAME --help: the settings it declares
		local driver = require "layersplit.driver"
		io.stdout:write(require("layersplit.settings").help(driver.load_policy(opts.policy), opts.policy))
		return 0
	elseif opts.help then
		io.stdout:write(cli.usage)
		return 0
	elseif opts.version then
		io.stdout:write("layersplit ", host.version, "\n", cli.libraries(), "\n")
		return 0
	end
	cli.validate(opts)
	return run_job(opts, summary)
end

-- layersplit run SCRIPT [ARGS]: a script with the modules loaded; `arg` as in lua.
function cli.run_script(args)
	local script = args[2]
	if not script then
		usage_error("run", "expected a script")
	end
	local chunk, err = loadfile(script)
	if not chunk then
		raise(io.open(script) and "policy" or "usage", err)
	end
	_G.arg = table.move(args, 1, #args, -1, {[-2] = "layersplit"})
	local status = chunk(table.unpack(args, 3))
	return math.tointeger(status) or 0
end

-- layersplit repl [ARCHIVE]: a Lua prompt with the modules as globals
-- (layersplit.console).
function cli.repl(args)
	return require("layersplit.console").repl(args)
end

return cli
