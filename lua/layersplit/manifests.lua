-- layersplit.manifests: the images an archive lists, read after the pass
-- from what the store kept: manifest.json's sections, or the image manifests
-- index.json leads to.  Each image is {what, config_path, config, repo_tags,
-- layers, platform}; the caps are image.max_images and image.max_index_depth.
local errors = require "layersplit.errors"
local fs = require "layersplit.fs"
local image = require "layersplit.image"
local json = require "layersplit.json"

local raise = errors.raise

local manifests = {}

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

-- RepoTags and the like: strings that go into the output as they are.
local function name_list(value, what)
	local list = string_list(value, what)
	for i, s in ipairs(list) do
		image.check_name(s, string.format("%s item %d", what, i))
	end
	return list
end

local function too_many_images(what)
	raise("archive", what, string.format("more than %d images in one archive (the limit)",
		image.max_images))
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
function manifests.from_manifest(self)
	local manifest = self:decode("manifest.json", "manifest.json")
	if type(manifest) ~= "table" or (next(manifest) ~= nil and #manifest == 0) then
		raise("archive", "manifest.json", "expected a list of images")
	end
	local images = {}
	if #manifest > image.max_images then
		too_many_images("manifest.json")
	end
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
			repo_tags = name_list(section.RepoTags, what .. " RepoTags"),
			layers = layers,
		}
	end
	return images
end

local index_types = {
	["application/vnd.oci.image.index.v1+json"] = true,
	["application/vnd.docker.distribution.manifest.list.v2+json"] = true,
}

local function repo_tags_from(annotations, what)
	local name = annotations["io.containerd.image.name"]
		or annotations["org.opencontainers.image.ref.name"]
	return type(name) == "string" and {image.check_name(name, what .. " annotations")} or {}
end

-- Images reachable from index.json, nested indexes included.  Each nested
-- index is read once, through the first path that reaches it: indexes that
-- share children cost their size, not the number of paths.
function manifests.from_index(self)
	local images, walked = {}, {}
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
				if not walked[path] then
					walked[path] = true
					walk(doc, path, merged, depth + 1)
				end
			else
				if #images >= image.max_images then
					too_many_images("index.json")
				end
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
					repo_tags = repo_tags_from(merged, dwhat),
					layers = layers,
				}
			end
		end
	end
	walk(self:decode("index.json", "index.json"), "index.json", {}, 1)
	return images
end

return manifests
