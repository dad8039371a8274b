-- layersplit's C primitives and Lua runtime as modules for a plain lua5.4:
-- `require "layersplit"` gives the API the policies use.  From the top of
-- the tree, as any rock:
--   luarocks --lua-version 5.4 make --tree TREE rocks/layersplit-scm-1.rockspec
-- ISAL=1 in the environment adds the ISA-L engine.  The build is
-- rocks/rock.mk: objects go to build/rock/, the sources stay clean.
-- lua-cjson is needed at run time: Debian's lua-cjson package, or
-- `luarocks install lua-cjson`.  It is not listed below, as luarocks does not
-- know the Debian package and would fetch a second copy.
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

build = {
	type = "make",
	makefile = "rocks/rock.mk",
	build_variables = {
		CFLAGS = "$(CFLAGS)",
		LIBFLAG = "$(LIBFLAG)",
		LUA_INCDIR = "$(LUA_INCDIR)",
		LIBARCHIVE_INCDIR = "$(LIBARCHIVE_INCDIR)",
		LIBARCHIVE_LIBDIR = "$(LIBARCHIVE_LIBDIR)",
		ZLIB_INCDIR = "$(ZLIB_INCDIR)",
		ZLIB_LIBDIR = "$(ZLIB_LIBDIR)",
		LIBDEFLATE_INCDIR = "$(LIBDEFLATE_INCDIR)",
		LIBDEFLATE_LIBDIR = "$(LIBDEFLATE_LIBDIR)",
		OPENSSL_INCDIR = "$(OPENSSL_INCDIR)",
		OPENSSL_LIBDIR = "$(OPENSSL_LIBDIR)",
		CURL_LIBDIR = "$(CURL_LIBDIR)",
	},
	install_variables = {
		INST_LIBDIR = "$(LIBDIR)",
		INST_LUADIR = "$(LUADIR)",
	},
	copy_directories = {},
}
