/* host.c: the Lua state, the bundled modules, protected calls, errors and
 * signals.  The rest of the C never deals with error reporting. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "archive.h"
#include "digest.h"
#include "embedded.h"
#include "fs.h"
#include "gzip.h"
#include "host.h"
#include "repl.h"
#include "printable.h"
#include "progress.h"
#include "registry.h"
#include "sink.h"

int luaopen_cjson(lua_State *L);

static const int host_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};
static lua_State *signal_state;

/* The heap cap: hostile metadata must not exhaust the machine's memory. */
struct heap {
	size_t used, limit;
	int hit_limit;
};

static void *heap_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct heap *h = ud;
	void *p;

	if (ptr == NULL)
		osize = 0;
	if (nsize == 0) {
		free(ptr);
		h->used -= osize;
		return NULL;
	}
	if (nsize > osize && h->limit != 0 && h->used - osize + nsize > h->limit) {
		h->hit_limit = 1;
		return NULL;
	}
	p = realloc(ptr, nsize);
	if (p != NULL)
		h->used = h->used - osize + nsize;
	return p;
}

static struct heap *heap_of(lua_State *L)
{
	void *ud;

	lua_getallocf(L, &ud);
	return ud;
}

static int embedded_loader(lua_State *L)
{
	const struct ls_embedded *e = &ls_embedded[lua_tointeger(L, lua_upvalueindex(1))];

	if (luaL_loadbuffer(L, e->source, e->size, e->chunk) != LUA_OK)
		return lua_error(L);
	lua_pushstring(L, e->module);
	lua_pushstring(L, e->chunk + 1);
	lua_call(L, 2, 1);
	return 1;
}

static const luaL_Reg c_modules[] = {
	{"layersplit.archive", luaopen_layersplit_archive},
	{"layersplit.digest", luaopen_layersplit_digest},
	{"layersplit.fs", luaopen_layersplit_fs},
	{"layersplit.gzip", luaopen_layersplit_gzip},
	{"layersplit.host", luaopen_layersplit_host},
	{"layersplit.repl", luaopen_layersplit_repl},
	{"layersplit.progress", luaopen_layersplit_progress},
	{"layersplit.registry", luaopen_layersplit_registry},
	{"cjson", luaopen_cjson},
	{NULL, NULL}
};

static int host_setup(lua_State *L)
{
	luaL_openlibs(L);
	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
	for (const luaL_Reg *m = c_modules; m->name != NULL; m++) {
		lua_pushcfunction(L, m->func);
		lua_setfield(L, -2, m->name);
	}
	for (int i = 0; ls_embedded[i].module != NULL; i++) {
		lua_pushinteger(L, i);
		lua_pushcclosure(L, embedded_loader, 1);
		lua_setfield(L, -2, ls_embedded[i].module);
	}
	return 0;
}

lua_State *ls_host_new(size_t max_memory)
{
	struct heap *h = calloc(1, sizeof *h);
	lua_State *L;

	if (h == NULL)
		return NULL;
	L = lua_newstate(heap_alloc, h);
	if (L == NULL) {
		free(h);
		return NULL;
	}
	lua_pushcfunction(L, host_setup);
	if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
		ls_host_close(L);
		return NULL;
	}
	/* The cap applies to what scripts do, not to setting up the state. */
	h->limit = max_memory;
	return L;
}

void ls_host_close(lua_State *L)
{
	struct heap *h = heap_of(L);
	sigset_t sigs, old;

	/* No signal may set a hook on a state being freed. */
	sigemptyset(&sigs);
	for (size_t i = 0; i < sizeof host_signals / sizeof host_signals[0]; i++)
		sigaddset(&sigs, host_signals[i]);
	(void)pthread_sigmask(SIG_BLOCK, &sigs, &old); /* valid arguments */
	if (signal_state == L)
		signal_state = NULL;
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	lua_close(L);
	free(h);
}

/* Pushes "file:line: " of the innermost Lua function that raised the error
 * (the handler is level 0, error() a C function above it), or "". */
static void push_where(lua_State *L)
{
	lua_Debug ar;

	for (int level = 1; lua_getstack(L, level, &ar); level++) {
		if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
			lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
			return;
		}
	}
	lua_pushliteral(L, "");
}

/* Turns any error value into {class=, message=, traceback=}: errors raised by
 * the runtime are already tables; a string is a script error; any other
 * value (a table without a message too) is named with where it was raised. */
static int message_handler(lua_State *L)
{
	int is_table = lua_type(L, 1) == LUA_TTABLE;

	if (is_table && lua_getfield(L, 1, "message") == LUA_TSTRING) {
		if (lua_getfield(L, 1, "traceback") == LUA_TNIL) {
			luaL_traceback(L, L, NULL, 1);
			lua_setfield(L, 1, "traceback");
		}
		lua_settop(L, 1);
		return 1;
	}
	lua_settop(L, 1);
	lua_createtable(L, 0, 3);
	lua_pushstring(L, ls_interrupted ? "signal" : "policy");
	lua_setfield(L, -2, "class");
	if (lua_type(L, 1) == LUA_TSTRING || lua_type(L, 1) == LUA_TNUMBER) {
		lua_pushvalue(L, 1);
	} else if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
		push_where(L);
		lua_insert(L, -2);
		lua_concat(L, 2);
	} else {
		lua_settop(L, 2); /* drops what a failed __tostring left */
		push_where(L);
		lua_pushfstring(L, "%s%s value raised as an error%s", lua_tostring(L, -1),
				luaL_typename(L, 1), is_table ? " (a table without a message)" : "");
		lua_remove(L, -2);
	}
	lua_setfield(L, -2, "message");
	luaL_traceback(L, L, NULL, 1);
	lua_setfield(L, -2, "traceback");
	return 1;
}

