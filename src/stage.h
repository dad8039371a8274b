/* stage.h: the staging half of layersplit.fs: the output is built in a
 * private directory beside outdir, then renamed into place or removed. */
#ifndef LS_STAGE_H
#define LS_STAGE_H

#include <lua.h>

/* Removes every staging directory that was created and not yet committed.
 * Never follows a symlink.  Safe to call repeatedly; not signal-safe, so the
 * host calls it once the data loop has stopped. */
void ls_fs_cleanup(void);

/* fs.stage(outdir), fs.commit(stage, outdir), fs.discard(stage), as listed
 * in the module table of fs.c. */
int ls_fs_stage(lua_State *L);
int ls_fs_commit(lua_State *L);
int ls_fs_discard(lua_State *L);

#endif
