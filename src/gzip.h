/* gzip.h: Lua module layersplit.gzip, parallel gzip writer and inflater sinks. */
#ifndef LS_GZIP_H
#define LS_GZIP_H

#include <lua.h>

int luaopen_layersplit_gzip(lua_State *L);

#endif
