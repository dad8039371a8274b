-- layersplit.image: what an image archive holds, learned in one pass.
--
-- A store records, as entries stream past, the layer blobs it compressed
-- (by archive path), the small JSON documents it kept, and the links it
-- deferred.  After the pass it resolves links and reads the images from
-- manifest.json, or from index.json when there is none.  Policies decide
-- per entry which of these actions to take and shape the output.
local archive = require "layersplit.archive"
local digest = require "layersplit.digest"
local errors = require "layersplit.errors"
local fs = require "layersplit.fs"
local gzip = require "layersplit.gzip"
local json = require "layersplit.json"

local check, raise = errors.check, errors.raise

local image = {}

image.max_link_hops = 40
image.max_name = 255 -- NAME_MAX: an output file name longer than this can't exist
image.max_index_depth = 8

-- What a blob is, from its first bytes.
function image.sniff(head)
	if head:sub(1, 2) == "\x1f\x8b" then
		return "gzip"
	elseif head:sub(1, 4) == "\x28\xb5\x2f\xfd" then
		return "zstd"
	elseif head:sub(1, 6) == "\xfd7zXZ\0" then
		return "xz"
	elseif head:sub(1, 3) == "BZh" then
		return "bzip2"
	elseif head:sub(258, 262) == "ustar" then
		return "tar"
	elseif #head >= 512 and not head:sub(1, 512):find("[^\0]") then
		return "tar" -- an all-zero block: an empty tar
	elseif head:match("^%s*[{%[]") then
		return "json"
	end
	return "unknown"
end

local layer_kinds = {tar = true, gzip = true, zstd = true, xz = true, bzip2 = true}

function image.is_layer_kind(kind)
	return layer_kinds[kind] == true
end

-- The layer_id an archive path names: <dir>/layer.tar -> dir,
-- <name>.tar -> name, blobs/sha256/<hex> -> hex; nil for anything else.
function image.layer_id(path)
	return path:match("^([^/]+)/layer%.tar$")
		or path:match("^([^/]+)%.tar$")
		or path:match("^blobs/sha256/(%x+)$")
end

-- "sha256:<hex>" -> "blobs/sha256/<hex>", rejecting anything else.
function image.blob_path(descriptor_digest, what)
	local hex = type(descriptor_digest) == "string" and descriptor_digest:match("^sha256:(%x+)$")
	if not hex or #hex ~= 64 then
		raise("archive", what, "unsupported or malformed digest " .. tostring(descriptor_digest))
	end
	return "blobs/sha256/" .. hex
end

local Store = {}
Store.__index = Store

function image.store(ctx)
	return setmetatable({
		ctx = ctx,
		seen = {},    -- archive path -> entry type, for every entry
		docs = {},    -- archive path -> JSON text (or any small document)
		blobs = {},   -- archive path -> layer record
		links = {},   -- archive path -> {target = archive path, type = }
		files = {},   -- staged file name -> layer record written there
		placed = {},  -- staged file name -> true once part of the output
		count = 0,
	}, Store)
end

-- Every entry passes here first: duplicate names are rejected.
function Store:note(entry)
	local previous = self.seen[entry.path]
	if previous ~= nil and not (previous == "dir" and entry.type == "dir") then
		raise("archive", entry.path, "duplicate entry in archive")
	end
	self.seen[entry.path] = entry.type
end

function Store:skip(entry)
	self.ctx.reader:skip()
	if entry.type == "file" then
		self.ctx:log("%s: not needed, skipped", entry.path)
	end
	return "skip"
end

-- Keeps a small document (JSON, repositories) in memory.
function Store:keep_document(entry)
	self.docs[entry.path] = check(self.ctx.reader:read(json.max_size))
	return "document"
end

-- Records a symlink or hard link, resolved to an archive path; it is
-- followed after the pass, when every target has been seen.
function Store:add_link(entry)
	local target
	if entry.type == "hardlink" then
		target = check(fs.normalize(entry.target))
	else
		target = check(fs.resolve_link(entry.path, entry.target))
	end
	self.links[entry.path] = {target = target, type = entry.type}
	return "link"
end

-- A staging name no layer file can have: those all end in ".tar.gz".
local function temp_name(self)
	self.count = self.count + 1
	return string.format(".layer-%d.tmp", self.count)
end

