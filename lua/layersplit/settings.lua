-- layersplit.settings: the `--set KEY=VALUE` settings a policy declares.
--
-- A policy that has a `settings` field of its own (not one it inherits
-- through a metatable) declares every key it takes:
--
--   policy.settings = {
--     {name = "max_file_size", default = "16M", help = "...", parse = settings.size},
--     {name = "paths", default = "", help = "...", parse = settings.list},
--   }
--
-- The driver then refuses a key not declared (a usage error listing the
-- known ones), a key given twice unless its parse function is a list, and a
-- value its parse function refuses; setup receives the parsed values, the
-- defaults parsed too.  A policy without the field receives every key as a
-- string, the last value of a key given twice.
local errors = require "layersplit.errors"

local settings = {}

local scale = {[""] = 1, k = 1 << 10, m = 1 << 20, g = 1 << 30, t = 1 << 40}

-- "16M" -> 16777216: a whole number of bytes with an optional K, M, G or T
-- suffix (powers of 1024).
function settings.size(text)
	local n, suffix = text:match("^(%d+)([KkMmGgTt]?)$")
	if not n then
		return nil, "expected a size such as 16M (bytes, or a K, M, G or T suffix)"
	end
	local bytes = (tonumber(n) + 0.0) * scale[suffix:lower()]
	local size = bytes <= 2 ^ 50 and math.tointeger(bytes)
	if not size then
		return nil, "too large"
	end
	return size
end

-- "10000" -> 10000: a whole number, 0 or more.
function settings.count(text)
	local n = text:match("^%d+$") and math.tointeger(tonumber(text))
	if not n then
		return nil, "expected a whole number"
	end
	return n
end

-- "a,b\,c" -> {"a", "b,c"}: comma-separated; `\,` is a comma inside an
-- item, any other backslash is kept as it is (in a glob, `\*` stays a
-- literal star); empty items are dropped.  A list may be given several
-- times: the items add up.
function settings.list(text)
	local items, item, i = {}, {}, 1
	while i <= #text do
		local c = text:sub(i, i)
		if c == "\\" and text:sub(i + 1, i + 1) == "," then
			item[#item + 1] = ","
			i = i + 1
		elseif c == "," then
			if #item > 0 then
				items[#items + 1] = table.concat(item)
			end
			item = {}
		else
			item[#item + 1] = c
		end
		i = i + 1
	end
	if #item > 0 then
		items[#items + 1] = table.concat(item)
	end
	return items
end

-- Marks list parsers: their settings may be given more than once.
local lists = setmetatable({[settings.list] = true}, {__mode = "k"})

function settings.is_list(parse)
	return lists[parse] == true
end

local booleans = {
	["true"] = true, yes = true, on = true, ["1"] = true,
	["false"] = false, no = false, off = false, ["0"] = false,
}

-- "yes"/"no", "true"/"false", "on"/"off", "1"/"0".
function settings.boolean(text)
	local value = booleans[text:lower()]
	if value == nil then
		return nil, "expected yes or no (true/false, on/off, 1/0)"
	end
	return value
end

-- A parse function accepting one of the given words.
function settings.choice(...)
	local words = {...}
	local allowed = {}
	for _, w in ipairs(words) do
		allowed[w] = true
	end
	return function(text)
		if allowed[text] then
			return text
		end
		return nil, "expected " .. table.concat(words, " or ")
	end
end

-- The text as it is.
function settings.string(text)
	return text
end

-- The declarations of a policy, checked; nil if it declares none.
function settings.declared(policy, name)
	local decls = rawget(policy, "settings")
	if decls == nil then
		return nil
	end
	local what = "policy " .. name .. " settings"
	if type(decls) ~= "table" then
		errors.raise("policy", what, "expected a list of {name =, default =, help =, parse =}")
	end
	local by_name = {}
	for i, d in ipairs(decls) do
		if type(d) ~= "table" or type(d.name) ~= "string" or not d.name:match("^[%w_%.%-]+$")
			or (d.parse ~= nil and type(d.parse) ~= "function")
			or (d.default ~= nil and type(d.default) ~= "string") then
			errors.raise("policy", string.format("%s item %d", what, i),
				"expected {name = KEY, default = TEXT, help = TEXT, parse = function}")
		end
		if by_name[d.name] then
			errors.raise("policy", what, d.name .. " declared twice")
		end
		by_name[d.name] = d
	end
	return decls, by_name
end

local function known_keys(decls)
	local names = {}
	for _, d in ipairs(decls) do
		names[#names + 1] = d.name
	end
	return #names > 0 and table.concat(names, ", ") or "none"
end

local function parse_value(d, text)
	local value, why = (d.parse or settings.string)(text)
	if value == nil then
		errors.raise("usage", "--set " .. d.name .. "=" .. text, why or "invalid value")
	end
	return value
end

-- The table setup receives.  given: a list of {key, value} pairs in command
-- line order (cli.parse keeps them in opts.setting_list).  For a policy that
-- declares nothing: every key, the last value of each.
function settings.resolve(policy, name, given)
	local decls, by_name = settings.declared(policy, name)
	local result = {}
	if decls == nil then
		for _, kv in ipairs(given) do
			result[kv[1]] = kv[2]
		end
		return result
	end
	local seen = {}
	for _, kv in ipairs(given) do
		local key, text = kv[1], kv[2]
		local d = by_name[key]
		if d == nil then
			errors.raise("usage", "--set " .. key, string.format(
				"unknown setting of policy %s (known: %s; see layersplit --policy %s --help)",
				name, known_keys(decls), name))
		end
		local value = parse_value(d, text)
		if seen[key] and not settings.is_list(d.parse) then
			errors.raise("usage", "--set " .. key, "given twice (only a list setting may repeat)")
		end
		if seen[key] then
			table.move(value, 1, #value, #result[key] + 1, result[key])
		else
			result[key] = value
		end
		seen[key] = true
	end
	for _, d in ipairs(decls) do
		if not seen[d.name] and d.default ~= nil then
			result[d.name] = parse_value(d, d.default)
		end
	end
	return result
end

-- What `layersplit --policy NAME --help` prints.
function settings.help(policy, name)
	local decls = settings.declared(policy, name)
	if decls == nil then
		return string.format("policy %s declares no settings: it receives every --set KEY=VALUE "
			.. "as a string\n", name)
	elseif #decls == 0 then
		return string.format("policy %s takes no settings\n", name)
	end
	local lines = {string.format("settings of policy %s (--set KEY=VALUE):", name)}
	local indent = string.rep(" ", 26)
	for _, d in ipairs(decls) do
		local key = "  " .. d.name .. "=" .. (d.default or "")
		local list = settings.is_list(d.parse) and " (a list: KEY=A,B or repeated)" or ""
		-- the help wrapped at 78 columns, beside the key or under it
		local line = #key <= 24 and key .. string.rep(" ", 26 - #key) or nil
		if line == nil then
			lines[#lines + 1] = key
			line = indent
		end
		for word in ((d.help or "") .. list):gmatch("%S+") do
			if #line + 1 + #word > 78 and #line > 26 then
				lines[#lines + 1] = line
				line = indent .. word
			else
				line = line .. (#line > 26 and " " or "") .. word
			end
		end
		lines[#lines + 1] = line
	end
	return table.concat(lines, "\n") .. "\n"
end

return settings
