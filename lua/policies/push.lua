-- push: streams each layer into a registry as it is compressed, in the same
-- single pass that reads the archive, then pushes the configs and the
-- manifests.  The per-entry decisions are the launchpad policy's; each
-- layer's gzip bytes go to its spool file (kept for retries) and, through a
-- bounded queue, to ONE streamed upload.
--
-- A site policy builds on it (see examples/push-mirror.lua): its setup may
-- set ctx.targets(ctx, images), which returns where each image goes (the
-- default is push.targets: a list of {client=, repository=, tag=, images=}),
-- and use push.connect for another registry.
local blobcache = require "layersplit.blobcache"
local client = require "layersplit.client"
local credentials = require "layersplit.credentials"
local digest = require "layersplit.digest"
local errors = require "layersplit.errors"
local json = require "layersplit.json"
local launchpad = require "layersplit.policies.launchpad"

local raise = errors.raise

local push = {}

push.media_types = {
	docker = {
		manifest = "application/vnd.docker.distribution.manifest.v2+json",
		index = "application/vnd.docker.distribution.manifest.list.v2+json",
		config = "application/vnd.docker.container.image.v1+json",
		layer = "application/vnd.docker.image.rootfs.diff.tar.gzip",
	},
	oci = {
		manifest = "application/vnd.oci.image.manifest.v1+json",
		index = "application/vnd.oci.image.index.v1+json",
		config = "application/vnd.oci.image.config.v1+json",
		layer = "application/vnd.oci.image.layer.v1.tar+gzip",
	},
}

-- A client for the registry of reference (a parsed destination), with the
-- run's TLS, retry and credential options.
function push.connect(ctx, reference)
	local o = ctx.options
	local c = client.new{
		host = reference.host,
		name = "push " .. reference.text,
		tls_verify = o.tls_verify,
		cert_dir = o.cert_dir,
		trace = o.trace,
		retry_times = o.retry_times,
		connect_timeout = o.timeout,
		low_speed_time = o.timeout,
		credentials = credentials.lookup(reference.host, o),
	}
	c:probe()
	return c
end

function push.parse(text)
	local ref = client.parse_reference(text)
	ref.text = text:gsub("^docker://", "")
	return ref
end

-- "how" a blob got into client's repository: "pushed", "skipped", "mounted".
local function note(ctx, c, repository, d, how)
	ctx.blobs[c.host .. "/" .. repository .. "@" .. d] = how
	if ctx.cache then
		ctx.cache:add_repo(c.host, d, repository)
	end
end

local function known(ctx, c, repository, d)
	return ctx.blobs[c.host .. "/" .. repository .. "@" .. d]
end

