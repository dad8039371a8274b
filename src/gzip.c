/* gzip.c: layersplit.gzip, the parallel gzip writer and the inflater as sinks. */
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <libdeflate.h>
#include <zlib.h>
#ifdef LS_HAVE_ISAL
#include <isa-l.h>
#endif

#include "deflate.h"
#include "gzinflate.h"
#include "gzip.h"
#include "gzwrite.h"
#include "sink.h"

#define WRITER_MT "layersplit.gzip.writer"
#define INFLATER_MT "layersplit.gzip.inflater"
#define MAX_THREADS 256

/* The first is the default. */
static const struct ls_deflate_engine *const engines[] = {
	&ls_deflate_libdeflate,
	&ls_deflate_zlib,
#ifdef LS_HAVE_ISAL
	&ls_deflate_isal,
#endif
};
#define NENGINES ((int)(sizeof(engines) / sizeof(engines[0])))

/* Both userdata keep the outcome of close() in user value 1 (the result
 * table, or the failure message with its class in closed_class), so a
 * second close() answers the same. */
struct writer {
	struct ls_sink sink; /* first: the userdata is a sink */
	struct ls_gzwrite *gz; /* NULL once closed */
	int closed;
	const char *closed_class;
	int ntee;
	struct ls_sink *tee[]; /* opts.sinks, kept alive as user values 2..ntee+1 */
};

struct inflater {
	struct ls_sink sink; /* first: the userdata is a sink */
	struct ls_gzinflate *z; /* NULL once closed */
	int closed;
	const char *closed_class;
	int nsinks;
	struct ls_sink *sinks[]; /* kept alive as user values 2..nsinks+1 */
};

static const char closed_msg[] = "gzip: write to a closed sink";

static int writer_write(struct ls_sink *s, const void *buf, size_t len)
{
	struct writer *w = (struct writer *)s;

	return w->gz == NULL ? -1 : ls_gzwrite_write(w->gz, buf, len);
}

static const char *writer_error(struct ls_sink *s)
{
	struct writer *w = (struct writer *)s;

	return w->gz == NULL ? closed_msg : ls_gzwrite_error(w->gz);
}

static const char *writer_class(struct ls_sink *s)
{
	struct writer *w = (struct writer *)s;

	return w->gz == NULL ? LS_EIO : ls_gzwrite_class(w->gz);
}

static const struct ls_sink_ops writer_ops = {
	.write = writer_write,
	.error = writer_error,
	.class = writer_class,
};

static int inflater_write(struct ls_sink *s, const void *buf, size_t len)
{
	struct inflater *i = (struct inflater *)s;

	return i->z == NULL ? -1 : ls_gzinflate_write(i->z, buf, len);
}

static const char *inflater_error(struct ls_sink *s)
{
	struct inflater *i = (struct inflater *)s;

	return i->z == NULL ? closed_msg : ls_gzinflate_error(i->z);
}

static const char *inflater_class(struct ls_sink *s)
{
	struct inflater *i = (struct inflater *)s;

	return i->z == NULL ? LS_EIO : ls_gzinflate_class(i->z);
}

static const struct ls_sink_ops inflater_ops = {
	.write = inflater_write,
	.error = inflater_error,
	.class = inflater_class,
};

/* opts[key] as an integer in [lo, hi], or def when absent. */
static int opt_int(lua_State *L, const char *key, int def, int lo, int hi, const char *what)
{
	lua_Integer v;
	int isint;

	if (lua_isnoneornil(L, 2))
		return def;
	if (lua_getfield(L, 2, key) == LUA_TNIL) {
		lua_pop(L, 1);
		return def;
	}
	v = lua_tointegerx(L, -1, &isint);
	lua_pop(L, 1);
	if (!isint)
		return luaL_argerror(L, 2, lua_pushfstring(L, "opts.%s must be an integer", key));
	if (v < lo || v > hi)
		return luaL_argerror(L, 2, lua_pushfstring(L, "%s %I is out of range %d-%d",
							  what, v, lo, hi));
	return (int)v;
}

static int opt_bool(lua_State *L, const char *key)
{
	int v;

	if (lua_isnoneornil(L, 2))
		return 0;
	lua_getfield(L, 2, key);
	v = lua_toboolean(L, -1);
	lua_pop(L, 1);
	return v;
}

