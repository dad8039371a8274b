-- examples/gzip.lua: compresses a file into one reproducible gzip member with
-- the parallel writer, then checks the result with the inflater.
--
--   layersplit run examples/gzip.lua FILE OUT.gz [LEVEL]
local archive = require "layersplit.archive"
local digest = require "layersplit.digest"
local errors = require "layersplit.errors"
local fs = require "layersplit.fs"
local gzip = require "layersplit.gzip"

local check = errors.check
local input, output = arg[1], arg[2]
if not input or not output then
	errors.raise("usage", "gzip.lua", "expected FILE OUT.gz [LEVEL]")
end

-- The "raw" format reads any file as one entry (undoing its compression, if
-- it has one), so the data streams from C to C without passing through Lua.
local reader <close> = check(archive.open(input, {format = "raw"}))
check(reader:next())
local writer = check(gzip.writer(output, {level = math.tointeger(arg[3]) or 6}))
check(reader:pipe(writer))
local result = check(writer:close())
print(string.format("%s: %d bytes, sha256 %s", input, result.in_size, result.in_sha256))
print(string.format("%s: %d bytes, sha256 %s", output, result.out_size, result.out_sha256))

-- Inflate it again: the inflater is a sink that pushes what it inflates into
-- its own sinks, here a digest.  Data can also be written from Lua.
local inflated = digest.sha256()
local inflater = gzip.inflater(inflated)
check(inflater:write(check(fs.read_file(output, 1 << 30))))
local info = check(inflater:close())
assert(info.members == 1 and info.out_size == result.in_size)
assert(inflated:hex() == result.in_sha256, "round trip changed the data")
print(string.format("%d gzip member, inflates to the same sha256", info.members))
