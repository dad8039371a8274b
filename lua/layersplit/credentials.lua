-- layersplit.credentials: the credentials for a registry host, found the
-- way docker, podman and skopeo find them: --creds, then the first of
-- --authfile, $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json and
-- ~/.docker/config.json that has an entry for the host (credHelpers,
-- credsStore through docker-credential-<name> get, or auths).  A result is
-- {username=, password=} or {identity_token=}; no secret is ever put in a
-- message.
local errors = require "layersplit.errors"
local fs = require "layersplit.fs"
local json = require "layersplit.json"
local registry = require "layersplit.registry"

local raise = errors.raise

local credentials = {}

-- "USER:PASSWORD" as given to --creds.
function credentials.parse_creds(text)
	local user, password = text:match("^([^:]+):(.*)$")
	if not user then
		raise("usage", "--creds", "expected USER:PASSWORD")
	end
	return {username = user, password = password}
end

-- The credential files to look in, in order.
function credentials.files(authfile)
	if authfile then
		return {authfile}
	end
	local files = {}
	local function add(path)
		if path and path ~= "" then
			files[#files + 1] = path
		end
	end
	add(os.getenv("REGISTRY_AUTH_FILE"))
	local runtime = os.getenv("XDG_RUNTIME_DIR")
	add(runtime and runtime ~= "" and runtime .. "/containers/auth.json")
	local home = os.getenv("HOME")
	add(home and home ~= "" and home .. "/.docker/config.json")
	return files
end

-- Runs docker-credential-<name> get for host.
function credentials.helper(name, host)
	local what = "credential helper docker-credential-" .. name
	if not name:match("^[%w_.-]+$") then
		raise("io", what, "bad helper name")
	end
	if not host:match("^[%w.:%[%]-]+$") then
		raise("io", what, "bad host " .. host)
	end
	local p = io.popen(string.format("printf '%%s' '%s' | docker-credential-%s get 2>/dev/null",
		host, name))
	local out = p and p:read(64 * 1024) or ""
	local ok, _, status = p and p:close()
	if not ok then
		if out:find("credentials not found", 1, true) then
			return nil
		end
		raise("io", what, string.format("failed (exit status %s)", tostring(status)))
	end
	local doc = json.decode(out)
	if type(doc) ~= "table" or type(doc.Secret) ~= "string" then
		raise("io", what, "its answer is not {\"Username\", \"Secret\"} JSON")
	end
	if doc.Username == "<token>" then
		return {identity_token = doc.Secret}
	end
	return {username = tostring(doc.Username or ""), password = doc.Secret}
end

local function from_auths(auths, host, path)
	for _, key in ipairs({host, "https://" .. host, "http://" .. host,
		"https://" .. host .. "/v1/", "https://" .. host .. "/v2/"}) do
		local entry = auths[key]
		if type(entry) == "table" then
			if type(entry.identitytoken) == "string" and entry.identitytoken ~= "" then
				return {identity_token = entry.identitytoken}
			elseif type(entry.auth) == "string" and entry.auth ~= "" then
				local decoded = registry.unbase64(entry.auth)
				local user, password = (decoded or ""):match("^([^:]*):(.*)$")
				if not user then
					raise("io", path, "auths." .. key .. ".auth is not base64 of USER:PASSWORD")
				end
				return {username = user, password = password}
			end
		end
	end
	return nil
end

-- The credentials one file has for host: the result, or nil.
function credentials.from_file(path, host)
	local text = errors.check(fs.read_file(path, 1 << 20))
	local doc, err = json.decode(text)
	if type(doc) ~= "table" then
		raise("io", path, err or "expected a JSON object")
	end
	if type(doc.credHelpers) == "table" and type(doc.credHelpers[host]) == "string" then
		return credentials.helper(doc.credHelpers[host], host)
	end
	local found = type(doc.auths) == "table" and from_auths(doc.auths, host, path)
	if found then
		return found
	end
	if type(doc.credsStore) == "string" and doc.credsStore ~= "" then
		return credentials.helper(doc.credsStore, host)
	end
	return nil
end

-- opts: creds ("USER:PASSWORD"), authfile.  The credentials for host, or nil.
function credentials.lookup(host, opts)
	if opts.creds then
		return credentials.parse_creds(opts.creds)
	end
	for _, path in ipairs(credentials.files(opts.authfile)) do
		local kind = fs.kind(path)
		if kind == nil and path == opts.authfile then
			raise("usage", "--authfile " .. path, "no such file")
		end
		if kind == "file" then
			local found = credentials.from_file(path, host)
			if found then
				return found
			end
		end
	end
	return nil
end

return credentials
