/* archive.h: layersplit.archive, the image archive read once as a stream. */
#ifndef LS_ARCHIVE_H
#define LS_ARCHIVE_H

#include <stdint.h>
#include <lua.h>

/* The input byte count of the reader at idx (raises if it is not one); any
 * thread may load it while the reader's userdata is alive. */
const _Atomic uint64_t *ls_archive_bytes_in(lua_State *L, int idx);

int luaopen_layersplit_archive(lua_State *L);

#endif