static const struct ls_deflate_engine *opt_engine(lua_State *L)
{
	const char *name = engines[0]->name;

	if (!lua_isnoneornil(L, 2)) {
		luaL_checktype(L, 2, LUA_TTABLE);
		if (lua_getfield(L, 2, "engine") != LUA_TNIL) {
			if (lua_type(L, -1) != LUA_TSTRING)
				luaL_argerror(L, 2, "opts.engine must be a string");
			name = lua_tostring(L, -1); /* stays on the stack: no dangling pointer */
		}
	}
	for (int i = 0; i < NENGINES; i++)
		if (strcmp(engines[i]->name, name) == 0)
			return engines[i];
	if (strcmp(name, "isal") == 0)
		luaL_argerror(L, 2, "engine isal is not built in (install libisal-dev and rebuild)");
	luaL_argerror(L, 2, lua_pushfstring(L, "unknown engine '%s'", name));
	return NULL;
}

/* opts.sinks: a list of sinks that also get the compressed bytes.  Leaves
 * the list (or an empty table) on the stack; returns its length. */
static int opt_sinks(lua_State *L)
{
	int n;

	if (lua_isnoneornil(L, 2)) {
		lua_newtable(L);
		return 0;
	}
	if (lua_getfield(L, 2, "sinks") == LUA_TNIL) {
		lua_pop(L, 1);
		lua_newtable(L);
		return 0;
	}
	if (!lua_istable(L, -1))
		luaL_argerror(L, 2, "opts.sinks must be a list of sinks");
	n = (int)luaL_len(L, -1);
	if (n < 0 || n > 16)
		luaL_argerror(L, 2, "opts.sinks: at most 16 sinks");
	for (int k = 1; k <= n; k++) {
		lua_geti(L, -1, k);
		if (ls_tosink(L, -1) == NULL)
			luaL_argerror(L, 2, lua_pushfstring(L, "opts.sinks[%d] is not a sink", k));
		lua_pop(L, 1);
	}
	return n;
}

/* CPUs this process may run on: a cpuset or taskset limits it below the
 * online count, and more workers than CPUs only cost memory. */
static int usable_cpus(void)
{
	cpu_set_t set;
	long n = 0;

	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		n = CPU_COUNT(&set);
	if (n < 1)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
}

static int l_writer(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	const struct ls_deflate_engine *eng = opt_engine(L);
	char what[32], err[512];
	int level, threads, ntee, cpus = usable_cpus();
	struct writer *w;

	snprintf(what, sizeof(what), "%s level", eng->name);
	level = opt_int(L, "level", eng->default_level, eng->min_level, eng->max_level, what);
	threads = opt_int(L, "threads", cpus, 1, MAX_THREADS, "threads");
	ntee = opt_sinks(L);
	w = lua_newuserdatauv(L, sizeof(*w) + (size_t)ntee * sizeof(w->tee[0]), 1 + ntee);
	/* Owned by Lua before the threads exist, so nothing leaks on error. */
	memset(w, 0, sizeof(*w));
	w->sink.ops = &writer_ops;
	luaL_setmetatable(L, WRITER_MT);
	for (int k = 1; k <= ntee; k++) {
		lua_geti(L, -2, k);
		w->tee[k - 1] = ls_tosink(L, -1);
		lua_setiuservalue(L, -2, k + 1);
	}
	w->ntee = ntee;
	w->gz = ls_gzwrite_open(path, eng, level, threads, err, sizeof(err));
	if (w->gz == NULL) {
		w->closed = 1;
		return ls_fail(L, LS_EIO, "%s", err);
	}
	if (ntee > 0)
		ls_gzwrite_tee(w->gz, w->tee, ntee);
	if (opt_bool(L, "writeback"))
		ls_gzwrite_writeback(w->gz, 1);
	return 1;
}

/* Pushes the stored outcome of an earlier close(). */
static int closed_result(lua_State *L, const char *class)
{
	if (lua_getiuservalue(L, 1, 1) == LUA_TTABLE)
		return 1;
	if (lua_type(L, -1) == LUA_TSTRING)
		return ls_fail(L, class, "%s", lua_tostring(L, -1));
	return ls_fail(L, LS_EIO, "gzip: already closed");
}

static int w_close(lua_State *L)
{
	struct writer *w = luaL_checkudata(L, 1, WRITER_MT);
	struct ls_gzwrite_result r;
	int rc;

	if (w->closed)
		return closed_result(L, w->closed_class);
	rc = ls_gzwrite_finish(w->gz, &r);
	w->closed = 1;
	if (rc != 0) {
		w->closed_class = ls_gzwrite_class(w->gz);
		lua_pushstring(L, ls_gzwrite_error(w->gz));
	} else {
		lua_createtable(L, 0, 4);
		lua_pushinteger(L, (lua_Integer)r.in_size);
		lua_setfield(L, -2, "in_size");
		lua_pushstring(L, r.in_sha256);
		lua_setfield(L, -2, "in_sha256");
		lua_pushinteger(L, (lua_Integer)r.out_size);
		lua_setfield(L, -2, "out_size");
		lua_pushstring(L, r.out_sha256);
		lua_setfield(L, -2, "out_sha256");
	}
	lua_setiuservalue(L, 1, 1);
	ls_gzwrite_free(w->gz);
	w->gz = NULL;
	return closed_result(L, w->closed_class);
}

