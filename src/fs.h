/* fs.h: files and the staging directory (Lua module layersplit.fs). */
#ifndef LS_FS_H
#define LS_FS_H

#include <stddef.h>
#include <stdint.h>
#include <lua.h>

#include "stage.h" /* ls_fs_cleanup, which the host calls */

/* Creates path exclusively (mode 0644, never through a symlink): an fd, or
 * -1 with errno set. */
int ls_fs_create(const char *path);
/* Writes all of buf, retrying partial writes and EINTR.  0, or -1 with
 * errno set (EINTR when ls_interrupted stopped it). */
int ls_fs_write_all(int fd, const void *buf, size_t len);

/* Copies the regular file in (described by st) into out: a reflink where
 * the file system can, else copy_file_range, else read and write.  0 or an
 * errno, *src_failed set when reading in failed. */
struct stat;
int ls_fs_copy_data(int in, int out, const struct stat *st, uint64_t *copied,
		    int *src_failed);

/* For the parts of the module in stage.c and fswriter.c: argument arg as a
 * path (raises if it is empty or has a NUL byte), and the failure
 * nil, "<path>: <strerror>", "io" ("signal" for EINTR after a signal). */
const char *ls_fs_checkpath(lua_State *L, int arg);
int ls_fs_fail_errno(lua_State *L, const char *path, int err);

int luaopen_layersplit_fs(lua_State *L);

#endif
