-- extract: the launchpad output, plus the files of each layer that match the
-- rules, under `extracted/<layer_id>/<path>` (every layer_id the output has);
-- or, with --set view=final, the image's final filesystem as its layers
-- compose it (whiteouts applied) under `extracted/<config-hex>/<path>`.
--
--   layersplit --policy extract --set paths='etc/os-release,**/*.spdx.json' IMAGE.tar OUT
--
-- Built on files-list's helpers: each layer's tar is read by a nested reader
-- in the same pass that compresses it, and a matching file streams from
-- that reader into a file in the staging directory (C to C, through
-- fs.tree, which keeps every name inside it).  Lua only decides.
--
-- Paths inside a layer are hostile input.  Absolute names and `..` never
-- get here (the reader refuses them); a name the file system refuses, or
-- that collides with what is there, is refused for that file only; a
-- symlink is never followed nor made: its target text is written to the file
-- `<path>.symlink`; a hard link to a file extracted before it in the same
-- layer is a copy of it (to one not extracted: refused); devices, FIFOs and
-- sockets are skipped; whiteout markers are never files.  `--verbose` names
-- every file refused and why; `--json` lists them per layer.
local digest = require "layersplit.digest"
local errors = require "layersplit.errors"
local files_list = require "layersplit.policies.files-list"
local fs = require "layersplit.fs"
local image = require "layersplit.image"
local json = require "layersplit.json"
local launchpad = require "layersplit.policies.launchpad"
local settings = require "layersplit.settings"

local check, raise = errors.check, errors.raise

local policy = {}

policy.settings = {
	{name = "paths", default = "etc/os-release,usr/lib/os-release", parse = settings.list,
		help = "globs of the paths to extract: * and ? within a name, ** across names, [a-z], \\* a literal *"},
	{name = "view", default = "layers", parse = settings.choice("layers", "final"),
		help = "layers: per layer, extracted/<layer_id>/; final: the image's files, extracted/<config-hex>/"},
	{name = "max_file_size", default = "16M", parse = settings.size,
		help = "a larger file is not extracted (listed under --verbose)"},
	{name = "max_files", default = "10000", parse = settings.count,
		help = "more files to extract than this rejects the archive"},
	{name = "max_total_size", default = "1G", parse = settings.size,
		help = "more bytes to extract than this rejects the archive"},
}

-- ---- globs ----