/* __gc: stops the threads and closes the file, leaving it unfinished. */
static int w_gc(lua_State *L)
{
	struct writer *w = luaL_checkudata(L, 1, WRITER_MT);

	ls_gzwrite_free(w->gz);
	w->gz = NULL;
	w->closed = 1;
	return 0;
}

static int w_write(lua_State *L)
{
	struct writer *w = luaL_checkudata(L, 1, WRITER_MT);
	size_t len;
	const char *s = luaL_checklstring(L, 2, &len);

	if (w->closed)
		return luaL_error(L, "attempt to use a closed gzip writer");
	if (ls_gzwrite_write(w->gz, s, len) != 0)
		return ls_fail(L, ls_gzwrite_class(w->gz), "%s", ls_gzwrite_error(w->gz));
	lua_settop(L, 1);
	return 1;
}

static int w_tostring(lua_State *L)
{
	struct writer *w = luaL_checkudata(L, 1, WRITER_MT);

	if (w->closed)
		lua_pushliteral(L, "gzip writer (closed)");
	else
		lua_pushfstring(L, "gzip writer (%p)", (void *)w);
	return 1;
}

/* gzip.inflater(sink, ..., [opts]): opts.max_size caps the inflated bytes. */
static int l_inflater(lua_State *L)
{
	int n = lua_gettop(L);
	lua_Integer max_size = 0;
	struct inflater *i;

	if (n > 0 && lua_type(L, n) == LUA_TTABLE) {
		if (lua_getfield(L, n, "max_size") != LUA_TNIL) {
			max_size = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : -1;
			luaL_argcheck(L, max_size >= 0, n, "max_size must be an integer >= 0");
		}
		lua_settop(L, --n);
	}
	for (int k = 1; k <= n; k++)
		ls_checksink(L, k);
	i = lua_newuserdatauv(L, sizeof(*i) + (size_t)n * sizeof(i->sinks[0]), n + 1);
	memset(i, 0, sizeof(*i));
	i->sink.ops = &inflater_ops;
	i->closed = 1; /* until the decoder exists */
	i->nsinks = n;
	luaL_setmetatable(L, INFLATER_MT);
	for (int k = 1; k <= n; k++) {
		i->sinks[k - 1] = ls_tosink(L, k);
		lua_pushvalue(L, k);
		lua_setiuservalue(L, -2, k + 1);
	}
	i->z = ls_gzinflate_new(i->sinks, n);
	if (i->z == NULL)
		return ls_fail(L, LS_EIO, "gzip: out of memory");
	ls_gzinflate_limit(i->z, (uint64_t)max_size);
	i->closed = 0;
	return 1;
}

static int i_close(lua_State *L)
{
	struct inflater *i = luaL_checkudata(L, 1, INFLATER_MT);
	uint64_t members, in_size, out_size;
	const unsigned char *head;
	size_t head_len;

	if (i->closed)
		return closed_result(L, i->closed_class);
	i->closed = 1;
	if (ls_gzinflate_finish(i->z) != 0) {
		i->closed_class = ls_gzinflate_class(i->z);
		lua_pushstring(L, ls_gzinflate_error(i->z));
	} else {
		ls_gzinflate_stats(i->z, &members, &in_size, &out_size);
		lua_createtable(L, 0, 5);
		lua_pushinteger(L, (lua_Integer)members);
		lua_setfield(L, -2, "members");
		lua_pushinteger(L, (lua_Integer)in_size);
		lua_setfield(L, -2, "in_size");
		lua_pushinteger(L, (lua_Integer)out_size);
		lua_setfield(L, -2, "out_size");
		lua_pushinteger(L, (lua_Integer)ls_gzinflate_padding(i->z));
		lua_setfield(L, -2, "padding");
		head = ls_gzinflate_head(i->z, &head_len);
		lua_pushlstring(L, (const char *)head, head_len);
		lua_setfield(L, -2, "head");
	}
	lua_setiuservalue(L, 1, 1);
	ls_gzinflate_free(i->z);
	i->z = NULL;
	return closed_result(L, i->closed_class);
}

