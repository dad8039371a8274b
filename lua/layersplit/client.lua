-- layersplit.client: the registry API (OCI distribution) over the HTTP
-- sessions of layersplit.registry: the /v2/ probe, Basic and Bearer auth,
-- credentials, retries with backoff, and the requests a push makes.  Bytes
-- go from files and sinks to the registry in C; only small documents
-- (manifests, configs, token answers) pass through here.
local errors = require "layersplit.errors"
local json = require "layersplit.json"
local registry = require "layersplit.registry"

local raise = errors.raise

local client = {}

client.retry_times = 3
client.retry_delay = 1 -- seconds before the first retry, doubled each time
client.max_retry_after = 60

-- "[docker://]HOST[:PORT]/PATH[:TAG]" -> {host=, repository=, tag=}.
function client.parse_reference(text)
	local what = "destination " .. text
	local rest = text:gsub("^docker://", "")
	local host, path = rest:match("^([^/]+)/(.+)$")
	if not host then
		raise("usage", what, "expected HOST[:PORT]/PATH[:TAG]")
	end
	if not host:match("^[%w.-]+$") and not host:match("^[%w.-]+:%d+$")
		and not host:match("^%[[%x:]+%]:?%d*$") then
		raise("usage", what, "bad registry host " .. host)
	end
	if path:find("@", 1, true) then
		raise("usage", what, "a digest reference cannot be pushed to; use a tag")
	end
	local tag
	local repo, t = path:match("^(.-):([^:/]+)$")
	if repo then
		path, tag = repo, t
		if not tag:match("^[%w_][%w_.-]*$") or #tag > 128 then
			raise("usage", what, "bad tag " .. tag)
		end
	end
	for component in (path .. "/"):gmatch("(.-)/") do
		if not component:match("^[a-z0-9]+[a-z0-9._-]*$") or component:find("[._-]$") then
			raise("usage", what, "bad repository path " .. path
				.. " (lowercase letters, digits and . _ - between them)")
		end
	end
	return {host = host, repository = path, tag = tag}
end

-- The WWW-Authenticate challenge: scheme ("basic" or "bearer") and params.
function client.parse_challenge(header)
	if type(header) ~= "string" then
		return nil
	end
	local scheme, rest = header:match("^%s*(%a+)%s*(.*)$")
	if not scheme then
		return nil
	end
	local c = {scheme = scheme:lower()}
	for key, value in rest:gmatch('([%w_]+)%s*=%s*"([^"]*)"') do
		c[key:lower()] = value
	end
	return c
end

-- "401 UNAUTHORIZED: authentication required" from an answer.
function client.answer_text(r)
	local doc = r.body ~= "" and json.decode(r.body)
	local first = type(doc) == "table" and type(doc.errors) == "table" and doc.errors[1]
	if type(first) == "table" and type(first.code) == "string" then
		local message = type(first.message) == "string" and first.message or ""
		return string.format("%d %s%s", r.status, first.code,
			message ~= "" and ": " .. message or "")
	end
	return string.format("HTTP %d", r.status)
end

local function error_codes(r)
	local doc = r.body ~= "" and json.decode(r.body)
	local codes = {}
	if type(doc) == "table" and type(doc.errors) == "table" then
		for _, e in ipairs(doc.errors) do
			if type(e) == "table" and type(e.code) == "string" then
				codes[e.code] = true
			end
		end
	end
	return codes
end

-- Answers worth another try: the registry's trouble, not the request's.
local function retryable(r)
	if r.status >= 500 or r.status == 429 or r.status == 408 then
		return true
	end
	local codes = error_codes(r)
	return codes.BLOB_UPLOAD_INVALID or codes.BLOB_UPLOAD_UNKNOWN or false
end
client.retryable = retryable

local Client = {}
Client.__index = Client

