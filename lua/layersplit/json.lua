-- layersplit.json: lua-cjson with limits against hostile input, and an
-- encoder with sorted keys so the same data always gives the same bytes.
local cjson = require("cjson").new()

local json = {}

json.max_depth = 64
json.max_size = 16 * 1024 * 1024
json.null = cjson.null

cjson.decode_max_depth(json.max_depth)
cjson.encode_max_depth(json.max_depth)
cjson.decode_invalid_numbers(false)

local array_mt = {__name = "json.array"}

-- Marks a table as a JSON array, so an empty one encodes as [] not {}.
function json.array(t)
	return setmetatable(t or {}, array_mt)
end

function json.is_array(t)
	if getmetatable(t) == array_mt then
		return true
	end
	local n, count = #t, 0
	if n == 0 then
		return false
	end
	for _ in pairs(t) do
		count = count + 1
	end
	return count == n
end

-- Decodes a document: value, or nil, message, "archive".
function json.decode(text)
	if #text > json.max_size then
		return nil, string.format("JSON document too large (%d bytes, limit %d)",
			#text, json.max_size), "archive"
	end
	local ok, value = pcall(cjson.decode, text)
	if not ok then
		if value == "not enough memory" then
			error(value, 0) -- the heap limit, not the document, is at fault
		end
		value = tostring(value):gsub("^.-:%d+: ", "")
		if value:find("too many nested data structures", 1, true) then
			value = string.format("nested deeper than %d levels (%s)", json.max_depth, value)
		end
		return nil, "invalid JSON: " .. value, "archive"
	end
	return value
end

local function cjson_string(s)
	-- cjson escapes "/" as "\/"; valid JSON, but not what people write.
	return (cjson.encode(s):gsub("\\/", "/"))
end

-- Strings are written as valid UTF-8 always: a byte that is not part of a
-- UTF-8 sequence becomes \udc80-\udcff, the surrogate Python's
-- "surrogateescape" uses, so os.fsencode() gives the original bytes back.
local function encode_string(s)
	if utf8.len(s) then
		return cjson_string(s)
	end
	local parts, i = {}, 1
	while i <= #s do
		local ok, bad = utf8.len(s, i)
		if ok then
			parts[#parts + 1] = cjson_string(s:sub(i)):sub(2, -2)
			break
		end
		parts[#parts + 1] = cjson_string(s:sub(i, bad - 1)):sub(2, -2)
		parts[#parts + 1] = string.format("\\u%04x", 0xdc00 + s:byte(bad))
		i = bad + 1
	end
	return '"' .. table.concat(parts) .. '"'
end

local function encode(value, out, depth)
	if depth > json.max_depth then
		error("JSON value nested too deeply to encode", 0)
	end
	local t = type(value)
	if value == nil or value == cjson.null then
		out[#out + 1] = "null"
	elseif t == "boolean" then
		out[#out + 1] = tostring(value)
	elseif t == "number" then
		if math.type(value) == "integer" then
			out[#out + 1] = string.format("%d", value)
		else
			out[#out + 1] = cjson.encode(value)
		end
	elseif t == "string" then
		out[#out + 1] = encode_string(value)
	elseif t == "table" then
		if json.is_array(value) then
			out[#out + 1] = "["
			for i = 1, #value do
				if i > 1 then out[#out + 1] = ", " end
				encode(value[i], out, depth + 1)
			end
			out[#out + 1] = "]"
		else
			local keys = {}
			for k in pairs(value) do
				if type(k) ~= "string" then
					error("cannot encode a table with a " .. type(k) .. " key as JSON", 0)
				end
				keys[#keys + 1] = k
			end
			table.sort(keys)
			out[#out + 1] = "{"
			for i, k in ipairs(keys) do
				if i > 1 then out[#out + 1] = ", " end
				out[#out + 1] = encode_string(k)
				out[#out + 1] = ": "
				encode(value[k], out, depth + 1)
			end
			out[#out + 1] = "}"
		end
	else
		error("cannot encode a " .. t .. " value as JSON", 0)
	end
end

-- Encodes a value with sorted object keys and Python's default separators.
function json.encode(value)
	local out = {}
	encode(value, out, 0)
	return table.concat(out)
end

return json
