/* fswriter.h: fs.writer, a sink writing raw bytes to a new file. */
#ifndef LS_FSWRITER_H
#define LS_FSWRITER_H

#include <stdint.h>
#include <lua.h>

struct writer;

/* fs.writer(path), as listed in the module table of fs.c. */
int ls_fs_writer(lua_State *L);
/* A closed writer, named name in its messages, that takes at most max bytes
 * (UINT64_MAX: no limit; more fails the write, class "archive"), pushed on the stack;
 * ls_fs_writer_set_fd then gives it the file (which it closes from then on).
 * Making the userdata first means an allocation failure cannot leak the fd. */
struct writer *ls_fs_writer_push(lua_State *L, const char *name, uint64_t max);
void ls_fs_writer_set_fd(struct writer *w, int fd);
/* Registers the writer's metatable; luaopen_layersplit_fs calls it once. */
void ls_fs_writer_meta(lua_State *L);

#endif
