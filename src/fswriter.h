/* fswriter.h: fs.writer, a sink writing raw bytes to a new file. */
#ifndef LS_FSWRITER_H
#define LS_FSWRITER_H

#include <lua.h>

/* fs.writer(path), as listed in the module table of fs.c. */
int ls_fs_writer(lua_State *L);
/* Registers the writer's metatable; luaopen_layersplit_fs calls it once. */
void ls_fs_writer_meta(lua_State *L);

#endif
