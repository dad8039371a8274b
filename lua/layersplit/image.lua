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
-- Work stays proportional to the input: at most this many layer blobs are
-- staged, and this many images (manifest.json sections, or image manifests
-- reachable from index.json) are written, per archive.
image.max_layers = 10000
image.max_images = 10000
-- A layer's data, as it expands (decompressed, or a sparse entry's holes):
-- the default of --max-layer-size.
image.max_layer_size = 64 << 30
-- How many times its size a compressed layer blob may expand: gzip's own
-- maximum, so a small input cannot cost more than its gzip output would
-- (the default of --max-ratio).
image.max_ratio = 1032

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

-- Whether s is text JSON can carry as it is: valid UTF-8, no control character.
local function plain_text(s)
	return utf8.len(s) ~= nil and not s:find("%c")
end

-- A name the archive gives that goes into the output's JSON (a tag, a layer
-- id): valid UTF-8 without control characters, else rejected.
function image.check_name(s, what)
	if not plain_text(s) then
		raise("archive", what, "not valid UTF-8 text (control characters or invalid bytes)")
	end
	return s
end

-- A layer id names a file and a directory in manifest.json: a plain name.
function image.check_layer_id(id, what)
	if id == "." or id == ".." or id:find("/", 1, true) or not plain_text(id) then
		raise("archive", what, "layer id is not a plain name (no /, . or .., "
			.. "control characters or invalid UTF-8)")
	end
	return id
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
		decoded = {}, -- archive path of a document -> its decoded value
		hashes = {},  -- archive path of a document -> sha256 hex of its text
		count = 0,
		layer_count = 0,
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

-- A sparse entry's holes are data the archive does not hold: never a blob.
local function not_sparse(entry)
	if entry.sparse then
		raise("archive", entry.path, "sparse entry: a blob must be data the archive holds")
	end
end

-- The sha256 a blob's name claims: blobs/sha256/<hex> (OCI layouts).
local function claimed_digest(path)
	return path:match("^blobs/sha256/(.+)$")
end

-- A blob whose name is its digest must hash to it.
local function verify_blob(path, hex)
	local claimed = claimed_digest(path)
	if claimed and claimed ~= hex then
		raise("archive", path, "digest mismatch: the data is sha256:" .. hex)
	end
end

-- Keeps a small document (JSON, repositories) in memory.
function Store:keep_document(entry)
	not_sparse(entry)
	local text = check(self.ctx.reader:read(json.max_size))
	if claimed_digest(entry.path) then
		self.hashes[entry.path] = digest.sha256_hex(text)
		verify_blob(entry.path, self.hashes[entry.path])
	end
	self.docs[entry.path] = text
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
	if self.files[name] or #name > image.max_name or not plain_text(layer_id)
		or layer_id == "." or layer_id == ".." then
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
-- Decompressed data must be a tar: one compression layer, never two.
local function check_tar(head, kind)
	local inner = image.sniff(head)
	if inner ~= "tar" then
		raise("archive", kind .. " data", inner ~= "unknown" and inner ~= "json"
			and "nested compression (" .. inner .. " inside " .. kind .. ")"
			or "does not start with a tar header")
	end
end

local function stream_layer(self, entry, kind, visit)
	local ctx, reader = self.ctx, self.ctx.reader
	not_sparse(entry)
	self.layer_count = self.layer_count + 1
	if self.layer_count > image.max_layers then
		raise("archive", entry.path, string.format(
			"more than %d layer blobs in one archive (the limit)", image.max_layers))
	end
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
		verify_blob(entry.path, result.in_sha256)
		record.diff_id = "sha256:" .. result.in_sha256
		record.digest, record.size, record.out_size =
			result.out_sha256, result.in_size, result.out_size
		record.kept = false
	elseif kind == "gzip" then
		local file = ctx:file_writer(name)
		local compressed, uncompressed = digest.sha256(), digest.sha256()
		-- --max-layer-size stops the inflation itself, as the reader stops
		-- the other kinds' decompression (ctx's own fields are the policy's).
		local inflater = gzip.inflater(uncompressed, {max_size =
			ctx.options and ctx.options.max_layer_size or image.max_layer_size})
		feed(reader, visit, file, compressed, inflater, table.unpack(tee))
		record.out_size = check(file:close())
		local info = check(inflater:close())
		verify_blob(entry.path, compressed:hex())
		check_tar(info.head, kind)
		record.diff_id = "sha256:" .. uncompressed:hex()
		record.digest, record.size = compressed:hex(), info.out_size
		record.streamed_digest = record.digest
		record.kept = true
		self.files[name] = record
		-- Kept byte for byte only as exactly one member and nothing after it.
		if info.members ~= 1 or info.padding ~= 0 then
			recompress(self, record)
		end
	else
		local blob = digest.sha256()
		local nested <close> = check(reader:nested({format = "raw"}, blob))
		check(nested:next())
		check_tar(check(nested:peek(512)), kind)
		local w = ctx:gzip_writer(name, tee)
		feed(nested, visit, w)
		local result = check(w:close())
		check(nested:close())
		verify_blob(entry.path, blob:hex())
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

-- A document decoded once, however many images use it (keep the value
-- unchanged: it is shared).
function Store:decode(path, what)
	local text = self:document(path, what)
	local target = self:resolve(path, what)
	local value = self.decoded[target]
	if value == nil then
		local err
		value, err = json.decode(text)
		if value == nil then
			raise("archive", what or path, err)
		end
		self.decoded[target] = value
	end
	return value
end

-- The sha256 hex of a document's text, computed once.
function Store:document_hash(path, what)
	local target = self:resolve(path, what)
	local hex = self.hashes[target]
	if hex == nil then
		hex = digest.sha256_hex(self:document(path, what))
		self.hashes[target] = hex
	end
	return hex
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

-- The images in the archive, after the pass: from manifest.json if there is
-- one, else from index.json.
function Store:images()
	self:check_links()
	local images, source
	local manifests = require "layersplit.manifests"
	if self.seen["manifest.json"] then
		images, source = manifests.from_manifest(self), "manifest.json"
	elseif self.seen["index.json"] then
		images, source = manifests.from_index(self), "index.json"
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
	local config = self:decode(img.config_path, what)
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