local function staged_name(self, layer_id)
	local name = layer_id .. ".tar.gz"
	if self.files[name] or #name > image.max_name then
		return temp_name(self)
	end
	return name
end

-- Rewrites a kept gzip file that has several members as one member.
local function recompress(self, record)
	local old = record.file
	local name = temp_name(self)
	local r <close> = check(archive.open(self.ctx:path(old), {format = "raw"}))
	check(r:next())
	local w = self.ctx:gzip_writer(name)
	check(r:pipe(w))
	local result = check(w:close())
	r:close()
	check(fs.remove(self.ctx:path(old)))
	self.files[old] = nil
	record.file, record.digest, record.out_size = name, result.out_sha256, result.out_size
	record.kept = false
end

-- Pushes the rest of the current entry into the sinks; with `visit`, the data
-- is also read as a tar (decompressed as needed) by visit(nested reader), in
-- the same pass: every byte the nested reader consumes is teed into the sinks.
local function feed(reader, visit, ...)
	if not visit then
		check(reader:pipe(...))
		return
	end
	local nested <close> = check(reader:nested({format = "tar"}, ...))
	visit(nested)
	check(nested:close())
end

-- Streams the current entry, a layer blob of `kind`, into a gzip file in the
-- staging directory, hashing it on the way.  A single-member gzip blob is kept
-- byte for byte; anything else is compressed as one gzip member.  visit, if
-- given, reads the layer's own tar as it streams past (see feed).
local function stream_layer(self, entry, kind, visit)
	local ctx, reader = self.ctx, self.ctx.reader
	local layer_id = image.layer_id(entry.path)
	local name = staged_name(self, layer_id)
	local record = {path = entry.path, layer_id = layer_id, file = name, kind = kind}
	-- store.on_layer(entry, kind, layer_id), if set: more sinks for the
	-- layer's gzip bytes as they are written, and a function called with the
	-- finished record (record.streamed_digest: the digest of those bytes).
	local tee, done = {}, nil
	if self.on_layer then
		tee, done = self.on_layer(entry, kind, layer_id)
		tee = tee or {}
	end
	if kind == "tar" then
		local w = ctx:gzip_writer(name, tee)
		feed(reader, visit, w)
		local result = check(w:close())
		record.diff_id = "sha256:" .. result.in_sha256
		record.digest, record.size, record.out_size =
			result.out_sha256, result.in_size, result.out_size
		record.kept = false
	elseif kind == "gzip" then
		local file = check(fs.writer(ctx:path(name)))
		local compressed, uncompressed = digest.sha256(), digest.sha256()
		local inflater = gzip.inflater(uncompressed)
		feed(reader, visit, file, compressed, inflater, table.unpack(tee))
		record.out_size = check(file:close())
		local info = check(inflater:close())
		record.diff_id = "sha256:" .. uncompressed:hex()
		record.digest, record.size = compressed:hex(), info.out_size
		record.streamed_digest = record.digest
		record.kept = true
		self.files[name] = record
		if info.members ~= 1 then
			recompress(self, record)
		end
	else
		local nested <close> = check(reader:nested({format = "raw"}))
		check(nested:next())
		local w = ctx:gzip_writer(name, tee)
		feed(nested, visit, w)
		local result = check(w:close())
		check(nested:close())
		record.diff_id = "sha256:" .. result.in_sha256
		record.digest, record.size, record.out_size =
			result.out_sha256, result.in_size, result.out_size
		record.kept = false
	end
	self.files[record.file] = record
	self.blobs[entry.path] = record
	record.streamed_digest = record.streamed_digest or record.digest
	if done then
		done(record)
	end
	return "layer " .. kind .. (record.kept and ", kept" or ", compressed")
end