static int i_gc(lua_State *L)
{
	struct inflater *i = luaL_checkudata(L, 1, INFLATER_MT);

	ls_gzinflate_free(i->z);
	i->z = NULL;
	i->closed = 1;
	return 0;
}

static int i_write(lua_State *L)
{
	struct inflater *i = luaL_checkudata(L, 1, INFLATER_MT);
	size_t len;
	const char *s = luaL_checklstring(L, 2, &len);

	if (i->closed)
		return luaL_error(L, "attempt to use a closed gzip inflater");
	if (ls_gzinflate_write(i->z, s, len) != 0)
		return ls_fail(L, ls_gzinflate_class(i->z), "%s", ls_gzinflate_error(i->z));
	lua_settop(L, 1);
	return 1;
}

static int i_tostring(lua_State *L)
{
	struct inflater *i = luaL_checkudata(L, 1, INFLATER_MT);

	if (i->closed)
		lua_pushliteral(L, "gzip inflater (closed)");
	else
		lua_pushfstring(L, "gzip inflater (%p)", (void *)i);
	return 1;
}

static int l_engines(lua_State *L)
{
	lua_createtable(L, NENGINES, 0);
	for (int k = 0; k < NENGINES; k++) {
		lua_pushstring(L, engines[k]->name);
		lua_rawseti(L, -2, k + 1);
	}
	return 1;
}

/* gzip.engine(name): {min_level, max_level, default_level, block_size} of
 * an engine built in, or nil. */
static int l_engine(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);

	for (int k = 0; k < NENGINES; k++) {
		const struct ls_deflate_engine *e = engines[k];

		if (strcmp(e->name, name) != 0)
			continue;
		lua_createtable(L, 0, 4);
		lua_pushinteger(L, e->min_level);
		lua_setfield(L, -2, "min_level");
		lua_pushinteger(L, e->max_level);
		lua_setfield(L, -2, "max_level");
		lua_pushinteger(L, e->default_level);
		lua_setfield(L, -2, "default_level");
		lua_pushinteger(L, (lua_Integer)e->block_size);
		lua_setfield(L, -2, "block_size");
		return 1;
	}
	lua_pushnil(L);
	return 1;
}

/* gzip.versions(): {zlib = ..., libdeflate = ..., isal = ...}, the versions of
 * the compression libraries: the bytes an engine writes depend on them. */
static int l_versions(lua_State *L)
{
	lua_createtable(L, 0, 3);
	lua_pushstring(L, zlibVersion());
	lua_setfield(L, -2, "zlib");
	lua_pushstring(L, LIBDEFLATE_VERSION_STRING);
	lua_setfield(L, -2, "libdeflate");
#ifdef LS_HAVE_ISAL
	lua_pushfstring(L, "%d.%d.%d", ISAL_MAJOR_VERSION, ISAL_MINOR_VERSION,
			ISAL_PATCH_VERSION);
	lua_setfield(L, -2, "isal");
#endif
	return 1;
}

static const luaL_Reg writer_methods[] = {
	{"write", w_write},
	{"close", w_close},
	{NULL, NULL},
};

static const luaL_Reg writer_meta[] = {
	{"__gc", w_gc},
	{"__close", w_close},
	{"__tostring", w_tostring},
	{"__index", NULL},
	{NULL, NULL},
};

static const luaL_Reg inflater_methods[] = {
	{"write", i_write},
	{"close", i_close},
	{NULL, NULL},
};

static const luaL_Reg inflater_meta[] = {
	{"__gc", i_gc},
	{"__close", i_close},
	{"__tostring", i_tostring},
	{"__index", NULL},
	{NULL, NULL},
};

static const luaL_Reg gzip_funcs[] = {
	{"writer", l_writer},
	{"inflater", l_inflater},
	{"engines", l_engines},
	{"engine", l_engine},
	{"versions", l_versions},
	{NULL, NULL},
};

static void new_class(lua_State *L, const char *name, const luaL_Reg *meta,
		      const luaL_Reg *methods)
{
	if (luaL_newmetatable(L, name)) {
		luaL_setfuncs(L, meta, 0);
		lua_newtable(L);
		luaL_setfuncs(L, methods, 0);
		lua_setfield(L, -2, "__index");
		ls_marksink(L);
	}
	lua_pop(L, 1);
}

int luaopen_layersplit_gzip(lua_State *L)
{
	new_class(L, WRITER_MT, writer_meta, writer_methods);
	new_class(L, INFLATER_MT, inflater_meta, inflater_methods);
	luaL_newlib(L, gzip_funcs);
	return 1;
}
