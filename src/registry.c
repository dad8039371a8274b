/* registry.c: layersplit.registry, the Lua side of the registry client: a
 * session and its requests.  The registry API itself (paths, auth, retries)
 * is Lua (lua/layersplit/push.lua); this moves the bytes. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/evp.h>

#include <lauxlib.h>

#include "registry.h"
#include "reghttp.h"
#include "sink.h"

#ifndef LS_VERSION
#define LS_VERSION "scm" /* the rock: the Makefile defines it */
#endif

#define SESSION_MT "layersplit.registry.session"
#define MAX_BODY (4 << 20) /* a manifest's limit in the distribution spec */

struct session {
	struct ls_reg_session *s; /* NULL once closed */
};

static struct ls_reg_session *check_session(lua_State *L)
{
	struct session *u = luaL_checkudata(L, 1, SESSION_MT);

	if (u->s == NULL)
		luaL_error(L, "attempt to use a closed registry session");
	return u->s;
}

static char *join_path(const char *dir, const char *name)
{
	char *p = malloc(strlen(dir) + strlen(name) + 2);

	if (p != NULL)
		sprintf(p, "%s/%s", dir, name);
	return p;
}

static int has_suffix(const char *name, const char *suffix)
{
	size_t n = strlen(name), k = strlen(suffix);

	return n > k && strcmp(name + n - k, suffix) == 0;
}

/* As skopeo reads --cert-dir: *.crt are CA certificates (the first in name
 * order), NAME.cert with NAME.key a client certificate. */
static int read_cert_dir(lua_State *L, struct ls_reg_session *s, const char *dir)
{
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort);

	if (n < 0)
		return luaL_error(L, "%s: %s", dir, strerror(errno));
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;

		if (s->cainfo == NULL && has_suffix(name, ".crt")) {
			s->cainfo = join_path(dir, name);
		} else if (s->sslcert == NULL && has_suffix(name, ".cert")) {
			s->sslcert = join_path(dir, name);
			s->sslkey = join_path(dir, name);
			if (s->sslkey != NULL)
				strcpy(s->sslkey + strlen(s->sslkey) - 4, "key");
		}
	}
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return 0;
}

static long opt_seconds(lua_State *L, const char *key, long def)
{
	lua_Integer v;

	lua_getfield(L, 1, key);
	v = luaL_optinteger(L, -1, def);
	lua_pop(L, 1);
	luaL_argcheck(L, v >= 0 && v <= 86400, 1, key);
	return (long)v;
}

/* registry.session{tls_verify=, cert_dir=, connect_timeout=, low_speed_time=,
 * trace=, user_agent=} */
static int l_session(lua_State *L)
{
	struct session *u;
	struct ls_reg_session *s;
	const char *cert_dir = NULL;

	if (lua_isnoneornil(L, 1))
		lua_newtable(L);
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	u = lua_newuserdatauv(L, sizeof(*u), 0);
	u->s = NULL;
	luaL_setmetatable(L, SESSION_MT);
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return ls_fail(L, LS_EIO, "registry: out of memory");
	atomic_init(&s->refs, 1);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&s->locks[i], NULL);
	u->s = s;
	lua_getfield(L, 1, "tls_verify");
	s->tls_verify = lua_isnil(L, -1) || lua_toboolean(L, -1);
	lua_getfield(L, 1, "trace");
	s->trace = lua_toboolean(L, -1);
	lua_getfield(L, 1, "user_agent");
	s->user_agent = strdup(luaL_optstring(L, -1, "layersplit/" LS_VERSION));
	lua_getfield(L, 1, "cert_dir");
	cert_dir = luaL_optstring(L, -1, NULL);
	lua_pop(L, 4);
	s->connect_timeout = opt_seconds(L, "connect_timeout", 30);
	s->low_speed_time = opt_seconds(L, "low_speed_time", 60);
	s->share = curl_share_init();
	s->easy = curl_easy_init();
	if (s->share == NULL || s->easy == NULL || s->user_agent == NULL)
		return ls_fail(L, LS_EIO, "registry: cannot start libcurl");
	curl_share_setopt(s->share, CURLSHOPT_LOCKFUNC, ls_reg_lock_share);
	curl_share_setopt(s->share, CURLSHOPT_UNLOCKFUNC, ls_reg_unlock_share);
	curl_share_setopt(s->share, CURLSHOPT_USERDATA, s);
	curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
	curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	if (cert_dir != NULL)
		read_cert_dir(L, s, cert_dir);
	return 1;
}

