/* main.c: layersplit's entry point.  Everything past argument collection is
 * Lua (lua/layersplit/cli.lua), run under one protected call. */
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>

#include "fs.h"
#include "host.h"

#define DEFAULT_MAX_MEMORY ((size_t)256 << 20)

int main(int argc, char **argv)
{
	lua_State *L = ls_host_new(DEFAULT_MAX_MEMORY);
	int status = 0;

	if (L == NULL) {
		fputs("layersplit: cannot create the Lua state: out of memory\n", stderr);
		return 3;
	}
	ls_host_signals(L);
	lua_getglobal(L, "require");
	lua_pushstring(L, "layersplit.cli");
	if (ls_host_pcall(L, 1, 1) == LUA_OK) {
		lua_getfield(L, -1, "main");
		lua_createtable(L, argc, 0);
		for (int i = 1; i < argc; i++) {
			lua_pushstring(L, argv[i]);
			lua_rawseti(L, -2, i);
		}
		if (ls_host_pcall(L, 1, 1) == LUA_OK)
			status = (int)luaL_optinteger(L, -1, 0);
		else
			status = ls_host_report(L, -1);
	} else {
		status = ls_host_report(L, -1);
	}
	ls_fs_cleanup();
	ls_host_close(L);
	/* Once the output is committed no error is reported: what had to reach
	 * stdout was flushed before the commit. */
	if (fflush(stdout) != 0 && status == 0 && !ls_committed) {
		perror("layersplit: stdout");
		status = 3;
	}
	return status;
}
