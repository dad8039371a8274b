/* stage.h: the staging half of layersplit.fs: the output is built in a
 * private directory beside outdir, then renamed into place or removed. */
#ifndef LS_STAGE_H
#define LS_STAGE_H

#include <signal.h>
#include <lua.h>

/* Set by fs.commit just before the rename: from then on the output is in
 * place, and the host no longer turns a signal into an error. */
extern volatile sig_atomic_t ls_committed;

/* Removes every staging directory that was created and not yet committed.
 * Never follows a symlink.  Safe to call repeatedly; not signal-safe, so the
 * host calls it once the data loop has stopped. */
void ls_fs_cleanup(void);

/* fs.stage(outdir), fs.sync(stage), fs.commit(stage, outdir [, opts]),
 * fs.discard(stage), as listed in the module table of fs.c. */
int ls_fs_stage(lua_State *L);
int ls_fs_sync(lua_State *L);
int ls_fs_commit(lua_State *L);
int ls_fs_discard(lua_State *L);

/* An O_PATH fd of the uncommitted stage whose path (as fs.stage returned
 * it) is path, or -1 with errno set (ENOENT: no such stage). */
int ls_stage_dirfd(const char *path);

#endif