/* opts.headers: a list of "Name: value" lines, appended to list. */
static struct curl_slist *opt_headers(lua_State *L, int idx, struct curl_slist *list)
{
	if (lua_getfield(L, idx, "headers") == LUA_TTABLE) {
		for (lua_Integer i = 1; list != NULL && lua_geti(L, -1, i) == LUA_TSTRING; i++) {
			struct curl_slist *l = curl_slist_append(list, lua_tostring(L, -1));

			if (l == NULL)
				curl_slist_free_all(list);
			list = l;
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	return list;
}

/* The state of one request, owned by a to-be-closed userdata so that a Lua
 * error on the way cannot leak it. */
struct request {
	struct curl_slist *hdrs;
	struct ls_reg_response r;
	FILE *file;
};

static int request_gc(lua_State *L)
{
	struct request *q = lua_touserdata(L, 1);

	curl_slist_free_all(q->hdrs);
	q->hdrs = NULL;
	ls_reg_response_free(&q->r);
	if (q->file)
		fclose(q->file);
	q->file = NULL;
	return 0;
}

/* session:request(method, url[, opts]): opts.auth (the Authorization value,
 * never shown), opts.headers, opts.body (a string) or opts.file (a path),
 * opts.max_body.  The answer {status=, headers=, body=, location=}, or nil,
 * message, class when there was none (connection, timeout, signal). */
static int m_request(lua_State *L)
{
	struct ls_reg_session *s = check_session(L);
	const char *method = luaL_checkstring(L, 2);
	const char *url = luaL_checkstring(L, 3);
	const char *auth = NULL, *body = NULL, *file = NULL;
	size_t body_len = 0;
	struct request *q;
	struct stat st;
	CURLcode rc;
	char why[64];

	lua_settop(L, 4);
	if (lua_isnil(L, 4)) {
		lua_newtable(L);
		lua_replace(L, 4);
	}
	luaL_checktype(L, 4, LUA_TTABLE);
	lua_getfield(L, 4, "auth");
	auth = luaL_optstring(L, -1, NULL);
	lua_getfield(L, 4, "body");
	body = luaL_optlstring(L, -1, NULL, &body_len);
	lua_getfield(L, 4, "file");
	file = luaL_optstring(L, -1, NULL);
	lua_getfield(L, 4, "after_signal");
	s->after_signal = lua_toboolean(L, -1);
	lua_pop(L, 1);
	lua_getfield(L, 4, "max_body");
	q = lua_newuserdatauv(L, sizeof(*q), 0);
	memset(q, 0, sizeof(*q));
	q->r.max_body = (size_t)luaL_optinteger(L, -2, MAX_BODY);
	lua_newtable(L);
	lua_pushcfunction(L, request_gc);
	lua_setfield(L, -2, "__close");
	lua_setmetatable(L, -2);
	lua_toclose(L, -1);
	if ((q->hdrs = ls_reg_headers(NULL, auth)) == NULL ||
	    (q->hdrs = opt_headers(L, 4, q->hdrs)) == NULL)
		return ls_fail(L, LS_EIO, "registry: out of memory");
	curl_easy_reset(s->easy);
	ls_reg_setup(s, s->easy, method, url, &q->r, q->hdrs);
	if (file != NULL) {
		if ((q->file = fopen(file, "rb")) == NULL || fstat(fileno(q->file), &st) != 0)
			return ls_fail(L, LS_EIO, "%s: %s", file, strerror(errno));
		curl_easy_setopt(s->easy, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(s->easy, CURLOPT_READDATA, q->file);
		curl_easy_setopt(s->easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t)st.st_size);
	} else if (body != NULL || strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0 ||
		   strcmp(method, "PATCH") == 0) {
		curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
		curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, body ? body : "");
	}
	if (s->after_signal) {
		/* Best effort, and quick: the run is ending. */
		curl_easy_setopt(s->easy, CURLOPT_CONNECTTIMEOUT, 2L);
		curl_easy_setopt(s->easy, CURLOPT_TIMEOUT, 5L);
	}
	rc = curl_easy_perform(s->easy);
	s->after_signal = 0;
	curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &q->r.status);
	ls_reg_trace(s, method, url, q->r.status, rc == CURLE_OK ? NULL
		     : ls_reg_why(rc, &q->r, why, sizeof(why)));
	if (rc != CURLE_OK)
		return ls_reg_fail(L, rc, &q->r);
	ls_reg_push_response(L, &q->r, url);
	return 1;
}

static int m_upload(lua_State *L)
{
	return ls_reg_upload(L, check_session(L));
}

static int m_close(lua_State *L)
{
	struct session *u = luaL_checkudata(L, 1, SESSION_MT);

	if (u->s != NULL)
		ls_reg_session_release(u->s);
	u->s = NULL;
	return 0;
}

static int m_tostring(lua_State *L)
{
	struct session *u = luaL_checkudata(L, 1, SESSION_MT);

	lua_pushfstring(L, "registry session (%s)", u->s ? "open" : "closed");
	return 1;
}

