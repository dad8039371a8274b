-- layersplit's C primitives and Lua runtime as modules for a plain lua5.4:
-- `require "layersplit"` gives the API the policies use.  Build in rocks/
-- (from the top directory, luarocks would also copy all of lua/ as modules):
--   cd rocks && luarocks --lua-version 5.4 make layersplit-scm-1.rockspec
-- With lua-cjson from the system (Debian's lua-cjson) add --deps-mode=none.
-- The objects are left beside the sources, so build in a copy of the tree
-- you don't mind (tests/test_rock.py builds in a temporary one).
-- Not in the rock: layersplit.cli, .host and .repl, which need the
-- layersplit binary's own Lua state.  The gzip writer has the zlib and
-- libdeflate engines only, as a rockspec cannot tell whether ISA-L is
-- installed; for it, add "LS_HAVE_ISAL" to defines and "isal" to the gzip
-- module's libraries.
rockspec_format = "3.0"
package = "layersplit"
version = "scm-1"
source = {
	url = "git+file://./layersplit",
}
description = {
	summary = "Splits container image archives into gzip layers, in one streaming pass",
	detailed = [[
A C core of streaming primitives (a libarchive reader, a block-parallel
single-member gzip writer, sha256, safe file operations) with a Lua runtime
that decides what each archive entry is: the modules behind the layersplit
tool, usable from any Lua 5.4 program.]],
}
dependencies = {
	"lua >= 5.4, < 5.5",
	"lua-cjson >= 2.1",
}
external_dependencies = {
	LIBARCHIVE = {header = "archive.h", library = "archive"},
	ZLIB = {header = "zlib.h", library = "z"},
	LIBDEFLATE = {header = "libdeflate.h", library = "deflate"},
	OPENSSL = {header = "openssl/evp.h", library = "crypto"},
	-- Debian keeps curl/curl.h in the multiarch include directory, which the
	-- compiler searches but luarocks does not: only the library is looked for.
	CURL = {library = "curl"},
}

-- The Makefile passes these as -D; src/ is never an include directory, so
-- <archive.h> is libarchive's and "archive.h" the module's own (found
-- beside the source file that includes it).
local defines = {"_GNU_SOURCE"}

local function c_module(sources, libraries)
	return {
		sources = sources,
		libraries = libraries,
		defines = defines,
		incdirs = {"$(LIBARCHIVE_INCDIR)", "$(ZLIB_INCDIR)", "$(LIBDEFLATE_INCDIR)",
			"$(OPENSSL_INCDIR)", "$(CURL_INCDIR)"},
		libdirs = {"$(LIBARCHIVE_LIBDIR)", "$(ZLIB_LIBDIR)", "$(LIBDEFLATE_LIBDIR)",
			"$(OPENSSL_LIBDIR)", "$(CURL_LIBDIR)"},
	}
end

build = {
	type = "builtin",
	modules = {
		["layersplit.archive"] = c_module(
			{"../src/archive.c", "../src/reader.c", "../src/sink.c"}, {"archive"}),
		["layersplit.digest"] = c_module(
			{"../src/digest.c", "../src/sink.c"}, {"crypto"}),
		["layersplit.fs"] = c_module(
			{"../src/fs.c", "../src/fstree.c", "../src/fswriter.c", "../src/stage.c", "../src/path.c", "../src/sink.c"}, {}),
		["layersplit.gzip"] = c_module(
			{"../src/gzip.c", "../src/gzwrite.c", "../src/gzpool.c", "../src/gzinflate.c",
			 "../src/deflate_zlib.c", "../src/deflate_libdeflate.c", "../src/deflate_isal.c",
			 "../src/digest.c", "../src/sink.c"},
			{"z", "deflate", "crypto", "pthread"}),
		["layersplit.registry"] = c_module(
			{"../src/registry.c", "../src/reghttp.c", "../src/regupload.c", "../src/sink.c"},
			{"curl", "crypto", "pthread"}),
		["layersplit.progress"] = c_module(
			{"../src/progress.c", "../src/archive.c", "../src/reader.c", "../src/sink.c"}, {"archive"}),

		["layersplit"] = "../lua/layersplit/init.lua",
		["layersplit.blobcache"] = "../lua/layersplit/blobcache.lua",
		["layersplit.client"] = "../lua/layersplit/client.lua",
		["layersplit.credentials"] = "../lua/layersplit/credentials.lua",
		["layersplit.driver"] = "../lua/layersplit/driver.lua",
		["layersplit.errors"] = "../lua/layersplit/errors.lua",
		["layersplit.image"] = "../lua/layersplit/image.lua",
		["layersplit.json"] = "../lua/layersplit/json.lua",
		["layersplit.overlay"] = "../lua/layersplit/overlay.lua",
		["layersplit.settings"] = "../lua/layersplit/settings.lua",
		["layersplit.policies.extract"] = "../lua/policies/extract.lua",
		["layersplit.policies.files-list"] = "../lua/policies/files-list.lua",
		["layersplit.policies.launchpad"] = "../lua/policies/launchpad.lua",
		["layersplit.policies.oci-layout"] = "../lua/policies/oci-layout.lua",
		["layersplit.policies.push"] = "../lua/policies/push.lua",
	},
}