-- opts: host, tls_verify, cert_dir, trace, retry_times, credentials
-- ({username=, password=} or {identity_token=}), connect_timeout,
-- low_speed_time, name (for messages, e.g. "push HOST/REPO").
function client.new(opts)
	local session = errors.check(registry.session{
		tls_verify = opts.tls_verify ~= false,
		cert_dir = opts.cert_dir,
		trace = opts.trace,
		connect_timeout = opts.connect_timeout,
		low_speed_time = opts.low_speed_time,
	})
	return setmetatable({
		host = opts.host,
		name = opts.name or opts.host,
		session = session,
		tls_verify = opts.tls_verify ~= false,
		retry_times = opts.retry_times or client.retry_times,
		credentials = opts.credentials,
		tokens = {}, -- scope key -> {value=, expires=}
		sleep = opts.sleep or registry.sleep,
	}, Client)
end

function Client:fail(what, why)
	raise("io", self.name, what .. ": " .. why)
end

function Client:url(path)
	return self.base .. path
end

-- Waits before retry number n (1, 2, ...); a 429's Retry-After is obeyed.
function Client:backoff(n, r)
	local delay = client.retry_delay * 2 ^ (n - 1)
	local after = r and tonumber(r.headers["retry-after"])
	if after then
		delay = math.min(math.max(after, 0), client.max_retry_after)
	end
	errors.check(self.sleep(delay))
end

local function basic(c)
	return "Basic " .. registry.base64(c.username .. ":" .. c.password)
end