int ls_host_pcall(lua_State *L, int nargs, int nresults)
{
	int base = lua_gettop(L) - nargs;
	int status;

	lua_pushcfunction(L, message_handler);
	lua_insert(L, base);
	status = lua_pcall(L, nargs, nresults, base);
	lua_remove(L, base);
	return status;
}

static const struct {
	const char *class;
	int status;
} exit_codes[] = {
	{"archive", 1}, {"entry", 1}, {"usage", 2}, {"io", 3}, {"policy", 4}, {NULL, 4}
};

/* A refused allocation that Lua's emergency collection made good sets
 * hit_limit too, so only Lua's own out-of-memory messages count. */
static int is_memory_error(const char *message, const struct heap *h)
{
	if (message == NULL)
		return 0;
	if (strcmp(message, "not enough memory") == 0)
		return 1;
	/* The message handler itself could not allocate. */
	return h->hit_limit && strcmp(message, "error in error handling") == 0;
}

/* A byte count as --max-memory takes it: "8 MiB", "100 KiB", "1000 bytes". */
static void format_size(char *buf, size_t len, size_t n)
{
	static const char *const units[] = {"bytes", "KiB", "MiB", "GiB"};
	int u = 0;

	while (u < 3 && n != 0 && n % 1024 == 0) {
		n /= 1024;
		u++;
	}
	snprintf(buf, len, "%zu %s", n, units[u]);
}

int ls_host_report(lua_State *L, int verbose)
{
	struct heap *h = heap_of(L);
	const char *class = "policy", *message = NULL, *traceback = NULL;
	int status = 4;

	if (verbose < 0) {
		lua_getfield(L, LUA_REGISTRYINDEX, "layersplit.verbose");
		verbose = lua_toboolean(L, -1);
		lua_pop(L, 1);
	}
	if (lua_type(L, -1) == LUA_TTABLE) {
		lua_getfield(L, -1, "class");
		lua_getfield(L, -2, "message");
		lua_getfield(L, -3, "traceback");
		class = luaL_optstring(L, -3, "policy");
		message = lua_tostring(L, -2);
		traceback = lua_tostring(L, -1);
	} else {
		message = lua_tostring(L, -1);
	}
	if (ls_interrupted) {
		class = "signal";
		const char *name = sigabbrev_np(ls_interrupted);

		fprintf(stderr, "layersplit: interrupted by SIG%s: output discarded\n",
			name ? name : "?");
	} else if (is_memory_error(message, h)) {
		char size[32];

		class = "io";
		format_size(size, sizeof(size), h->limit);
		if (h->hit_limit)
			fprintf(stderr, "layersplit: out of memory: Lua heap limit of %s "
				"reached (raise it with --max-memory)\n", size);
		else
			fputs("layersplit: out of memory: the system refused an allocation\n",
			      stderr);
	} else {
		fputs("layersplit: ", stderr);
		if (message == NULL)
			message = "unknown error";
		ls_fputs_printable(message, strlen(message), stderr);
		fputc('\n', stderr);
	}
	if (verbose && traceback != NULL)
		fprintf(stderr, "%s\n", traceback);
	if (strcmp(class, "signal") == 0)
		return 128 + (ls_interrupted ? ls_interrupted : SIGTERM);
	for (int i = 0; exit_codes[i].class != NULL; i++)
		if (strcmp(class, exit_codes[i].class) == 0)
			status = exit_codes[i].status;
	return status;
}

/* Like lua.c: the handler only sets a hook; the hook raises the error. */
static void stop_hook(lua_State *L, lua_Debug *ar)
{
	lua_sethook(L, NULL, 0, 0);
	lua_createtable(L, 0, 2);
	lua_pushliteral(L, "signal");
	lua_setfield(L, -2, "class");
	lua_pushliteral(L, "interrupted");
	lua_setfield(L, -2, "message");
	lua_error(L);
}

static void on_signal(int sig)
{
	/* Once the output is in place, a signal has nothing left to discard. */
	if (ls_committed)
		return;
	/* The first signal is the one the run reports. */
	if (!ls_interrupted)
		ls_interrupted = sig;
	if (signal_state != NULL)
		lua_sethook(signal_state, stop_hook,
			    LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

void ls_host_signals(lua_State *L)
{
	struct sigaction sa;

	signal_state = L;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: a blocked read must return EINTR */
	for (size_t i = 0; i < sizeof host_signals / sizeof host_signals[0]; i++)
		sigaction(host_signals[i], &sa, NULL);
}

static int host_set_memory_limit(lua_State *L)
{
	lua_Integer bytes = luaL_checkinteger(L, 1);

	luaL_argcheck(L, bytes >= 0, 1, "negative limit");
	heap_of(L)->limit = (size_t)bytes;
	return 0;
}

static int host_memory_used(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)heap_of(L)->used);
	return 1;
}

static int host_set_verbose(lua_State *L)
{
	lua_pushboolean(L, lua_toboolean(L, 1));
	lua_setfield(L, LUA_REGISTRYINDEX, "layersplit.verbose");
	return 0;
}

static int host_interrupted(lua_State *L)
{
	if (ls_interrupted == 0)
		return 0;
	lua_pushstring(L, sigabbrev_np(ls_interrupted));
	return 1;
}

int luaopen_layersplit_host(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{"set_memory_limit", host_set_memory_limit},
		{"memory_used", host_memory_used},
		{"set_verbose", host_set_verbose},
		{"interrupted", host_interrupted},
		{NULL, NULL}
	};

	luaL_newlib(L, funcs);
	lua_pushstring(L, LS_VERSION);
	lua_setfield(L, -2, "version");
	return 1;
}
