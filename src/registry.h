/* registry.h: layersplit.registry, an HTTP client for the registry API on
 * libcurl: a session and its requests (registry.c), the streaming blob
 * upload sink (regupload.c). */
#ifndef LS_REGISTRY_H
#define LS_REGISTRY_H

#include <lua.h>

struct ls_reg_session;

/* session:upload(url[, opts]) with the session at index 1. */
int ls_reg_upload(lua_State *L, struct ls_reg_session *s);
/* Registers the upload's metatable. */
void ls_reg_upload_meta(lua_State *L);

int luaopen_layersplit_registry(lua_State *L);

#endif
