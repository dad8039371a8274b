/* digest.h: sha256 as a sink (Lua module layersplit.digest). */
#ifndef LS_DIGEST_H
#define LS_DIGEST_H

#include <stddef.h>
#include <lua.h>

#define LS_SHA256_LEN 32
#define LS_SHA256_HEXLEN 64

/* Writes the 64 lowercase hex digits of md and a terminating NUL to out. */
void ls_sha256_hex(const unsigned char md[LS_SHA256_LEN],
		   char out[LS_SHA256_HEXLEN + 1]);
/* sha256 of buf[0..len) as hex into out.  0, or -1 if OpenSSL failed. */
int ls_sha256_buf_hex(const void *buf, size_t len,
		      char out[LS_SHA256_HEXLEN + 1]);

int luaopen_layersplit_digest(lua_State *L);

#endif
