-- examples/site-extract.lua: a site's extraction rules on top of the extract
-- policy: the image's os-release and SBOMs as its final filesystem shows
-- them, and its documentation (licences, READMEs) unless `--set docs=no`.
--
--   layersplit --policy examples/site-extract.lua IMAGE.tar OUT
local extract = require "layersplit.policies.extract"
local settings = require "layersplit.settings"

local policy = {}

-- The site's own settings; `layersplit --policy examples/site-extract.lua
-- --help` lists them, and any other key is a usage error.
policy.settings = {
	{name = "docs", default = "yes", parse = settings.boolean,
		help = "also extract usr/share/doc (licences, READMEs)"},
	{name = "max_file_size", default = "4M", parse = settings.size,
		help = "a larger file is not extracted (listed under --verbose)"},
}

local ALWAYS = {"etc/os-release", "usr/lib/os-release", "**/*.spdx.json", "**/*.cdx.json"}
local DOCS = {"usr/share/doc/**"}

function policy.setup(ctx, values)
	local paths = table.move(ALWAYS, 1, #ALWAYS, 1, {})
	if values.docs then
		table.move(DOCS, 1, #DOCS, #paths + 1, paths)
	end
	-- extract's settings, as its parse functions give them
	extract.setup(ctx, {paths = paths, view = "final", max_file_size = values.max_file_size,
		max_files = 10000, max_total_size = 1 << 30})
end

policy.entry = extract.entry
policy.finish = extract.finish

return policy
