/* fs.h: files and the staging directory (Lua module layersplit.fs). */
#ifndef LS_FS_H
#define LS_FS_H

#include <stddef.h>
#include <lua.h>

/* Class of a bad command line or output directory: exit 2.  sink.h lists
 * the classes the data path reports; this one only comes from fs.stage. */
#ifndef LS_EUSAGE
#define LS_EUSAGE "usage"
#endif

/* Removes every staging directory that was created and not yet committed.
 * Never follows a symlink.  Safe to call repeatedly; not signal-safe, so the
 * host calls it once the data loop has stopped. */
void ls_fs_cleanup(void);

/* Creates path exclusively (mode 0644, never through a symlink): an fd, or
 * -1 with errno set. */
int ls_fs_create(const char *path);
/* Writes all of buf, retrying partial writes and EINTR.  0, or -1 with
 * errno set (EINTR when ls_interrupted stopped it). */
int ls_fs_write_all(int fd, const void *buf, size_t len);

int luaopen_layersplit_fs(lua_State *L);

#endif