/* Sets url on a new CURLU, then part (CURLUPART_URL resolves a relative
 * reference against it) with flags, and pushes the resulting URL; nil,
 * "<url>: <why>", "io" when libcurl refuses. */
static int push_url_edit(lua_State *L, const char *url, CURLUPart part, const char *value,
			 unsigned int flags)
{
	CURLU *u = curl_url();
	char *out = NULL;
	CURLUcode rc = CURLUE_OUT_OF_MEMORY;

	if (u != NULL && (rc = curl_url_set(u, CURLUPART_URL, url, 0)) == CURLUE_OK &&
	    (rc = curl_url_set(u, part, value, flags)) == CURLUE_OK)
		rc = curl_url_get(u, CURLUPART_URL, &out, 0);
	curl_url_cleanup(u);
	if (rc != CURLUE_OK)
		return ls_fail(L, LS_EIO, "%s: %s", part == CURLUPART_URL ? value : url,
			       curl_url_strerror(rc));
	lua_pushstring(L, out);
	curl_free(out);
	return 1;
}

/* registry.resolve(base, reference): reference (absolute, or relative as a
 * Location header may be) resolved against base. */
static int l_resolve(lua_State *L)
{
	return push_url_edit(L, luaL_checkstring(L, 1), CURLUPART_URL, luaL_checkstring(L, 2), 0);
}

/* registry.add_query(url, key, value): url with key=value (value
 * URL-encoded) appended to its query, the rest of it kept as it is. */
static int l_add_query(lua_State *L)
{
	const char *url = luaL_checkstring(L, 1);
	const char *part = lua_pushfstring(L, "%s=%s", luaL_checkstring(L, 2),
					   luaL_checkstring(L, 3));

	return push_url_edit(L, url, CURLUPART_QUERY, part, CURLU_APPENDQUERY | CURLU_URLENCODE);
}

/* registry.base64(s): s in base64, for Basic credentials. */
static int l_base64(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	luaL_Buffer b;
	char *out;
	int n;

	luaL_argcheck(L, len < (1 << 20), 1, "too long");
	out = luaL_buffinitsize(L, &b, 4 * ((len + 2) / 3) + 1);
	n = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)len);
	luaL_pushresultsize(&b, (size_t)n);
	return 1;
}

/* registry.unbase64(s): the bytes s encodes, or nil when it is not base64. */
static int l_unbase64(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	luaL_Buffer b;
	char *out;
	int n, pad = 0;

	luaL_argcheck(L, len < (1 << 20), 1, "too long");
	if (len % 4 != 0)
		return 0;
	while (pad < 2 && len > (size_t)pad && s[len - 1 - pad] == '=')
		pad++;
	out = luaL_buffinitsize(L, &b, 3 * (len / 4) + 1);
	n = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)s, (int)len);
	if (n < 0)
		return 0;
	luaL_pushresultsize(&b, (size_t)(n - pad));
	return 1;
}

/* registry.sleep(seconds): true, or nil, "interrupted", "signal" when a
 * signal came first. */
static int l_sleep(lua_State *L)
{
	double secs = luaL_checknumber(L, 1);
	struct timespec end, now;

	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += (time_t)secs;
	end.tv_nsec += (long)((secs - (double)(time_t)secs) * 1e9);
	if (end.tv_nsec >= 1000000000L) {
		end.tv_sec++;
		end.tv_nsec -= 1000000000L;
	}
	while (!ls_interrupted) {
		struct timespec step = {0, 50 * 1000 * 1000};

		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec)) {
			lua_pushboolean(L, 1);
			return 1;
		}
		nanosleep(&step, NULL);
	}
	return ls_fail(L, LS_ESIGNAL, "interrupted");
}

int luaopen_layersplit_registry(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"request", m_request}, {"upload", m_upload}, {"close", m_close}, {NULL, NULL},
	};
	static const luaL_Reg meta[] = {
		{"__gc", m_close}, {"__close", m_close}, {"__tostring", m_tostring}, {NULL, NULL},
	};
	static const luaL_Reg funcs[] = {
		{"session", l_session}, {"resolve", l_resolve}, {"add_query", l_add_query},
		{"base64", l_base64}, {"unbase64", l_unbase64}, {"sleep", l_sleep}, {NULL, NULL},
	};
	static int initialized;

	if (!initialized) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		initialized = 1;
	}
	if (luaL_newmetatable(L, SESSION_MT)) {
		luaL_setfuncs(L, meta, 0);
		luaL_newlibtable(L, methods);
		luaL_setfuncs(L, methods, 0);
		lua_setfield(L, -2, "__index");
	}
	lua_pop(L, 1);
	ls_reg_upload_meta(L);
	luaL_newlib(L, funcs);
	lua_pushstring(L, LS_VERSION);
	lua_setfield(L, -2, "version");
	return 1;
}
