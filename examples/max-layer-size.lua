-- examples/max-layer-size.lua: the launchpad output, but an image with a
-- layer larger than a limit is rejected (exit 1, nothing written).
--
--   layersplit --policy examples/max-layer-size.lua --set max_layer_size=100M IMAGE.tar OUT
local launchpad = require "layersplit.policies.launchpad"

local policy = {}

local scale = {[""] = 1, K = 1 << 10, M = 1 << 20, G = 1 << 30}

function policy.setup(ctx, settings)
	local text = settings.max_layer_size or "1G"
	local n, suffix = text:match("^(%d+)([KMG]?)$")
	if not n then
		ctx:fail("usage", "--set max_layer_size=" .. text, "expected a size such as 100M")
	end
	ctx.max_layer_size = math.tointeger(n) * scale[suffix]
	launchpad.setup(ctx, settings)
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
