-- layersplit.errors: errors that reach the user as one line.
-- An error is a table {class=, message=}; the class picks the exit status:
-- "archive" 1 (input rejected), "usage" 2, "io" 3, "policy" 4, "signal".
local errors = {}

local Error = {}
Error.__index = Error
Error.__tostring = function(e) return e.message end

-- Raises an error of `class` whose message is `what: why` (or `what` alone).
function errors.raise(class, what, why)
	local message = why and (tostring(what) .. ": " .. tostring(why)) or tostring(what)
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

return errors
