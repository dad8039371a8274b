-- examples/max-layer-size.lua: the launchpad output, but an image with a
-- layer larger than a limit is rejected (exit 1, nothing written).
--
--   layersplit --policy examples/max-layer-size.lua --set max_layer_size=100M IMAGE.tar OUT
local launchpad = require "layersplit.policies.launchpad"
local settings = require "layersplit.settings"

local policy = {}

-- What `--set` takes; `layersplit --policy examples/max-layer-size.lua --help`
-- prints it.  A bad size, an unknown key or a key given twice is a usage
-- error (exit 2) before anything is read.
policy.settings = {
	{name = "max_layer_size", default = "1G", parse = settings.size,
		help = "reject an image with a layer larger than this (uncompressed)"},
}

function policy.setup(ctx, values)
	ctx.max_layer_size = values.max_layer_size -- a number of bytes
	launchpad.setup(ctx, values)
end

function policy.entry(ctx, entry)
	local action = launchpad.entry(ctx, entry)
	-- The store's record of a layer it just streamed: its uncompressed size.
	local layer = ctx.store.blobs[entry.path]
	if layer and layer.size > ctx.max_layer_size then
		ctx:fail("archive", entry.path, string.format(
			"layer of %d bytes is over the limit of %d", layer.size, ctx.max_layer_size))
	end
	ctx:log("%s: %s", entry.path, action)
	return action
end

policy.finish = launchpad.finish

return policy