-- A glob as tokens: {lit =}, {one = true} (?), {star = true} (* within a
-- name), {any = true} (** elsewhere), {dirs = true} (**/: zero or more
-- whole directories), {set =, negate =} ([...], [!...]).
local function compile(glob)
	local tokens, i = {}, 1
	local function lit(c)
		local last = tokens[#tokens]
		if last and last.lit then
			last.lit = last.lit .. c
		else
			tokens[#tokens + 1] = {lit = c}
		end
	end
	while i <= #glob do
		local c = glob:sub(i, i)
		if c == "\\" and i < #glob then
			lit(glob:sub(i + 1, i + 1))
			i = i + 2
		elseif glob:sub(i, i + 1) == "**" then
			local at_start = i == 1 or glob:sub(i - 1, i - 1) == "/"
			i = i + 2
			while glob:sub(i, i) == "*" do
				i = i + 1
			end
			if at_start and glob:sub(i, i) == "/" then
				tokens[#tokens + 1] = {dirs = true}
				i = i + 1
			else
				tokens[#tokens + 1] = {any = true}
			end
		elseif c == "*" then
			tokens[#tokens + 1] = {star = true}
			i = i + 1
		elseif c == "?" then
			tokens[#tokens + 1] = {one = true}
			i = i + 1
		elseif c == "[" then
			local j, set = i + 1, {}
			local negate = glob:sub(j, j) == "!" or glob:sub(j, j) == "^"
			if negate then
				j = j + 1
			end
			local first = true
			while j <= #glob and (first or glob:sub(j, j) ~= "]") do
				local a = glob:sub(j, j)
				if a == "\\" and j < #glob then
					j = j + 1
					a = glob:sub(j, j)
				end
				if glob:sub(j + 1, j + 1) == "-" and j + 2 <= #glob and glob:sub(j + 2, j + 2) ~= "]" then
					set[#set + 1] = {a, glob:sub(j + 2, j + 2)}
					j = j + 3
				else
					set[#set + 1] = {a, a}
					j = j + 1
				end
				first = false
			end
			if j > #glob then
				return nil, "unclosed [ in " .. glob
			end
			tokens[#tokens + 1] = {set = set, negate = negate}
			i = j + 1
		else
			lit(c)
			i = i + 1
		end
	end
	return tokens
end

local function in_set(t, c)
	for _, range in ipairs(t.set) do
		if c >= range[1] and c <= range[2] then
			return not t.negate
		end
	end
	return t.negate
end

-- Whether path matches the tokens (memoized: no exponential backtracking).
local function match(tokens, s)
	local n, memo = #s, {}
	local function m(ti, si)
		local key = ti * (n + 2) + si
		if memo[key] ~= nil then
			return memo[key]
		end
		local t, r = tokens[ti], false
		if t == nil then
			r = si == n + 1
		elseif t.lit then
			r = s:sub(si, si + #t.lit - 1) == t.lit and m(ti + 1, si + #t.lit)
		elseif t.one or t.set then
			local c = s:sub(si, si)
			r = c ~= "" and c ~= "/" and (t.one or in_set(t, c)) and m(ti + 1, si + 1)
		elseif t.star then
			for j = si, n + 1 do
				if m(ti + 1, j) then
					r = true
					break
				elseif s:sub(j, j) == "/" then
					break
				end
			end
		elseif t.any then
			for j = si, n + 1 do
				if m(ti + 1, j) then
					r = true
					break
				end
			end
		else -- dirs: nothing, or up to and with a slash
			r = m(ti + 1, si)
			for j = si, n do
				if r then
					break
				end
				r = s:sub(j, j) == "/" and m(ti + 1, j + 1)
			end
		end
		memo[key] = r and true or false
		return memo[key]
	end
	return m(1, 1)
end

-- A function telling whether a layer path matches any of the globs.
function policy.matcher(globs)
	local literal, compiled = {}, {}
	for _, glob in ipairs(globs) do
		if not glob:find("[\\*?%[]") then
			literal[glob] = true
		else
			compiled[#compiled + 1] = check(compile(glob))
		end
	end
	return function(path)
		if literal[path] then
			return true
		end
		for _, tokens in ipairs(compiled) do
			if match(tokens, path) then
				return true
			end
		end
		return false
	end
end

-- ---- during the pass: one layer's tar ----

local function refuse(ctx, layer, state, path, why)
	state.refused[#state.refused + 1] = {path = path, why = why}
	ctx:log("%s: %s: not extracted: %s", layer, path, why)
end

-- Counts a file against the run's caps; over one, the archive is rejected.
local function count(ctx, layer, size)
	local x = ctx.extract
	x.files, x.bytes = x.files + 1, x.bytes + size
	if x.files > x.max_files then
		raise("archive", layer, string.format("more than %d files to extract "
			.. "(--set max_files=N raises the cap)", x.max_files))
	elseif x.bytes > x.max_total_size then
		raise("archive", layer, string.format("more than %d bytes to extract "
			.. "(--set max_total_size=SIZE raises the cap)", x.max_total_size))
	end
end

-- Makes one extracted file, `name` (its path inside the layer) under the
-- layer's staging directory: make(rel) creates it at rel (a name relative
-- to the stage) and returns true, or nil, message, class.  A name the tree
-- refuses ("entry") is refused for this file only.
local function place(ctx, layer, state, name, size, make)
	local x = ctx.extract
	local rel = state.dir .. "/" .. name
	local old = state.size_of[name]
	if old then
		-- a later entry of the same name wins, as in tar
		x.files, x.bytes = x.files - 1, x.bytes - old
		check(x.tree:remove(rel))
		state.size_of[name] = nil
	end
	count(ctx, layer, size)
	local ok, err, class = make(rel)
	if ok == nil and class == "entry" then
		x.files, x.bytes = x.files - 1, x.bytes - size
		if old then
			-- the earlier file is gone too (rare: one scan of the list)
			for i, n in ipairs(state.files) do
				if n == name then
					table.remove(state.files, i)
					break
				end
			end
		end
		refuse(ctx, layer, state, name, err:sub(#rel + 3))
		return
	end
	check(ok, err, class)
	if not old then -- a name replaced keeps its place in the list
		state.files[#state.files + 1] = name
	end
	state.size_of[name] = size
end

local function extract_entry(ctx, layer, state, reader, e, path)
	local tree = ctx.extract.tree
	if e.type == "file" then
		if (e.size or math.huge) > ctx.extract.max_file_size then
			refuse(ctx, layer, state, path, string.format("%s, over max_file_size (%d)",
				e.size and e.size .. " bytes" or "size unknown", ctx.extract.max_file_size))
			return
		end
		place(ctx, layer, state, path, e.size, function(rel)
			local w, err, class = tree:file(rel, e.size)
			if w == nil then
				return nil, err, class
			end
			check(reader:pipe(w)) -- C to C: the bytes never enter Lua
			return check(w:close())
		end)
	elseif e.type == "symlink" then
		-- never followed, never made: the link's text, as a file
		place(ctx, layer, state, path .. ".symlink", #e.target, function(rel)
			local w, err, class = tree:file(rel)
			if w == nil then
				return nil, err, class
			end
			check(w:write(e.target))
			return check(w:close())
		end)
	elseif e.type == "hardlink" then
		local target = fs.normalize(e.target)
		if target == nil or not state.size_of[target] then
			refuse(ctx, layer, state, path, "hard link to " .. e.target .. ", which is not extracted")
			return
		end
		place(ctx, layer, state, path, state.size_of[target], function(rel)
			return tree:copy(state.dir .. "/" .. target, rel)
		end)
	elseif e.type == "other" then
		refuse(ctx, layer, state, path, "a device, FIFO or socket: skipped")
	end
end

-- Reads one layer's tar (visit of files-list.visit_layers): extracts what
-- matches, and for view=final records every entry.
local function extract_layer(ctx, nested, entry)
	local x = ctx.extract
	x.staged = x.staged + 1
	-- files: the names extracted, in order; size_of: name -> bytes
	local state = {dir = string.format(".extract-%d", x.staged), files = {}, size_of = {},
		refused = {}, listing = x.final and {} or nil}
	check(fs.tree(ctx.stage, state.dir)):close()
	local layer = entry.path
	while true do
		local e, err, class = nested:next()
		if e == nil and err == nil then
			break
		elseif e == nil and class == "entry" then
			refuse(ctx, layer, state, err:match("^(.-): ") or err, err) -- unsafe name
		elseif e == nil then
			raise(class, layer, err)
		else
			local path = fs.normalize(e.path)
			if path and state.listing then
				state.listing[#state.listing + 1] = {path = path, type = e.type}
			end
			if path and e.type ~= "dir" and not image.whiteout(path) and x.match(path) then
				extract_entry(ctx, layer, state, nested, e, path)
			end
		end
	end
	return state, string.format("%d extracted", #state.files)
end

function policy.setup(ctx, values)
	launchpad.setup(ctx, values)
	ctx.extract = {
		match = policy.matcher(values.paths),
		final = values.view == "final",
		max_file_size = values.max_file_size,
		max_files = values.max_files,
		max_total_size = values.max_total_size,
		files = 0, bytes = 0, staged = 0,
		tree = check(fs.tree(ctx.stage)),
	}
	ctx.extract.state_of = files_list.visit_layers(ctx, function(nested, entry)
		return extract_layer(ctx, nested, entry)
	end)
end

policy.entry = launchpad.entry

-- ---- after the pass ----

-- The name a path of the final view has in a layer's staging directory.
local function stored_name(path, type)
	return type == "symlink" and path .. ".symlink" or path
end

-- view=layers: each layer's directory renamed to extracted/<layer_id>; a
-- layer under a second layer_id is copied there.
local function per_layer(ctx)
	local x, placed = ctx.extract, {}
	files_list.output_layers(ctx, function(layer_id, record, first)
		local state, dest = x.state_of[record], "extracted/" .. layer_id
		if first then
			check(x.tree:rename(state.dir, dest))
			placed[record] = dest
		else
			check(fs.tree(ctx.stage, dest)):close()
			for _, name in ipairs(state.files) do
				check(x.tree:copy(placed[record] .. "/" .. name, dest .. "/" .. name))
			end
		end
	end)
end

-- view=final: per image (by config), the files its final filesystem shows,
-- moved from the layer that wrote them; a file two images show is copied
-- for all but its last use.
local function final_view(ctx, images)
	local x, store = ctx.extract, ctx.store
	local moves, uses, done = {}, {}, {}
	for _, img in ipairs(images) do
		local hex = digest.sha256_hex(img.config)
		if not done[hex] then
			done[hex] = true
			local _, records = store:check_diff_ids(img)
			local listings = {}
			for i, record in ipairs(records) do
				listings[i] = x.state_of[record].listing
			end
			local view = image.final_view(listings)
			local paths = {}
			for path, v in pairs(view) do
				if v.type ~= "dir" then
					local state = x.state_of[records[v.layer]]
					local name = stored_name(path, v.type)
					if state.size_of[name] then
						paths[#paths + 1] = name
						local from = state.dir .. "/" .. name
						moves[#moves + 1] = {from = from, to = "extracted/" .. hex .. "/" .. name,
							hex = hex, layer_id = image.layer_id(img.layers[v.layer]) or records[v.layer].layer_id}
						uses[from] = (uses[from] or 0) + 1
					end
				end
			end
			check(fs.tree(ctx.stage, "extracted/" .. hex)):close()
		end
	end
	table.sort(moves, function(a, b) return a.to < b.to end)
	-- report[hex]: {path, layer_id} per file; by_layer[hex][layer_id]: paths
	local report, by_layer = {}, {}
	for _, mv in ipairs(moves) do
		uses[mv.from] = uses[mv.from] - 1
		if uses[mv.from] > 0 then
			check(x.tree:copy(mv.from, mv.to))
		else
			check(x.tree:rename(mv.from, mv.to))
		end
		local path = mv.to:sub(#("extracted/" .. mv.hex) + 2)
		report[mv.hex] = report[mv.hex] or json.array()
		table.insert(report[mv.hex], {path = path, layer_id = mv.layer_id})
		by_layer[mv.hex] = by_layer[mv.hex] or {}
		by_layer[mv.hex][mv.layer_id] = by_layer[mv.hex][mv.layer_id] or json.array()
		table.insert(by_layer[mv.hex][mv.layer_id], path)
	end
	return report, by_layer
end

function policy.finish(ctx)
	local x, store = ctx.extract, ctx.store
	launchpad.finish(ctx)
	check(fs.tree(ctx.stage, "extracted")):close()
	local images = store:images()
	local report, by_layer
	if x.final then
		report, by_layer = final_view(ctx, images)
	else
		per_layer(ctx)
	end
	for _, state in pairs(x.state_of) do
		check(x.tree:remove(state.dir)) -- what is left: layers no image uses, the final view's rest
	end
	-- --json: per layer the files extracted (for view=final: the ones the
	-- image shows from it) and refused; per image the final view's files
	for i, img in ipairs(ctx.summary.images) do
		local hex = digest.sha256_hex(images[i].config)
		for _, layer in ipairs(img.layers) do
			local state = x.state_of[store.files[layer.file]]
			if x.final then
				layer.extracted = (by_layer[hex] or {})[layer.layer_id] or json.array()
			else
				layer.extracted = json.array(table.move(state.files, 1, #state.files, 1, {}))
				table.sort(layer.extracted)
			end
			layer.refused = json.array(state.refused)
		end
		if x.final then
			img.extracted = report[hex] or json.array()
		end
	end
	ctx.summary.extracted_files, ctx.summary.extracted_bytes = x.files, x.bytes
	x.tree:close()
end

return policy
