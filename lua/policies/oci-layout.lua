-- oci-layout: writes the images as an OCI image layout (image-spec 1.0):
-- `oci-layout`, `index.json` and `blobs/sha256/` holding each layer as gzip
-- (named by the digest of the compressed bytes), each config unchanged and
-- one image manifest per image.  `skopeo copy oci:OUTDIR:TAG ...` reads it.
--
-- Settings: --set ref_name=tag (default) names each index entry by the tag of
-- the image's reference, as `docker save` (>= 25) does, with the whole
-- reference in io.containerd.image.name; --set ref_name=reference uses the
-- whole reference ("example.com/app:1.0") as the name.
local digest = require "layersplit.digest"
local errors = require "layersplit.errors"
local fs = require "layersplit.fs"
local image = require "layersplit.image"
local json = require "layersplit.json"
local settings = require "layersplit.settings"

local check, raise = errors.check, errors.raise

local MANIFEST = "application/vnd.oci.image.manifest.v1+json"
local INDEX = "application/vnd.oci.image.index.v1+json"
local CONFIG = "application/vnd.oci.image.config.v1+json"
local LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
local REF_NAME = "org.opencontainers.image.ref.name"
local IMAGE_NAME = "io.containerd.image.name"

local policy = {}

policy.settings = {
	{name = "ref_name", default = "tag", parse = settings.choice("tag", "reference"),
		help = "index entries named by the tag, or by the whole reference"},
}

function policy.setup(ctx, values)
	ctx.ref_name = values.ref_name
	ctx.store = image.store(ctx)
end

-- The same per-entry decisions as the launchpad policy: layers are streamed
-- into gzip files as they pass, the JSON documents are kept for the end.
policy.entry = require("layersplit.policies.launchpad").entry

-- The tag of "name:tag" ("host:5000/name:tag" too); the whole string when it
-- has no tag, as an OCI archive's ref name may already be a bare tag.
local function tag_of(reference)
	return reference:match(":([%w_][%w_.-]*)$") or reference
end

-- Docker's familiar names in full: "ubuntu:22.04" -> "docker.io/library/ubuntu:22.04".
local function normalized(reference)
	local domain = reference:match("^([^/]+)/")
	if domain == nil then
		return "docker.io/library/" .. reference
	elseif domain:find("[.:]") or domain == "localhost" or domain:find("%u") then
		return reference
	end
	return "docker.io/" .. reference
end

-- The annotations of an index entry for one of the image's references.
local function annotations(ctx, reference)
	if ctx.ref_name == "reference" then
		return {[REF_NAME] = reference}
	end
	local tag = tag_of(reference)
	if tag == reference then
		return {[REF_NAME] = tag}
	end
	return {[REF_NAME] = tag, [IMAGE_NAME] = normalized(reference)}
end

-- The platform fields an index entry carries over from the archive's index.
local function platform_of(img)
	local p = img.platform
	if p == nil then
		return nil
	end
	local out = {}
	for _, key in ipairs({"architecture", "os", "variant", "os.version"}) do
		if type(p[key]) == "string" then
			out[key] = image.check_name(p[key], img.what .. " platform " .. key)
		end
	end
	return next(out) and out or nil
end

local function platform_key(platform)
	if platform == nil then
		return ""
	end
	return table.concat({platform.os or "", platform.architecture or "",
		platform.variant or "", platform["os.version"] or ""}, "/")
end

