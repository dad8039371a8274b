-- layersplit.errors: errors that reach the user as one line.
-- An error is a table {class=, message=}; the class picks the exit status:
-- "archive" 1 (input rejected), "entry" 1 (one entry refused: a reader goes
-- on after it), "usage" 2, "io" 3, "policy" 4, "signal".
local fs = require "layersplit.fs"

local errors = {}

-- tostring(s) with every byte that is not printable text (control
-- characters, invalid UTF-8, bidi controls, the backslash) as \ddd: the
-- one escaping for every message that may carry a name from the archive.
-- Error messages are escaped where they are printed, so a message is not
-- escaped when it is raised.
errors.printable = fs.printable

local Error = {}
Error.__index = Error
Error.__tostring = function(e) return e.message end

-- Raises an error of `class` whose message is `what: why`, or whichever of
-- the two is not nil.
function errors.raise(class, what, why)
	local message
	if what ~= nil and why ~= nil then
		message = errors.describe(what) .. ": " .. errors.describe(why)
	elseif what ~= nil or why ~= nil then
		message = errors.describe(what ~= nil and what or why)
	else
		message = "error (no message)"
	end
	error(setmetatable({class = class, message = message}, Error), 0)
end

-- Passes through the results of a primitive that follows the nil, message,
-- class convention, raising its failure as a layersplit error.
function errors.check(value, message, class, ...)
	if value == nil and message ~= nil then
		errors.raise(class or "io", message)
	end
	return value, message, class, ...
end

function errors.is_error(e)
	return getmetatable(e) == Error
end

local function scalar(v)
	if type(v) == "string" then
		return string.format("%q", #v > 60 and v:sub(1, 57) .. "..." or v):gsub("\\\n", "\\n")
	elseif type(v) == "number" or type(v) == "boolean" then
		return tostring(v)
	end
	return type(v) == "table" and "{...}" or type(v)
end

-- A value as one short line, for messages: a string as it is, a table with
-- __tostring through it, another table as {key = value, ...} (sorted, at
-- most 8 fields, nested tables as {...}), anything else by its type.
function errors.describe(v)
	if type(v) == "string" then
		return v
	elseif type(v) == "number" or type(v) == "boolean" or v == nil then
		return tostring(v)
	elseif type(v) ~= "table" then
		return type(v)
	end
	local mt = getmetatable(v)
	if type(mt) == "table" and mt.__tostring then
		local ok, text = pcall(tostring, v)
		if ok and type(text) == "string" then
			return text
		end
	end
	local keys = {}
	for k in pairs(v) do
		keys[#keys + 1] = k
	end
	table.sort(keys, function(a, b)
		if type(a) == type(b) and (type(a) == "string" or type(a) == "number") then
			return a < b
		end
		return type(a) < type(b)
	end)
	local parts = {}
	for i, k in ipairs(keys) do
		if i > 8 then
			parts[#parts + 1] = "..."
			break
		end
		local key = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or "[" .. scalar(k) .. "]"
		parts[#parts + 1] = key .. " = " .. scalar(v[k])
	end
	return "{" .. table.concat(parts, ", ") .. "}"
end

-- "file:line" of the innermost Lua function at or above stack level
-- `level` (of the caller), or nil.
function errors.where(level)
	level = (level or 1) + 1
	while true do
		local info = debug.getinfo(level, "Sl")
		if info == nil then
			return nil
		end
		if info.what ~= "C" and info.currentline and info.currentline > 0 then
			return info.short_src .. ":" .. info.currentline
		end
		level = level + 1
	end
end

return errors
