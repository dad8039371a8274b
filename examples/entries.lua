-- examples/entries.lua: lists an image archive's entries, like `tar tv`, with
-- what each file's first bytes say it is.  One pass, nothing extracted.
--
--   layersplit run examples/entries.lua IMAGE.tar
local archive = require "layersplit.archive"
local errors = require "layersplit.errors"
local image = require "layersplit.image"

local reader <close> = errors.check(archive.open(arg[1] or "-"))
while true do
	local entry, err, class = reader:next()
	if entry == nil and err == nil then
		break -- the end of the archive
	elseif entry == nil and class == "entry" then
		-- This entry was refused (an absolute name, a `..` component, a hard
		-- link to such a name); the stream is fine and the next call goes on.
		io.stderr:write("refused: ", err, "\n")
	elseif entry == nil then
		-- A damaged or truncated stream ("archive"), a read error ("io"):
		-- every later call would fail the same way.
		errors.raise(class, err)
	else
		local kind = ""
		if entry.type == "file" then
			kind = image.sniff(reader:peek(512)) -- tar, gzip, zstd, json, ...
		end
		local name = entry.path
		if entry.target then
			name = name .. " -> " .. entry.target
		end
		print(string.format("%-8s %04o %10d %-7s %s", entry.type, entry.mode,
			entry.size, kind, name))
	end
end
io.stderr:write(string.format("%d bytes read\n", reader:bytes_in()))
