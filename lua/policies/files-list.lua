-- files-list: the launchpad output, plus `<layer_id>.files.json` beside each
-- `<layer_id>.tar.gz`: the entries of that layer's tar, in order, as a JSON
-- list of {"path", "type", "size", "mode"} objects ("target" too for links).
--
-- A site-style policy: it keeps launchpad's rules and adds one thing.  The
-- listing is read in the same pass that compresses the layer: the store hands
-- a nested reader over the layer's tar to `list`, and every byte that reader
-- consumes is teed into the layer's gzip writer (or, for a gzip blob kept as
-- it is, into its file and digests).  No layer is read twice or copied.
local errors = require "layersplit.errors"
local fs = require "layersplit.fs"
local json = require "layersplit.json"
local launchpad = require "layersplit.policies.launchpad"

local check = errors.check

local policy = {}

policy.settings = {} -- none

-- Writes one JSON object per entry of the layer's tar as it streams past.
-- Entry data is never read here: libarchive skips it, the tee still sees it.
local function list(reader, out)
	local count = 0
	check(out:write("["))
	while true do
		local entry = check(reader:next())
		if entry == nil then
			break
		end
		count = count + 1
		check(out:write((count == 1 and "\n" or ",\n") .. json.encode({
			path = entry.path,
			type = entry.type,
			size = entry.size or 0,
			mode = entry.mode,
			target = entry.target,
		})))
	end
	check(out:write(count == 0 and "]\n" or "\n]\n"))
	return count
end

function policy.setup(ctx, settings)
	launchpad.setup(ctx, settings)
	ctx.staged_lists = {} -- names of the listings written so far
	ctx.list_of = {}      -- layer record -> the name of its listing
	local store = ctx.store
	local stream_layer = store.stream_layer
	-- launchpad decides what a layer is; each one it streams is also listed.
	function store:stream_layer(entry, kind)
		local name = string.format(".files-%d.json", #ctx.staged_lists + 1)
		local out <close> = check(fs.writer(ctx:path(name)))
		local count
		local action = stream_layer(self, entry, kind, function(nested)
			count = list(nested, out)
		end)
		check(out:close())
		ctx.staged_lists[#ctx.staged_lists + 1] = name
		ctx.list_of[self.blobs[entry.path]] = name
		ctx:log("%s: %d entries listed", entry.path, count)
		return action .. ", listed"
	end
end

policy.entry = launchpad.entry

function policy.finish(ctx)
	launchpad.finish(ctx)
	-- What is left in the store's files is the output: "<layer_id>.tar.gz".
	local store, names, moved = ctx.store, {}, {}
	for name in pairs(store.files) do
		names[#names + 1] = name
	end
	table.sort(names)
	for _, name in ipairs(names) do
		local record = store.files[name]
		local listing = name:gsub("%.tar%.gz$", "") .. ".files.json"
		if moved[record] then
			-- the same layer under a second layer_id (a linked duplicate)
			check(fs.copy(ctx:path(moved[record]), ctx:path(listing)))
		else
			check(fs.rename(ctx:path(ctx.list_of[record]), ctx:path(listing)))
			moved[record] = listing
		end
	end
	for _, name in ipairs(ctx.staged_lists) do
		if fs.kind(ctx:path(name)) then
			check(fs.remove(ctx:path(name))) -- the listing of a layer no image uses
		end
	end
end

return policy
