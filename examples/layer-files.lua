-- examples/layer-files.lua: for each layer blob in an image archive, its
-- sha256 and the files inside it, in one pass over the archive.  The nested
-- reader undoes the layer's compression (gzip, zstd, ...) and tees the bytes
-- it consumes, as stored, into the digest.
--
--   layersplit run examples/layer-files.lua IMAGE.tar
local archive = require "layersplit.archive"
local digest = require "layersplit.digest"
local errors = require "layersplit.errors"
local image = require "layersplit.image"

local check = errors.check

local reader <close> = check(archive.open(arg[1] or "-"))
while true do
	local entry = check(reader:next())
	if entry == nil then
		break
	end
	if entry.type == "file" and image.is_layer_kind(image.sniff(reader:peek(512))) then
		local sha = digest.sha256()
		local layer <close> = check(reader:nested({format = "tar"}, sha))
		local files = {}
		while true do
			local inner = check(layer:next())
			if inner == nil then
				break
			end
			files[#files + 1] = string.format("  %-8s %10d %s", inner.type, inner.size, inner.path)
		end
		-- close() feeds what the tar reader did not need (padding) to the tee
		check(layer:close())
		print(entry.path .. " sha256:" .. sha:hex())
		print(table.concat(files, "\n"))
	end
end