-- Files the image's manifest under the index entry for `reference`: images
-- of different platforms may share a name, other images may not.
local function add_named(ctx, slots, groups, descriptor, reference)
	local names = annotations(ctx, reference)
	local name = names[REF_NAME]
	local group = groups[name]
	if group == nil then
		group = {annotations = names, manifests = {}, references = {}}
		groups[name] = group
		slots[#slots + 1] = group
	end
	for i, other in ipairs(group.manifests) do
		if other.digest == descriptor.digest then
			return
		elseif platform_key(other.platform) == platform_key(descriptor.platform) then
			raise(ctx.ref_name == "tag" and "usage" or "archive", "oci-layout: ref name " .. name,
				string.format("names two images (%s and %s)%s", group.references[i], reference,
					ctx.ref_name == "tag" and "; use --set ref_name=reference" or ""))
		end
	end
	group.manifests[#group.manifests + 1] = descriptor
	group.references[#group.references + 1] = reference
end

function policy.finish(ctx)
	local store = ctx.store
	check(fs.mkdir(ctx:path("blobs")))
	check(fs.mkdir(ctx:path("blobs/sha256")))
	local written = {} -- hex -> true for every blob in blobs/sha256

	-- A small blob (config, manifest) as a file named by its digest.
	local function put(text, media_type, hex)
		hex = hex or digest.sha256_hex(text)
		if not written[hex] then
			check(fs.write_file(ctx:path("blobs/sha256/" .. hex), text))
			written[hex] = true
		end
		return {mediaType = media_type, digest = "sha256:" .. hex, size = #text}
	end

	local slots, groups, used, reported = {}, {}, {}, json.array()
	for _, img in ipairs(store:images()) do
		local diff_ids, records = store:check_diff_ids(img)
		local layers, report = json.array(), json.array()
		for i, record in ipairs(records) do
			layers[i] = {mediaType = LAYER, digest = "sha256:" .. record.digest,
				size = record.out_size}
			report[i] = {layer_id = image.check_layer_id(record.layer_id, record.path),
				diff_id = diff_ids[i],
				digest = record.digest, file = "blobs/sha256/" .. record.digest,
				compressed_size = record.out_size, uncompressed_size = record.size,
				kept = record.kept, stored_as = record.kind}
			used[record] = true
		end
		local config = put(img.config, CONFIG, store:document_hash(img.config_path))
		local descriptor = put(json.encode({
			schemaVersion = 2,
			mediaType = MANIFEST,
			config = config,
			layers = layers,
		}), MANIFEST)
		descriptor.platform = platform_of(img)
		-- For --json: what the run made of the image.
		reported[#reported + 1] = {manifest = descriptor.digest, config = config.digest,
			repo_tags = json.array(img.repo_tags), layers = report}
		if #img.repo_tags == 0 then
			slots[#slots + 1] = {manifests = {descriptor}}
		end
		for _, reference in ipairs(img.repo_tags) do
			add_named(ctx, slots, groups, descriptor, reference)
		end
	end

	-- One index entry per name: the manifest, or for several platforms under
	-- one name an image index of their manifests.
	local index = json.array()
	for _, slot in ipairs(slots) do
		local entry
		if #slot.manifests == 1 then
			local m = slot.manifests[1]
			entry = {mediaType = m.mediaType, digest = m.digest, size = m.size,
				platform = m.platform}
		else
			entry = put(json.encode({
				schemaVersion = 2,
				mediaType = INDEX,
				manifests = json.array(slot.manifests),
			}), INDEX)
		end
		entry.annotations = slot.annotations
		index[#index + 1] = entry
	end

	-- Each layer file the store staged becomes its blob: renamed, not copied.
	local names = {}
	for name in pairs(store.files) do
		names[#names + 1] = name
	end
	table.sort(names)
	local count, bytes = 0, 0
	for _, name in ipairs(names) do
		local record = store.files[name]
		if used[record] and not written[record.digest] then
			check(fs.rename(ctx:path(name), ctx:path("blobs/sha256/" .. record.digest)))
			written[record.digest] = true
			count, bytes = count + 1, bytes + record.out_size
		else
			check(fs.remove(ctx:path(name)))
		end
		store.files[name] = nil
	end

	check(fs.write_file(ctx:path("oci-layout"), json.encode({imageLayoutVersion = "1.0.0"})))
	check(fs.write_file(ctx:path("index.json"), json.encode({
		schemaVersion = 2,
		mediaType = INDEX,
		manifests = index,
	})))
	ctx.summary.images, ctx.summary.layers, ctx.summary.bytes_out = reported, count, bytes
end

return policy
