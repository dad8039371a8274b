-- files-list: the launchpad output, plus `<layer_id>.files.json` beside each
-- `<layer_id>.tar.gz`: the entries of that layer's tar, in order, as a JSON
-- list of {"path", "type", "size", "mode"} objects ("target" too for links).
--
-- A site-style policy: it keeps launchpad's rules and adds one thing.  The
-- listing is read in the same pass that compresses the layer: the store hands
-- a nested reader over the layer's tar to `list`, and every byte that reader
-- consumes is teed into the layer's gzip writer (or, for a gzip blob kept as
-- it is, into its file and digests).  No layer is read twice or copied.
-- Its two helpers, `visit_layers` and `output_layers`, are what the extract
-- policy is built on too.
local errors = require "layersplit.errors"
local fs = require "layersplit.fs"
local json = require "layersplit.json"
local launchpad = require "layersplit.policies.launchpad"

local check = errors.check

local policy = {}

policy.settings = {} -- none

-- After launchpad.setup: every layer the store streams is also read as a
-- tar by visit(nested, entry), in the same pass.  visit returns a value to
-- keep and a note for the entry's --trace action.  Returns a table mapping
-- each layer record to the value kept for it.
function policy.visit_layers(ctx, visit)
	local results = {}
	local store = ctx.store
	local stream_layer = store.stream_layer
	function store:stream_layer(entry, kind)
		local result, note
		local action = stream_layer(self, entry, kind, function(nested)
			result, note = visit(nested, entry)
		end)
		results[self.blobs[entry.path]] = result
		return note and action .. ", " .. note or action
	end
	return results
end

-- After launchpad.finish: fn(layer_id, record, first) for each layer file of
-- the output, in name order.  What is left in the store's files is the
-- output, "<layer_id>.tar.gz"; first is false when the record came before
-- (the same layer under a second layer_id, a linked duplicate).
function policy.output_layers(ctx, fn)
	local store, names, seen = ctx.store, {}, {}
	for name in pairs(store.files) do
		names[#names + 1] = name
	end
	table.sort(names)
	for _, name in ipairs(names) do
		local record = store.files[name]
		fn(name:gsub("%.tar%.gz$", ""), record, not seen[record])
		seen[record] = true
	end
end

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
	local staged = 0
	-- launchpad decides what a layer is; each one it streams is also listed.
	ctx.listing_of = policy.visit_layers(ctx, function(nested, entry)
		staged = staged + 1
		local name = string.format(".files-%d.json", staged)
		local out <close> = check(fs.writer(ctx:path(name)))
		ctx:log("%s: %d entries listed", entry.path, list(nested, out))
		check(out:close())
		return name, "listed"
	end)
end

policy.entry = launchpad.entry

function policy.finish(ctx)
	launchpad.finish(ctx)
	local placed = {}
	policy.output_layers(ctx, function(layer_id, record, first)
		local listing = layer_id .. ".files.json"
		if first then
			check(fs.rename(ctx:path(ctx.listing_of[record]), ctx:path(listing)))
			placed[record] = listing
		else
			check(fs.copy(ctx:path(placed[record]), ctx:path(listing)))
		end
	end)
	for record, name in pairs(ctx.listing_of) do
		if not placed[record] then
			check(fs.remove(ctx:path(name))) -- the listing of a layer no image uses
		end
	end
end

return policy
