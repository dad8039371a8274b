/* progress.h: a progress line on stderr (Lua module layersplit.progress). */
#ifndef LS_PROGRESS_H
#define LS_PROGRESS_H

#include <lua.h>

int luaopen_layersplit_progress(lua_State *L);

#endif