local function scope_key(scopes)
	local list = {}
	for s in pairs(scopes) do
		list[#list + 1] = s
	end
	table.sort(list)
	return table.concat(list, " "), list
end

-- A Bearer token for the scopes from the challenge's realm, cached until
-- shortly before it expires.
function Client:token(scopes)
	local key, list = scope_key(scopes)
	local cached = self.tokens[key]
	if cached and cached.expires > os.time() then
		return cached.value
	end
	local c = self.challenge
	if not c.realm then
		self:fail("auth", "Bearer challenge without a realm")
	end
	local url = c.realm
	if c.service then
		url = errors.check(registry.add_query(url, "service", c.service))
	end
	local creds, r, err = self.credentials
	if creds and creds.identity_token then
		local form = {"grant_type=refresh_token", "client_id=layersplit",
			"refresh_token=" .. creds.identity_token}
		if c.service then
			form[#form + 1] = "service=" .. c.service
		end
		for _, s in ipairs(list) do
			form[#form + 1] = "scope=" .. s
		end
		r, err = self.session:request("POST", c.realm, {body = table.concat(form, "&"),
			headers = {"Content-Type: application/x-www-form-urlencoded"}})
	else
		for _, s in ipairs(list) do
			url = errors.check(registry.add_query(url, "scope", s))
		end
		r, err = self.session:request("GET", url, {auth = creds and creds.username and basic(creds)})
	end
	if not r then
		self:fail("GET token", err)
	elseif r.status ~= 200 then
		self:fail("GET token", client.answer_text(r))
	end
	local doc = json.decode(r.body)
	local value = type(doc) == "table" and (doc.token or doc.access_token)
	if type(value) ~= "string" or value == "" then
		self:fail("GET token", "the answer has no token")
	end
	local expires_in = math.tointeger(doc.expires_in) or 60
	self.tokens[key] = {value = value, expires = os.time() + math.max(expires_in - 10, 1)}
	return value
end

-- The Authorization value for a request needing scopes, or nil.
function Client:auth(scopes)
	local c = self.challenge
	if c == nil then
		return nil
	elseif c.scheme == "basic" then
		local creds = self.credentials
		return creds and creds.username and basic(creds) or nil
	elseif c.scheme == "bearer" then
		return "Bearer " .. self:token(scopes)
	end
	return nil
end

-- After a 401: true when another try may succeed (a token for a wider
-- scope, or a fresh one).
function Client:reauth(r, scopes)
	local c = client.parse_challenge(r.headers["www-authenticate"])
	if not c then
		return false
	end
	if c.scheme == "bearer" then
		self.challenge = {scheme = "bearer", realm = c.realm or self.challenge and self.challenge.realm,
			service = c.service or self.challenge and self.challenge.service}
		if c.scope then
			for s in c.scope:gmatch("%S+") do
				scopes[s] = true
			end
		end
		self.tokens[scope_key(scopes)] = nil
		return true
	elseif c.scheme == "basic" and self.credentials and self.credentials.username
		and (self.challenge == nil or self.challenge.scheme ~= "basic") then
		self.challenge = {scheme = "basic"}
		return true
	end
	return false
end

-- GET /v2/: picks the scheme (https; plain http too with tls_verify off)
-- and learns how the registry wants to be authenticated.
function Client:probe()
	local schemes = self.tls_verify and {"https"} or {"https", "http"}
	local last
	for attempt = 0, self.retry_times do
		for _, scheme in ipairs(schemes) do
			local url = scheme .. "://" .. self.host .. "/v2/"
			local r, err, class = self.session:request("GET", url)
			if r then
				self.base = scheme .. "://" .. self.host
				if r.status == 401 then
					self.challenge = client.parse_challenge(r.headers["www-authenticate"])
					return
				elseif r.status == 200 then
					return
				elseif not retryable(r) then
					self:fail("GET /v2/", client.answer_text(r))
				end
				last = client.answer_text(r)
				break
			elseif class == "signal" then
				raise("signal", "interrupted")
			end
			last = err
		end
		if attempt < self.retry_times then
			self:backoff(attempt + 1)
		end
	end
	if self.tls_verify and tostring(last):find("wrong version number", 1, true) then
		last = last .. " (a plain http registry? --tls-verify=false allows it)"
	end
	self:fail("GET /v2/", last)
end

-- One request, retried on a failed connection, a 5xx, 429 or 408 (up to
-- retry_times, with backoff) and once more after a 401 that new auth can
-- answer.  The answer, whatever its status; raises when there is none.
function Client:call(what, method, url, opts, scopes)
	opts = opts or {}
	local attempt, reauthed = 0, false
	while true do
		opts.auth = self:auth(scopes)
		local r, err, class = self.session:request(method, url, opts)
		if r == nil and class == "signal" then
			raise("signal", "interrupted")
		elseif r and r.status == 401 and not reauthed and self:reauth(r, scopes) then
			reauthed = true
		elseif (r == nil or retryable(r) and not opts.no_retry) and attempt < self.retry_times then
			attempt = attempt + 1
			self:backoff(attempt, r)
		elseif r == nil then
			self:fail(what, err)
		else
			return r
		end
	end
end

local function push_scopes(repository, from)
	local scopes = {["repository:" .. repository .. ":pull,push"] = true}
	if from then
		scopes["repository:" .. from .. ":pull"] = true
	end
	return scopes
end

local function expect(self, what, r, ...)
	for _, status in ipairs({...}) do
		if r.status == status then
			return r
		end
	end
	self:fail(what, client.answer_text(r))
end

-- HEAD of a blob: its size when the repository has it, else nil.
function Client:head_blob(repository, digest)
	local r = self:call("HEAD blob " .. digest, "HEAD",
		self:url("/v2/" .. repository .. "/blobs/" .. digest), nil, push_scopes(repository))
	if r.status == 200 then
		return tonumber(r.headers["content-length"]) or 0
	elseif r.status ~= 404 then
		self:fail("HEAD blob " .. digest, client.answer_text(r))
	end
	return nil
end

-- Starts an upload session: its location.
function Client:start_upload(repository)
	local r = expect(self, "POST blob upload", self:call("POST blob upload", "POST",
		self:url("/v2/" .. repository .. "/blobs/uploads/"), nil, push_scopes(repository)), 202)
	if not r.location then
		self:fail("POST blob upload", "the answer has no Location")
	end
	return r.location
end

-- Best effort: ends an upload session (also after a signal).
function Client:cancel(repository, location)
	pcall(function()
		self.session:request("DELETE", location, {after_signal = true,
			auth = self:auth(push_scopes(repository))})
	end)
end

-- Cross-repository mount: true when the registry mounted the blob.
function Client:mount(repository, digest, from)
	local url = self:url("/v2/" .. repository .. "/blobs/uploads/")
	url = errors.check(registry.add_query(url, "mount", digest))
	url = errors.check(registry.add_query(url, "from", from))
	local r = self:call("POST mount " .. digest, "POST", url, nil, push_scopes(repository, from))
	if r.status == 201 then
		return true
	elseif r.status == 202 and r.location then
		self:cancel(repository, r.location)
	end
	return false
end

-- The digest parameter added to an upload location, never rebuilt.
local function with_digest(location, digest)
	return errors.check(registry.add_query(location, "digest", digest))
end

-- A whole blob in one PUT (body: {file = path} or {body = string}), each
-- try from a new upload session.
function Client:put_blob(repository, digest, body)
	local what = "PUT blob " .. digest
	for attempt = 0, self.retry_times do
		local location = self:start_upload(repository)
		local r = self:call(what, "PUT", with_digest(location, digest),
			{file = body.file, body = body.body or (body.file == nil and "" or nil),
			 headers = {"Content-Type: application/octet-stream"}, no_retry = true},
			push_scopes(repository))
		if r.status == 201 then
			return true
		elseif not retryable(r) or attempt == self.retry_times then
			self:fail(what, client.answer_text(r))
		end
		self:backoff(attempt + 1, r)
	end
end

-- Starts a streamed upload: the sink the compressed bytes go to, and its
-- upload location.
function Client:stream(repository)
	local location = self:start_upload(repository)
	local up = errors.check(self.session:upload(location, {auth = self:auth(push_scopes(repository))}))
	return up, location
end

-- Ends a streamed upload with the digest of what was sent: true, or false
-- and why (the caller retries from the spool).
function Client:finish_stream(repository, up, digest)
	local r, err, class = up:finish()
	if r == nil then
		if class == "signal" then
			raise("signal", "interrupted")
		end
		return false, "PATCH blob: " .. err
	elseif r.status ~= 202 or not r.location then
		return false, "PATCH blob: " .. client.answer_text(r)
	end
	local put = self:call("PUT blob " .. digest, "PUT", with_digest(r.location, digest),
		{no_retry = true}, push_scopes(repository))
	if put.status ~= 201 then
		return false, "PUT blob " .. digest .. ": " .. client.answer_text(put)
	end
	return true
end

-- PUT of a manifest (or index) by tag or digest; checks the registry's
-- Docker-Content-Digest against the digest of the bytes sent.
function Client:put_manifest(repository, reference, bytes, media_type, digest)
	local what = "PUT manifest " .. repository .. ":" .. reference
	local r = expect(self, what, self:call(what, "PUT",
		self:url("/v2/" .. repository .. "/manifests/" .. reference),
		{body = bytes, headers = {"Content-Type: " .. media_type}}, push_scopes(repository)), 201)
	local answered = r.headers["docker-content-digest"]
	if answered and answered ~= digest then
		self:fail(what, "the registry stored " .. answered .. ", not " .. digest)
	end
	return digest
end

-- GET of a manifest: body and media type, or nil when there is none.
function Client:get_manifest(repository, reference, accept)
	local what = "GET manifest " .. repository .. ":" .. reference
	local r = self:call(what, "GET", self:url("/v2/" .. repository .. "/manifests/" .. reference),
		{headers = {"Accept: " .. table.concat(accept, ", ")}},
		{["repository:" .. repository .. ":pull"] = true})
	if r.status == 404 then
		return nil
	end
	expect(self, what, r, 200)
	return r.body, r.headers["content-type"]
end

function Client:close()
	self.session:close()
end

return client
