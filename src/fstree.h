/* fstree.h: fs.tree (a directory inside a staging directory that no name
 * can escape), fs.remove_tree and fs.list. */
#ifndef LS_FSTREE_H
#define LS_FSTREE_H

#include <lua.h>

/* As listed in the module table of fs.c. */
int ls_fs_tree(lua_State *L);
int ls_fs_remove_tree(lua_State *L);
int ls_fs_list(lua_State *L);
/* Registers the tree's metatable; luaopen_layersplit_fs calls it once. */
void ls_fs_tree_meta(lua_State *L);

#endif
