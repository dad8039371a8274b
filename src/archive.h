/* archive.h: layersplit.archive, the image archive read once as a stream. */
#ifndef LS_ARCHIVE_H
#define LS_ARCHIVE_H

#include <lua.h>

int luaopen_layersplit_archive(lua_State *L);

#endif
