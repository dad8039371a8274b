-- layersplit.overlay: an image's filesystem as its layers compose it,
-- whiteouts applied; the image module gives these as image.whiteout and
-- image.final_view.
local overlay = {}

-- OCI layers delete with markers (image-spec layer.md): an empty file
-- `<dir>/.wh.<name>` removes `<dir>/<name>` (and all below it) from the
-- layers under it, and `<dir>/.wh..wh..opq` hides everything under `<dir>`
-- that the layers under it hold.  A marker applies to lower layers only,
-- whatever its position in its own layer's tar.

local OPAQUE = ".wh..wh..opq"

-- What an archive path inside a layer is as a whiteout: "opaque", dir (""
-- for the root) for an opaque marker; "whiteout", path for `.wh.<name>`
-- (the path it deletes); nil for anything else.
function overlay.whiteout(path)
	local dir, base = path:match("^(.-)/?([^/]+)$")
	if base == nil then
		return nil
	elseif base == OPAQUE then
		return "opaque", dir
	end
	local name = base:match("^%.wh%.(.+)$")
	if name == nil or name:sub(1, 4) == ".wh." then
		return nil -- `.wh..wh.<other>`: reserved, not a whiteout
	end
	return "whiteout", dir == "" and name or dir .. "/" .. name
end

local function components(path)
	local parts = {}
	for part in path:gmatch("[^/]+") do
		if part ~= "." then
			parts[#parts + 1] = part
		end
	end
	return parts
end

-- The node for parts[1..n] under root; with `make`, made as directories of
-- layer i where missing or not directories.
local function node_at(root, parts, n, make, i)
	local node = root
	for k = 1, n do
		local kid = node.kids and node.kids[parts[k]]
		if kid == nil or (make and kid.type ~= "dir") then
			if not make then
				return nil
			end
			kid = {type = "dir", layer = i, kids = {}}
			node.kids = node.kids or {}
			node.kids[parts[k]] = kid
		end
		node = kid
	end
	return node
end

-- The final filesystem of an image: layers[i] (bottom first) is the list of
-- the entries of layer i's tar, each {path =, type =} as a reader gives
-- them.  Returns a table path -> {layer = i, type = t} for every path the
-- image's filesystem shows (directories too): the layer that last wrote it.
-- Deleted paths are absent; whiteout markers are not paths.
function overlay.final_view(layers)
	local root = {type = "dir", kids = {}}
	for i, entries in ipairs(layers) do
		-- markers first: they delete from the layers below only
		for _, e in ipairs(entries) do
			local kind, target = overlay.whiteout(e.path)
			if kind then
				local parts = components(target)
				if kind == "opaque" then
					local node = node_at(root, parts, #parts, false)
					if node and node.type == "dir" then
						node.kids = {}
					end
				elseif #parts > 0 then
					local parent = node_at(root, parts, #parts - 1, false)
					if parent and parent.kids then
						parent.kids[parts[#parts]] = nil
					end
				end
			end
		end
		for _, e in ipairs(entries) do
			local parts = components(e.path)
			if #parts > 0 and not overlay.whiteout(e.path) then
				local parent = node_at(root, parts, #parts - 1, true, i)
				local name = parts[#parts]
				local old = parent.kids[name]
				if e.type == "dir" and old and old.type == "dir" then
					old.layer = i
				elseif e.type == "dir" then
					parent.kids[name] = {type = "dir", layer = i, kids = {}}
				else
					parent.kids[name] = {type = e.type, layer = i}
				end
			end
		end
	end
	local view = {}
	local function walk(node, prefix)
		for name, kid in pairs(node.kids or {}) do
			local path = prefix == "" and name or prefix .. "/" .. name
			view[path] = {layer = kid.layer, type = kid.type}
			walk(kid, path)
		end
	end
	walk(root, "")
	return view
end

return overlay
