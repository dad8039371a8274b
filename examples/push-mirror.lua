-- examples/push-mirror.lua: a push that also goes to a second registry, each
-- repository renamed there: DEST's path is replaced by the mirror's.  Layers
-- stream into DEST once; the mirror gets them from the spool (or mounts
-- them, or has them already), before any manifest is pushed anywhere.
--
--   layersplit push --policy examples/push-mirror.lua \
--       --set mirror=backup.example.com/mirror IMAGE.tar registry.example.com/team/app:1.0
local push = require "layersplit.policies.push"

local policy = {}

policy.settings = {
	{name = "mirror", help = "the second registry and path: HOST[:PORT]/PATH",
		parse = function(text) return text end},
}

function policy.setup(ctx, settings)
	if not settings.mirror then
		ctx:fail("usage", "--set mirror", "expected HOST[:PORT]/PATH")
	end
	push.setup(ctx, {})
	local mirror = push.parse(settings.mirror)
	local other = push.connect(ctx, mirror)
	ctx.targets = function(_, images)
		local targets = push.targets(ctx, images)
		for i = 1, #targets do
			local t = targets[i]
			local rest = t.repository:sub(#ctx.dest.repository + 1) -- "" or "/team/app"
			targets[#targets + 1] = {client = other, repository = mirror.repository .. rest,
				tag = t.tag, images = t.images}
		end
		return targets
	end
end

policy.entry = push.entry
policy.finish = push.finish
policy.abort = push.abort

return policy
