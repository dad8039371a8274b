-- examples/configs-only.lua: just the image configs and an images.json that
-- says which tags and diff_ids each image has; layer data is skipped, so
-- this takes the time of reading the archive and nothing more.
--
--   layersplit --policy examples/configs-only.lua IMAGE.tar OUT
local digest = require "layersplit.digest"
local errors = require "layersplit.errors"
local fs = require "layersplit.fs"
local image = require "layersplit.image"
local json = require "layersplit.json"

local policy = {}

policy.settings = {} -- none: any --set is a usage error

function policy.setup(ctx)
	ctx.store = image.store(ctx)
end

-- Keep what is JSON (manifests, indexes, configs), follow links, skip the rest.
function policy.entry(ctx, entry)
	local store = ctx.store
	store:note(entry)
	if entry.type == "symlink" or entry.type == "hardlink" then
		return store:add_link(entry)
	elseif entry.type == "file" and image.sniff(ctx.reader:peek(512)) == "json" then
		return store:keep_document(entry)
	end
	return store:skip(entry)
end

function policy.finish(ctx)
	local images, written, configs = json.array(), {}, 0
	for _, img in ipairs(ctx.store:images()) do
		local name = digest.sha256_hex(img.config) .. ".json"
		if not written[name] then -- two images may share a config
			errors.check(fs.write_file(ctx:path(name), img.config))
			written[name] = true
			configs = configs + 1
		end
		local config = errors.check(json.decode(img.config))
		local rootfs = type(config) == "table" and config.rootfs or {}
		images[#images + 1] = {
			config = name,
			repo_tags = json.array(img.repo_tags),
			diff_ids = json.array(rootfs.diff_ids or {}),
		}
	end
	errors.check(fs.write_file(ctx:path("images.json"), json.encode(images) .. "\n"))
	-- What the run reports (stderr, --json): `images` is a list, one table
	-- per image; a field of the policy's own is passed through to --json.
	ctx.summary.images = images
	ctx.summary.configs_written = configs
end

return policy
