-- layersplit.blobcache: what earlier pushes learned, so that a layer whose
-- digest is only known after compressing it need not be sent again.
--
-- One JSON file, DIR/blob-info.json:
--   layers: "<diff_id> <engine> <level> <version>" -> {digest=, size=}
--   names:  layer_id (the archive's name for a layer) -> diff_id
--   repos:  "<host> <digest>" -> list of repositories holding the blob
-- A hit is only a guess: the registry is asked (HEAD) before a layer is
-- skipped, and the digest of the bytes actually made is checked after.
local fs = require "layersplit.fs"
local json = require "layersplit.json"
local registry = require "layersplit.registry"

local blobcache = {}

blobcache.max_repos = 16

local Cache = {}
Cache.__index = Cache

local function mkdir_p(dir)
	local path = dir:sub(1, 1) == "/" and "" or "."
	for part in dir:gmatch("[^/]+") do
		path = path .. "/" .. part
		if fs.kind(path) == nil then
			local ok = fs.mkdir(path)
			if not ok and fs.kind(path) ~= "dir" then
				return false
			end
		end
	end
	return fs.kind(dir) == "dir"
end

-- The default directory: ${XDG_CACHE_HOME:-~/.cache}/layersplit.
function blobcache.default_dir()
	local base = os.getenv("XDG_CACHE_HOME")
	if not base or base == "" then
		local home = os.getenv("HOME")
		if not home or home == "" then
			return nil
		end
		base = home .. "/.cache"
	end
	return base .. "/layersplit"
end

-- The cache in dir (nil: no cache, every lookup misses).  A missing or
-- unreadable file is an empty cache: the cache is never a reason to fail.
function blobcache.open(dir)
	local self = setmetatable({dir = dir, data = {layers = {}, names = {}, repos = {}}}, Cache)
	if not dir then
		return self
	end
	self.file = dir .. "/blob-info.json"
	local text = fs.kind(self.file) == "file" and fs.read_file(self.file, json.max_size)
	local doc = text and json.decode(text)
	if type(doc) == "table" then
		for _, key in ipairs({"layers", "names", "repos"}) do
			if type(doc[key]) == "table" then
				self.data[key] = doc[key]
			end
		end
	end
	return self
end

local function layer_key(diff_id, engine, level)
	return table.concat({diff_id, engine, tostring(level), registry.version}, " ")
end

-- The compressed digest ("sha256:...") and size an earlier push made of the
-- layer the archive names layer_id, with this engine and level; or nil.
function Cache:lookup(layer_id, engine, level)
	local diff_id = self.data.names[layer_id]
	local hit = diff_id and self.data.layers[layer_key(diff_id, engine, level)]
	if type(hit) == "table" and type(hit.digest) == "string" then
		return hit.digest, hit.size, diff_id
	end
	return nil
end

function Cache:remember(layer_id, diff_id, engine, level, digest, size)
	self.data.names[layer_id] = diff_id
	self.data.layers[layer_key(diff_id, engine, level)] = {digest = digest, size = size}
	self.dirty = true
end

-- Repositories of registry `registry` known to hold digest.
function Cache:repos(registry, digest)
	local list = self.data.repos[registry .. " " .. digest]
	return type(list) == "table" and list or {}
end

function Cache:add_repo(registry, digest, repository)
	local key = registry .. " " .. digest
	local list = self:repos(registry, digest)
	for _, r in ipairs(list) do
		if r == repository then
			return
		end
	end
	list = table.move(list, 1, #list, 1, {})
	table.insert(list, 1, repository)
	list[blobcache.max_repos + 1] = nil
	self.data.repos[key] = list
	self.dirty = true
end

-- Writes the file (whole, renamed into place); false when it can't, which
-- only costs the next run some uploads.
function Cache:save()
	if not self.dir or not self.dirty or not mkdir_p(self.dir) then
		return false
	end
	local tmp = string.format("%s.%d.tmp", self.file, math.random(1, 1 << 30))
	local f = io.open(tmp, "w")
	if not f then
		return false
	end
	local ok = f:write(json.encode(self.data)) and f:close()
	if not ok or not os.rename(tmp, self.file) then
		os.remove(tmp)
		return false
	end
	self.dirty = false
	return true
end

return blobcache
