/* digest.c: layersplit.digest, sha256 sinks over OpenSSL EVP. */
#include <stdint.h>
#include <string.h>

#include <lauxlib.h>
#include <openssl/evp.h>

#include "digest.h"
#include "sink.h"

#define DIGEST_MT "layersplit.digest.sha256"

struct digest {
	struct ls_sink sink; /* first: the userdata is a sink */
	EVP_MD_CTX *ctx;     /* NULL once finished: no more input */
	uint64_t size;
	int finished;        /* hex holds the result */
	const char *error;
	char hex[LS_SHA256_HEXLEN + 1];
};

void ls_sha256_hex(const unsigned char md[LS_SHA256_LEN],
		   char out[LS_SHA256_HEXLEN + 1])
{
	static const char digits[] = "0123456789abcdef";

	for (int i = 0; i < LS_SHA256_LEN; i++) {
		out[2 * i] = digits[md[i] >> 4];
		out[2 * i + 1] = digits[md[i] & 0x0f];
	}
	out[LS_SHA256_HEXLEN] = '\0';
}

int ls_sha256_buf_hex(const void *buf, size_t len,
		      char out[LS_SHA256_HEXLEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL) ||
	    mdlen != LS_SHA256_LEN)
		return -1;
	ls_sha256_hex(md, out);
	return 0;
}

static int digest_write(struct ls_sink *s, const void *buf, size_t len)
{
	struct digest *d = (struct digest *)s;

	if (d->ctx == NULL) {
		/* A policy wired a finished digest into a pipe. */
		d->error = "sha256: write after the digest was finished";
		return -1;
	}
	if (len > 0 && !EVP_DigestUpdate(d->ctx, buf, len)) {
		d->error = "sha256: EVP_DigestUpdate failed";
		return -1;
	}
	d->size += len;
	return 0;
}

static const char *digest_error(struct ls_sink *s)
{
	return ((struct digest *)s)->error;
}

static const char *digest_class(struct ls_sink *s)
{
	return LS_EIO;
}

static const struct ls_sink_ops digest_ops = {
	.write = digest_write,
	.error = digest_error,
	.class = digest_class,
};

/* Finishes the digest once; later calls keep the first outcome. */
static int digest_finish(struct digest *d)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (d->ctx == NULL)
		return d->finished ? 0 : -1;
	if (EVP_DigestFinal_ex(d->ctx, md, &mdlen) && mdlen == LS_SHA256_LEN) {
		ls_sha256_hex(md, d->hex);
		d->finished = 1;
	} else {
		d->error = "sha256: EVP_DigestFinal_ex failed";
	}
	EVP_MD_CTX_free(d->ctx);
	d->ctx = NULL;
	return d->finished ? 0 : -1;
}

static struct digest *checkdigest(lua_State *L)
{
	return luaL_checkudata(L, 1, DIGEST_MT);
}

static int l_sha256(lua_State *L)
{
	struct digest *d = lua_newuserdatauv(L, sizeof(*d), 0);

	/* Created empty and owned by Lua first, so a failure below leaks nothing. */
	memset(d, 0, sizeof(*d));
	d->sink.ops = &digest_ops;
	d->error = "sha256: no error";
	luaL_setmetatable(L, DIGEST_MT);
	d->ctx = EVP_MD_CTX_new();
	if (d->ctx == NULL)
		return luaL_error(L, "sha256: EVP_MD_CTX_new failed");
	if (!EVP_DigestInit_ex(d->ctx, EVP_sha256(), NULL))
		return luaL_error(L, "sha256: EVP_DigestInit_ex failed");
	return 1;
}

static int l_sha256_hex(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	char hex[LS_SHA256_HEXLEN + 1];

	if (ls_sha256_buf_hex(s, len, hex) != 0)
		return ls_fail(L, LS_EIO, "sha256: EVP_Digest failed");
	lua_pushstring(L, hex);
	return 1;
}

static int m_write(lua_State *L)
{
	struct digest *d = checkdigest(L);
	size_t len;
	const char *s = luaL_checklstring(L, 2, &len);

	if (d->ctx == NULL)
		return luaL_error(L, "attempt to write to a finished sha256 digest");
	if (digest_write(&d->sink, s, len) != 0)
		return ls_fail(L, LS_EIO, "%s", d->error);
	lua_settop(L, 1);
	return 1;
}

static int m_hex(lua_State *L)
{
	struct digest *d = checkdigest(L);

	if (digest_finish(d) != 0)
		return ls_fail(L, LS_EIO, "%s", d->error);
	lua_pushstring(L, d->hex);
	return 1;
}

static int m_size(lua_State *L)
{
	struct digest *d = checkdigest(L);

	lua_pushinteger(L, (lua_Integer)d->size);
	return 1;
}

/* :close(), __close and __gc: finishes the digest so hex() stays valid. */
static int m_close(lua_State *L)
{
	struct digest *d = checkdigest(L);

	if (digest_finish(d) != 0)
		return ls_fail(L, LS_EIO, "%s", d->error);
	lua_pushboolean(L, 1);
	return 1;
}

static int m_gc(lua_State *L)
{
	struct digest *d = checkdigest(L);

	if (d->ctx != NULL) {
		EVP_MD_CTX_free(d->ctx);
		d->ctx = NULL;
	}
	return 0;
}

static int m_tostring(lua_State *L)
{
	struct digest *d = checkdigest(L);

	if (d->finished)
		lua_pushfstring(L, "sha256 digest (%s)", d->hex);
	else
		lua_pushfstring(L, "sha256 digest (%p)", (void *)d);
	return 1;
}

static const luaL_Reg digest_methods[] = {
	{"write", m_write},
	{"hex", m_hex},
	{"size", m_size},
	{"close", m_close},
	{NULL, NULL},
};

static const luaL_Reg digest_meta[] = {
	{"__gc", m_gc},
	{"__close", m_close},
	{"__tostring", m_tostring},
	{"__index", NULL},
	{NULL, NULL},
};

static const luaL_Reg digest_funcs[] = {
	{"sha256", l_sha256},
	{"sha256_hex", l_sha256_hex},
	{NULL, NULL},
};

int luaopen_layersplit_digest(lua_State *L)
{
	if (luaL_newmetatable(L, DIGEST_MT)) {
		luaL_setfuncs(L, digest_meta, 0);
		luaL_newlibtable(L, digest_methods);
		luaL_setfuncs(L, digest_methods, 0);
		lua_setfield(L, -2, "__index");
		ls_marksink(L);
	}
	lua_pop(L, 1);
	luaL_newlib(L, digest_funcs);
	return 1;
}
