/* host.h: the Lua state layersplit runs in. */
#ifndef LS_HOST_H
#define LS_HOST_H

#include <stddef.h>
#include <lua.h>

/* A fresh state: standard libraries, the C modules and the bundled Lua
 * modules in package.preload, the heap capped at max_memory bytes. */
lua_State *ls_host_new(size_t max_memory);
void ls_host_close(lua_State *L);

/* Calls the function below nargs arguments on the stack under lua_pcall
 * with the layersplit message handler.  On error the value left on the stack
 * is a table {class=, message=, traceback=}.  Returns the lua_pcall status. */
int ls_host_pcall(lua_State *L, int nargs, int nresults);

/* Exit status for an error table on top of the stack, after printing it. */
int ls_host_report(lua_State *L, int verbose);

/* Installs the handlers for SIGINT, SIGTERM, SIGHUP and SIGPIPE. */
void ls_host_signals(lua_State *L);

/* Module "layersplit.host": memory limit, verbosity, embedded sources. */
int luaopen_layersplit_host(lua_State *L);

#endif