-- Repositories of the client's registry that hold d, this run or earlier.
local function mount_sources(ctx, c, repository, d)
	local list, seen = {}, {[repository] = true}
	for key, how in pairs(ctx.blobs) do
		local h, repo = key:match("^(.-)/(.+)@" .. d:gsub("%p", "%%%0") .. "$")
		if h == c.host and how and not seen[repo] then
			list[#list + 1], seen[repo] = repo, true
		end
	end
	table.sort(list)
	for _, repo in ipairs(ctx.cache and ctx.cache:repos(c.host, d) or {}) do
		if not seen[repo] then
			list[#list + 1], seen[repo] = repo, true
		end
	end
	return list
end

-- The blob there already (HEAD), or mounted from another repository.
local function skip_or_mount(ctx, c, repository, d)
	if known(ctx, c, repository, d) then
		return known(ctx, c, repository, d)
	end
	if c:head_blob(repository, d) then
		note(ctx, c, repository, d, "skipped")
		return "skipped"
	end
	for _, from in ipairs(mount_sources(ctx, c, repository, d)) do
		if c:mount(repository, d, from) then
			note(ctx, c, repository, d, "mounted")
			return "mounted"
		end
	end
	return nil
end

-- Makes sure repository holds blob d; body is {file=} or {body=}.
function push.ensure_blob(ctx, c, repository, d, body)
	local how = skip_or_mount(ctx, c, repository, d)
	if not how then
		c:put_blob(repository, d, body)
		how = "pushed"
		note(ctx, c, repository, d, how)
	end
	return how
end

-- Docker's v2metadata record for diff_id (--v2metadata): the blob the
-- layer was pulled as and its repository, when that repository is on the
-- client's registry ("HOST/PATH"); else nil.
local function v2_source(ctx, c, diff_id)
	local dir = ctx.options.v2metadata
	if not dir or not diff_id then
		return nil
	end
	local d, source = launchpad.v2metadata(dir, diff_id)
	local host, repository = (source or ""):match("^([^/]+)/(.+)$")
	if d and host == c.host then
		return d, repository
	end
	return nil
end

-- The registry's own blob for a layer (--v2metadata): HEAD or mount it into
-- repository; {digest=, size=, how=} when it is there, else nil.  Asked once
-- per repository and layer: the answer is kept for the rest of the run.
local function pulled_blob(ctx, c, repository, diff_id)
	local key = c.host .. "/" .. repository .. "@" .. tostring(diff_id)
	local kept = ctx.pulled[key]
	if kept ~= nil then
		return kept or nil
	end
	local d, source = v2_source(ctx, c, diff_id)
	local how, size = d and known(ctx, c, repository, d), nil
	if d and not how then
		size = c:head_blob(repository, d)
		if size then
			how = "skipped"
		elseif c:mount(repository, d, source) then
			how = "mounted"
		end
		if how then
			note(ctx, c, repository, d, how)
		end
	end
	kept = how and {digest = d, size = size or c:head_blob(repository, d), how = how} or false
	ctx.pulled[key] = kept
	return kept or nil
end

-- store.on_layer: decides, before the layer streams past, whether to send
-- it; a layer whose digest is known (a kept gzip blob's name, or the cache)
-- and that the registry has is not sent.
local function on_layer(ctx, entry, kind, layer_id)
	local c, repository = ctx.client, ctx.dest.repository
	local o = ctx.options
	local candidate = kind == "gzip" and entry.path:match("^blobs/sha256/(%x+)$")
	candidate = candidate and "sha256:" .. candidate
		or ctx.cache:lookup(layer_id, o.engine, o.level)
	-- a layer named by its diff_id (podman, docker >= 25) pulled from this registry
	local named = #layer_id == 64 and layer_id:match("^%x+$") and "sha256:" .. layer_id
	if named and pulled_blob(ctx, c, repository, named) then
		return {}, nil
	end
	if candidate and skip_or_mount(ctx, c, repository, candidate) then
		return {}, nil -- if the bytes turn out different, finish pushes them
	end
	local up, location = c:stream(repository)
	ctx.uploads[up] = location
	return {up}, function(record)
		local d = "sha256:" .. record.digest
		if record.streamed_digest ~= record.digest then
			-- rewritten as one member after streaming: finish sends the file
			ctx.uploads[up] = nil
			up:cancel()
			c:cancel(repository, location)
			return
		end
		-- still open (for abort) until the registry has answered
		local ok, why = c:finish_stream(repository, up, d)
		ctx.uploads[up] = nil
		if ok then
			note(ctx, c, repository, d, "pushed")
		else
			ctx:log("%s: %s; sending it again from the spool", entry.path, why)
			c:cancel(repository, location)
			push.ensure_blob(ctx, c, repository, d, {file = ctx:path(record.file)})
		end
		if not record.kept then
			ctx.cache:remember(layer_id, record.diff_id, o.engine, o.level, d, record.out_size)
		end
	end
end

-- No settings: `--set` with this policy is a usage error.
push.settings = {}

function push.setup(ctx, settings)
	local o = ctx.options
	if not o.destination then
		raise("usage", "--policy push", "runs under `layersplit push ARCHIVE DEST`")
	end
	ctx.dest = push.parse(o.destination)
	ctx.format = o.format or "docker"
	if not push.media_types[ctx.format] then
		raise("usage", "--format " .. ctx.format, "expected docker or oci")
	end
	ctx.blobs, ctx.uploads, ctx.pushed, ctx.pulled = {}, {}, json.array(), {}
	ctx.cache = blobcache.open(o.cache)
	ctx.client = push.connect(ctx, ctx.dest)
	launchpad.setup(ctx, settings)
	ctx.store.on_layer = function(entry, kind, layer_id)
		return on_layer(ctx, entry, kind, layer_id)
	end
end

push.entry = launchpad.entry

-- Cancels the uploads still open (a failure or a signal ended the run).
function push.abort(ctx)
	for up, location in pairs(ctx.uploads or {}) do
		up:cancel()
		ctx.client:cancel(ctx.dest.repository, location)
	end
	ctx.uploads = {}
	if ctx.cache then
		ctx.cache:save()
	end
end

-- "example.com/team/app:1.0" -> "team/app", "1.0"; "ubuntu:22.04" ->
-- "ubuntu", "22.04" (no library/ added); a bare word such as "1.0" (an OCI
-- ref name) -> nil, "1.0".  The first component is a registry host, as
-- docker reads a reference, when it has a "." or ":", is "localhost" or
-- has an upper-case letter (a repository path has none).
function push.split_reference(reference)
	local name, tag = reference, nil
	local t = reference:match("[^/]*$"):match(":([%w_][%w_.-]*)$")
	if t then
		name, tag = reference:sub(1, #reference - #t - 1), t
	elseif not reference:find("/", 1, true) then
		return nil, reference
	end
	local first, rest = name:match("^([^/]+)/(.+)$")
	if first and (first:find("[.:]") or first == "localhost" or first:find("%u")) then
		name = rest
	end
	return name, tag or "latest"
end

-- The platform of an image, for an index entry.
local function platform_of(img)
	local p = type(img.platform) == "table" and img.platform or {}
	local config = json.decode(img.config) or {}
	local out = {}
	for _, key in ipairs({"architecture", "os", "variant", "os.version"}) do
		local v = p[key] or config[key]
		if type(v) == "string" and v ~= "" then
			out[key] = v
		end
	end
	return out
end

-- Where each image goes: one target per (repository, tag) with its images
-- (several: the platforms of one index).
function push.targets(ctx, images)
	local dest = ctx.dest
	local names, order = {}, {}
	for _, img in ipairs(images) do
		img.references = {}
		for _, reference in ipairs(img.repo_tags) do
			local name, tag = push.split_reference(reference)
			img.references[#img.references + 1] = {name = name, tag = tag}
			if name and not names[name] then
				names[name] = true
				order[#order + 1] = name
			end
		end
	end
	local prefix = #order > 1
	if prefix and dest.tag then
		raise("usage", "push " .. dest.text, string.format(
			"the archive holds %d images (%s): give DEST without a tag, as a prefix",
			#order, table.concat(order, ", ")))
	end
	local targets, by_key = {}, {}
	local function add(repository, tag, img)
		local key = repository .. ":" .. tag
		local t = by_key[key]
		if not t then
			t = {client = ctx.client, repository = repository, tag = tag, images = {}}
			by_key[key] = t
			targets[#targets + 1] = t
		end
		for _, other in ipairs(t.images) do
			if other == img then
				return
			end
		end
		t.images[#t.images + 1] = img
	end
	for i, img in ipairs(images) do
		local refs = img.references
		if dest.tag then
			add(dest.repository, dest.tag, img)
		elseif #refs == 0 then
			if prefix then
				raise("usage", "push " .. dest.text, string.format(
					"image %d has no name in the archive to push it under", i))
			end
			add(dest.repository, "latest", img)
		else
			for _, ref in ipairs(refs) do
				local repository = dest.repository
				if prefix then
					if not ref.name then
						raise("usage", "push " .. dest.text, string.format(
							"image %d has no repository name in the archive", i))
					end
					repository = dest.repository .. "/" .. ref.name
				end
				add(repository, ref.tag, img)
			end
		end
	end
	return targets
end

-- An image's manifest: bytes and media type.  pulled (default img.pulled):
-- the target registry's own blobs of the layers, by layer index.
function push.manifest(ctx, img, pulled_list)
	local types = push.media_types[ctx.format]
	local layers = json.array()
	pulled_list = pulled_list or img.pulled
	for i, record in ipairs(img.records) do
		local pulled = pulled_list and pulled_list[i]
		layers[i] = {mediaType = types.layer, digest = pulled and pulled.digest or "sha256:" .. record.digest,
			size = pulled and pulled.size or record.out_size}
	end
	return json.encode({
		schemaVersion = 2,
		mediaType = types.manifest,
		config = {mediaType = types.config, digest = "sha256:" .. digest.sha256_hex(img.config),
			size = #img.config},
		layers = layers,
	}), types.manifest
end

local function check_platforms(target)
	local seen = {}
	for _, img in ipairs(target.images) do
		local p = platform_of(img)
		local key = table.concat({p.os or "", p.architecture or "", p.variant or ""}, "/")
		if seen[key] then
			raise("usage", "push " .. target.repository .. ":" .. target.tag, string.format(
				"two images for one tag on the same platform (%s)", key))
		end
		seen[key] = true
	end
end

function push.finish(ctx)
	local store = ctx.store
	local images = store:images()
	for _, img in ipairs(images) do
		img.diff_ids, img.records = store:check_diff_ids(img)
	end
	if ctx.options.out then
		-- the contract files too, from the same spool
		launchpad.finish(ctx)
	end
	local targets = (ctx.targets or push.targets)(ctx, images)
	for _, t in ipairs(targets) do
		check_platforms(t)
	end
	-- Every blob first; manifests only once all are there.
	local report, layer_status = json.array(), {}
	for _, t in ipairs(targets) do
		t.pulled = {}
		for _, img in ipairs(t.images) do
			-- per target: another registry has its own blobs, or none
			t.pulled[img] = {}
			img.pulled = img.pulled or t.pulled[img] -- the first target's, for the report
			for i, record in ipairs(img.records) do
				local pulled = pulled_blob(ctx, t.client, t.repository, record.diff_id)
				if pulled then
					-- the registry's own blob of the layer goes in its manifest
					t.pulled[img][i] = pulled
					layer_status[record] = layer_status[record] or pulled.how
				else
					local d = "sha256:" .. record.digest
					local how = push.ensure_blob(ctx, t.client, t.repository, d,
						{file = ctx:path(record.file)})
					layer_status[record] = layer_status[record] or how
				end
			end
			push.ensure_blob(ctx, t.client, t.repository,
				"sha256:" .. digest.sha256_hex(img.config), {body = img.config})
		end
	end
	local types = push.media_types[ctx.format]
	for _, t in ipairs(targets) do
		local manifests = json.array()
		for _, img in ipairs(t.images) do
			local bytes, media_type = push.manifest(ctx, img, t.pulled[img])
			local d = "sha256:" .. digest.sha256_hex(bytes)
			if #t.images > 1 then
				t.client:put_manifest(t.repository, d, bytes, media_type, d)
				local entry = {mediaType = media_type, digest = d, size = #bytes,
					platform = platform_of(img)}
				manifests[#manifests + 1] = entry
			else
				t.client:put_manifest(t.repository, t.tag, bytes, media_type, d)
			end
			img.manifest_digest = d
		end
		local pushed = {repository = t.client.host .. "/" .. t.repository, tag = t.tag}
		if #t.images > 1 then
			local bytes = json.encode({schemaVersion = 2, mediaType = types.index,
				manifests = manifests})
			pushed.digest = "sha256:" .. digest.sha256_hex(bytes)
			pushed.media_type = types.index
			t.client:put_manifest(t.repository, t.tag, bytes, types.index, pushed.digest)
		else
			pushed.digest = t.images[1].manifest_digest
			pushed.media_type = types.manifest
		end
		ctx.pushed[#ctx.pushed + 1] = pushed
	end
	ctx.cache:save()
	-- For --json and the summary line.
	local counts, layers, bytes = {pushed = 0, skipped = 0, mounted = 0}, {}, 0
	for _, img in ipairs(images) do
		local list = json.array()
		for i, record in ipairs(img.records) do
			local how = layer_status[record]
			local pulled = img.pulled and img.pulled[i]
			list[i] = {layer_id = record.layer_id, diff_id = img.diff_ids[i],
				digest = pulled and pulled.digest or "sha256:" .. record.digest,
				size = pulled and pulled.size or record.out_size,
				uncompressed_size = record.size, status = how}
			if how and not layers[record] then
				layers[record] = true
				counts[how] = counts[how] + 1
				bytes = bytes + record.out_size
			end
		end
		report[#report + 1] = {config = "sha256:" .. digest.sha256_hex(img.config),
			manifest = img.manifest_digest, repo_tags = json.array(img.repo_tags), layers = list}
	end
	ctx.summary.images, ctx.summary.pushed = report, ctx.pushed
	ctx.summary.layers, ctx.summary.bytes_out = counts.pushed + counts.skipped + counts.mounted, bytes
	ctx.summary.layer_counts = counts
	ctx.summary.destination = ctx.options.destination
end

return push