-- stream_layer, with the entry named in the input's faults (a corrupt gzip
-- blob reports from inside the inflater, which does not know the entry).
function Store:stream_layer(entry, kind, visit)
	local ok, result = xpcall(stream_layer, function(e)
		if errors.is_error(e) then
			if (e.class == "archive" or e.class == "entry") and e.message:sub(1, #entry.path + 2) ~= entry.path .. ": " then
				e.message = entry.path .. ": " .. e.message
			end
			e.traceback = e.traceback or debug.traceback(nil, 2)
		end
		return e
	end, self, entry, kind, visit)
	if not ok then
		error(result, 0)
	end
	return result
end

-- Follows links from an archive path to the entry that holds the data.
function Store:resolve(path, what)
	local hops, start = 0, path
	while self.links[path] do
		hops = hops + 1
		if hops > image.max_link_hops then
			raise("archive", start, string.format(
				"link loop (or a chain of more than %d links)", image.max_link_hops))
		end
		path = self.links[path].target
	end
	if self.seen[path] == nil then
		local why = start == path and "not found in archive" or "dangling link to " .. path
		if what then
			raise("archive", what, start .. ": " .. why)
		end
		raise("archive", start, why)
	end
	return path
end

-- Checks every link in the archive: none may dangle or loop.
function Store:check_links()
	local paths = {}
	for path in pairs(self.links) do
		paths[#paths + 1] = path
	end
	table.sort(paths)
	for _, path in ipairs(paths) do
		self:resolve(path)
	end
end

-- The text of a kept document, following links.
function Store:document(path, what)
	local text = self.docs[self:resolve(path, what)]
	if text == nil then
		raise("archive", what, path .. " is not a JSON document")
	end
	return text
end

function Store:decode(path, what)
	local value, err = json.decode(self:document(path, what))
	if value == nil then
		raise("archive", what or path, err)
	end
	return value
end

-- The layer record an archive path leads to.
function Store:layer(path, what)
	local target = self:resolve(path, what)
	local record = self.blobs[target]
	if record == nil then
		raise("archive", what, "layer " .. path .. " is not a tar, gzip or zstd blob")
	end
	return record
end

local function string_list(value, what)
	if value == nil or value == json.null then
		return {}
	end
	if type(value) ~= "table" then
		raise("archive", what, "expected a list of strings")
	end
	for i, s in ipairs(value) do
		if type(s) ~= "string" then
			raise("archive", what, string.format("item %d is not a string", i))
		end
	end
	return value
end

local function safe_path(path, what)
	if type(path) ~= "string" then
		raise("archive", what, "expected a path string")
	end
	local normalized, err = fs.normalize(path)
	if not normalized then
		raise("archive", what, err)
	end
	return normalized
end

-- Images from a legacy manifest.json: {config, config_path, repo_tags, layers}.
local function images_from_manifest(self)
	local manifest = self:decode("manifest.json", "manifest.json")
	if type(manifest) ~= "table" or (next(manifest) ~= nil and #manifest == 0) then
		raise("archive", "manifest.json", "expected a list of images")
	end
	local images = {}
	for i, section in ipairs(manifest) do
		local what = string.format("manifest.json image %d", i)
		if type(section) ~= "table" then
			raise("archive", what, "expected an object")
		end
		local config_path = safe_path(section.Config, what .. " Config")
		local layers = {}
		for j, layer in ipairs(string_list(section.Layers, what .. " Layers")) do
			layers[j] = safe_path(layer, what .. " Layers")
		end
		images[i] = {
			what = what,
			config_path = config_path,
			config = self:document(config_path, what .. " Config"),
			repo_tags = string_list(section.RepoTags, what .. " RepoTags"),
			layers = layers,
		}
	end
	return images
end

local index_types = {
	["application/vnd.oci.image.index.v1+json"] = true,
	["application/vnd.docker.distribution.manifest.list.v2+json"] = true,
}

local function repo_tags_from(annotations)
	local name = annotations["io.containerd.image.name"]
		or annotations["org.opencontainers.image.ref.name"]
	return type(name) == "string" and {name} or {}
end

-- Images reachable from index.json, nested indexes included.
local function images_from_index(self)
	local images = {}
	local function walk(index, what, annotations, depth)
		if depth > image.max_index_depth then
			raise("archive", what, "image indexes nested too deeply")
		end
		if type(index) ~= "table" or type(index.manifests) ~= "table" then
			raise("archive", what, "expected an image index with manifests")
		end
		for i, descriptor in ipairs(index.manifests) do
			local dwhat = string.format("%s manifest %d", what, i)
			if type(descriptor) ~= "table" then
				raise("archive", dwhat, "expected a descriptor")
			end
			local merged = setmetatable({}, {__index = annotations})
			if type(descriptor.annotations) == "table" then
				for k, v in pairs(descriptor.annotations) do
					merged[k] = v
				end
			end
			local path = image.blob_path(descriptor.digest, dwhat)
			local doc = self:decode(path, dwhat)
			if index_types[descriptor.mediaType] or (type(doc) == "table" and doc.manifests) then
				walk(doc, path, merged, depth + 1)
			else
				if type(doc) ~= "table" or type(doc.config) ~= "table" then
					raise("archive", path, "expected an image manifest")
				end
				local config_path = image.blob_path(doc.config.digest, path .. " config")
				local layers = {}
				for j, layer in ipairs(type(doc.layers) == "table" and doc.layers or {}) do
					layers[j] = image.blob_path(type(layer) == "table" and layer.digest,
						path .. " layer " .. j)
				end
				images[#images + 1] = {
					what = path,
					platform = type(descriptor.platform) == "table" and descriptor.platform or nil,
					config_path = config_path,
					config = self:document(config_path, path .. " config"),
					repo_tags = repo_tags_from(merged),
					layers = layers,
				}
			end
		end
	end
	walk(self:decode("index.json", "index.json"), "index.json", {}, 1)
	return images
end

-- The images in the archive, after the pass: from manifest.json if there is
-- one, else from index.json.
function Store:images()
	self:check_links()
	local images, source
	if self.seen["manifest.json"] then
		images, source = images_from_manifest(self), "manifest.json"
	elseif self.seen["index.json"] then
		images, source = images_from_index(self), "index.json"
	else
		raise("archive", self.ctx.input == "-" and "<stdin>" or self.ctx.input,
			"not an image archive: no manifest.json or index.json")
	end
	if #images == 0 then
		raise("archive", source, "lists no images")
	end
	return images
end

-- The config's rootfs.diff_ids, checked against the image's layers.
function Store:check_diff_ids(img)
	local what = "config " .. img.config_path
	local config, err = json.decode(img.config)
	if config == nil then
		raise("archive", what, err)
	end
	local rootfs = type(config) == "table" and config.rootfs
	local diff_ids = type(rootfs) == "table" and rootfs.diff_ids
	if type(diff_ids) ~= "table" then
		raise("archive", what, "no rootfs.diff_ids")
	end
	if #diff_ids ~= #img.layers then
		raise("archive", what, string.format(
			"%d diff_ids for %d layers", #diff_ids, #img.layers))
	end
	local records = {}
	for i, path in ipairs(img.layers) do
		local record = self:layer(path, img.what)
		if record.diff_id ~= diff_ids[i] then
			raise("archive", path, string.format(
				"diff_id mismatch: config says %s, the data is %s",
				tostring(diff_ids[i]), record.diff_id))
		end
		records[i] = record
	end
	return diff_ids, records
end

-- Makes the staged file `name` hold the layer: the file it was written to,
-- or a copy of it.
function Store:place(record, name)
	local existing = self.files[name]
	if #name > image.max_name then
		raise("archive", record.path, string.format(
			"layer file name too long (%d bytes, limit %d)", #name, image.max_name))
	end
	if existing == record or (existing and existing.digest == record.digest) then
		self.placed[name] = true
		return name
	elseif existing and self.placed[name] then
		raise("archive", name, "two different layers have the same layer_id")
	elseif existing then
		-- another layer was staged under this name: move it out of the way
		local moved = temp_name(self)
		check(fs.rename(self.ctx:path(name), self.ctx:path(moved)))
		existing.file, self.files[moved], self.files[name] = moved, existing, nil
	end
	check(fs.copy(self.ctx:path(record.file), self.ctx:path(name)))
	self.files[name] = record
	self.placed[name] = true
	return name
end

-- Writes a small file into the staging directory once.
function Store:write(name, text)
	if not self.placed[name] then
		check(fs.write_file(self.ctx:path(name), text))
		self.placed[name] = true
	end
end

-- Removes staged layer files that no image uses.
function Store:remove_unplaced()
	for name in pairs(self.files) do
		if not self.placed[name] then
			self.ctx:log("%s: no image uses this layer, not written", self.files[name].path)
			check(fs.remove(self.ctx:path(name)))
			self.files[name] = nil
		end
	end
end

-- Whiteouts and the final view of an image's layers (layersplit.overlay).
local overlay = require "layersplit.overlay"
image.whiteout, image.final_view = overlay.whiteout, overlay.final_view

return image
