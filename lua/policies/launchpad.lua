-- launchpad: the default policy.  Keeps the output contract of Launchpad's
-- OCI builder: <layer_id>.tar.gz per layer, the config as <sha256>.json, a
-- legacy manifest.json, digests.json (one {diff_id: {digest, source,
-- layer_id}} object per image) and repositories.
local errors = require "layersplit.errors"
local fs = require "layersplit.fs"
local image = require "layersplit.image"
local json = require "layersplit.json"

local policy = {}

-- No settings: `--set` with this policy is a usage error.
policy.settings = {}

function policy.setup(ctx)
	ctx.store = image.store(ctx)
end

-- Decides what an entry is from its name and first bytes: the JSON that says
-- which blob is what arrives after the blobs, in every producer's layout.
function policy.entry(ctx, entry)
	local store = ctx.store
	store:note(entry)
	if entry.type == "symlink" or entry.type == "hardlink" then
		return store:add_link(entry)
	elseif entry.type ~= "file" then
		return store:skip(entry)
	end
	local path = entry.path
	if path == "manifest.json" or path == "index.json" or path == "repositories"
		or path == "oci-layout" or path:match("^[^/]+%.json$") then
		return store:keep_document(entry)
	end
	if image.layer_id(path) then
		local kind = image.sniff(errors.check(ctx.reader:peek(512)))
		if image.is_layer_kind(kind) then
			return store:stream_layer(entry, kind)
		elseif kind == "json" then
			return store:keep_document(entry)
		end
	end
	return store:skip(entry)
end

-- Docker's v2metadata-by-diffid record for a layer: a layer pulled from a
-- registry keeps its registry digest and source repository.  The first
-- record is used; its Digest must be sha256:<64 lowercase hex>, else the
-- file is rejected (a digest in digests.json names the bytes of a layer).
function policy.v2metadata(dir, diff_id)
	local path = dir .. "/" .. diff_id:gsub("^sha256:", "")
	if fs.kind(path) ~= "file" then
		return nil
	end
	local text = errors.check(fs.read_file(path, 1 << 20))
	local records, err = json.decode(text)
	if records == nil then
		errors.raise("archive", path, err)
	end
	local first = type(records) == "table" and records[1]
	if type(first) ~= "table" or type(first.Digest) ~= "string" then
		return nil
	end
	if not first.Digest:match("^sha256:" .. ("[0-9a-f]"):rep(64) .. "$") then
		errors.raise("archive", path, "Digest is not sha256:<64 lowercase hex digits>")
	end
	local source = type(first.SourceRepository) == "string" and first.SourceRepository or ""
	return first.Digest, image.check_name(source, path .. " SourceRepository")
end

function policy.finish(ctx)
	local store = ctx.store
	local manifest, digests = json.array(), json.array()
	local layer_files, reported = {}, {}
	for _, img in ipairs(store:images()) do
		local config_name = store:document_hash(img.config_path) .. ".json"
		store:write(config_name, img.config)
		local diff_ids, records = store:check_diff_ids(img)
		local layers, map, report = json.array(), {}, json.array()
		for i, path in ipairs(img.layers) do
			local record = records[i]
			local layer_id = image.check_layer_id(image.layer_id(path) or record.layer_id, path)
			local file = store:place(record, layer_id .. ".tar.gz")
			layer_files[file] = record.out_size
			layers[i] = layer_id .. "/layer.tar"
			local entry = {digest = record.digest, source = "", layer_id = layer_id}
			-- For --json: what the run did with the layer.
			report[i] = {layer_id = layer_id, diff_id = diff_ids[i], digest = record.digest,
				file = file, compressed_size = record.out_size, uncompressed_size = record.size,
				kept = record.kept, stored_as = record.kind}
			if ctx.options.v2metadata then
				local d, source = policy.v2metadata(ctx.options.v2metadata, diff_ids[i])
				if d then
					entry.digest, entry.source = d, source
					report[i].registry_digest, report[i].source = d, source
				end
			end
			map[diff_ids[i]] = entry
		end
		manifest[#manifest + 1] = {
			Config = config_name,
			RepoTags = json.array(img.repo_tags),
			Layers = layers,
		}
		digests[#digests + 1] = map
		reported[#reported + 1] = {config = config_name,
			repo_tags = json.array(img.repo_tags), layers = report}
	end
	store:write("manifest.json", json.encode(manifest))
	store:write("digests.json", json.encode(digests))
	if store.docs["repositories"] then
		store:write("repositories", store.docs["repositories"])
	end
	store:remove_unplaced()
	local count, bytes = 0, 0
	for _, size in pairs(layer_files) do
		count, bytes = count + 1, bytes + size
	end
	ctx.summary.images, ctx.summary.layers, ctx.summary.bytes_out = reported, count, bytes
end

return policy
