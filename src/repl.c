/* repl.c: layersplit.repl, a read-eval-print loop in the manner of lua.c:
 * `return <line>` is tried first, a syntax error at <eof> asks for another
 * line, and Ctrl-C only sets a hook that stops the running statement.  Line
 * editing and history come from libedit when it is built in. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "printable.h"
#include "prompt.h"
#include "repl.h"
#include "sink.h"

#define REPL_MT "layersplit.repl"
#define CHUNKNAME "=stdin"
#define PROMPT1 "> "
#define PROMPT2 ">> "
#define EOFMARK "<eof>"

/* One session, owned by a userdata in a to-be-closed slot: an error that
 * leaves the loop still restores the signal handler and frees libedit. */
struct repl {
	struct ls_prompt prompt;
	int line;                    /* lines read so far */
	int handler_set;             /* old_sigint is the action to restore */
	struct sigaction old_sigint;
};

/* What the SIGINT handler may touch: it can reach nothing else. */
static lua_State *volatile repl_state;
static volatile sig_atomic_t at_prompt;

static int push_interrupted(lua_State *L)
{
	lua_createtable(L, 0, 2);
	lua_pushliteral(L, LS_ESIGNAL);
	lua_setfield(L, -2, "class");
	lua_pushliteral(L, "interrupted");
	lua_setfield(L, -2, "message");
	return 1;
}

/* Raised from a hook, so it reaches the statement wherever it is. */
static void stop_hook(lua_State *L, lua_Debug *ar)
{
	lua_sethook(L, NULL, 0, 0);
	push_interrupted(L);
	lua_error(L);
}

/* At the prompt Ctrl-C discards the line; while a statement runs it stops
 * the statement (and the C primitive it is in) but not the session. */
static void on_sigint(int sig)
{
	if (at_prompt) {
		ls_prompt_interrupted = 1;
		return;
	}
	ls_interrupted = sig;
	if (repl_state != NULL)
		lua_sethook(repl_state, stop_hook,
			    LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* Forgets a Ctrl-C once it has done its work; called with at_prompt set,
 * so the handler cannot race with it.  Other signals end the session. */
static void clear_interrupt(lua_State *L)
{
	if (ls_interrupted == SIGINT) {
		ls_interrupted = 0;
		lua_sethook(L, NULL, 0, 0);
	}
}

static void repl_close(struct repl *r)
{
	if (r->handler_set) {
		/* Restoring an action we read from the kernel cannot fail. */
		(void)sigaction(SIGINT, &r->old_sigint, NULL);
		r->handler_set = 0;
		repl_state = NULL;
		at_prompt = 0;
	}
	ls_prompt_close(&r->prompt);
}

static int repl_gc(lua_State *L)
{
	repl_close(luaL_checkudata(L, 1, REPL_MT));
	return 0;
}

/* Pushes the next line, without its newline. */
static int read_line(lua_State *L, struct repl *r, const char *prompt)
{
	int got;

	at_prompt = 1;
	ls_prompt_interrupted = 0;
	clear_interrupt(L);
	got = ls_prompt_read(L, &r->prompt, prompt);
	at_prompt = 0;
	if (got == LS_PROMPT_LINE)
		r->line++;
	if (ls_prompt_interrupted || ls_interrupted) {
		if (got == LS_PROMPT_LINE)
			lua_pop(L, 1);
		return LS_PROMPT_INTERRUPTED;
	}
	return got;
}

/* A statement's text after first_line - 1 newlines, so that Lua numbers its
 * lines as the input does ("stdin:12:" for the twelfth line piped in). */
struct chunk {
	int newlines;
	const char *text;
	size_t len;
};

static const char *chunk_read(lua_State *L, void *ud, size_t *size)
{
	static char newlines[256];
	struct chunk *c = ud;

	if (c->newlines > 0) {
		if (newlines[0] != '\n')
			memset(newlines, '\n', sizeof newlines);
		*size = c->newlines < (int)sizeof newlines ? (size_t)c->newlines : sizeof newlines;
		c->newlines -= (int)*size;
		return newlines;
	}
	*size = c->len;
	c->len = 0;
	return *size > 0 ? c->text : NULL;
}

static int load_at(lua_State *L, const char *text, size_t len, int first_line)
{
	struct chunk c = {first_line > 1 ? first_line - 1 : 0, text, len};

	return lua_load(L, chunk_read, &c, CHUNKNAME, NULL);
}

/* A syntax error at the end of the text: the statement goes on. */
static int incomplete(lua_State *L, int status)
{
	size_t len;
	const char *msg;

	if (status != LUA_ERRSYNTAX)
		return 0;
	msg = lua_tolstring(L, -1, &len);
	return len >= sizeof EOFMARK - 1 &&
	       strcmp(msg + len - (sizeof EOFMARK - 1), EOFMARK) == 0;
}

/* Reads one statement and pushes it compiled (LUA_OK) or its syntax error;
 * or returns LS_PROMPT_EOF or LS_PROMPT_INTERRUPTED with nothing pushed. */
static int read_statement(lua_State *L, struct repl *r)
{
	const char *text;
	size_t len;
	int got, status, first;

	if ((got = read_line(L, r, PROMPT1)) != LS_PROMPT_LINE)
		return got;
	first = r->line;
	text = lua_pushfstring(L, "return %s;", lua_tostring(L, -1));
	if (load_at(L, text, strlen(text), first) == LUA_OK) {
		ls_prompt_remember(&r->prompt, lua_tostring(L, -3));
		lua_replace(L, -3);
		lua_pop(L, 1);
		return LUA_OK;
	}
	lua_pop(L, 2);
	for (;;) {
		text = lua_tolstring(L, -1, &len);
		status = load_at(L, text, len, first);
		if (!incomplete(L, status))
			break;
		lua_pop(L, 1);
		if ((got = read_line(L, r, PROMPT2)) == LS_PROMPT_INTERRUPTED) {
			lua_pop(L, 1);
			return got;
		}
		if (got == LS_PROMPT_EOF) {
			status = load_at(L, text, len, first);
			break;
		}
		lua_pushliteral(L, "\n");
		lua_insert(L, -2);
		lua_concat(L, 3);
	}
	ls_prompt_remember(&r->prompt, lua_tostring(L, -2));
	lua_remove(L, -2);
	return status;
}

/* The error and a traceback of the statement's own frames: the upvalue is
 * the traceback of the REPL and its callers, cut from the end. */
static int msghandler(lua_State *L)
{
	size_t len, tail_len;
	const char *msg, *tb, *tail = lua_tolstring(L, lua_upvalueindex(1), &tail_len);

	if (lua_type(L, 1) == LUA_TTABLE &&
	    lua_getfield(L, 1, "message") == LUA_TSTRING) {
		lua_getfield(L, 1, "class");
		msg = lua_pushfstring(L, "%s [%s]", lua_tostring(L, -2),
				      lua_type(L, -1) == LUA_TSTRING ?
				      lua_tostring(L, -1) : "error");
	} else if ((msg = lua_tostring(L, 1)) == NULL) {
		if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
			msg = lua_tostring(L, -1);
		else
			msg = lua_pushfstring(L, "(error object is a %s value)",
					      luaL_typename(L, 1));
	}
	if (lua_type(L, 1) == LUA_TTABLE &&
	    lua_getfield(L, 1, "traceback") == LUA_TSTRING)
		/* where a policy hook raised it, kept by the driver */
		lua_pushfstring(L, "%s\n%s", msg, lua_tostring(L, -1));
	else
		luaL_traceback(L, L, msg, 1);
	tb = lua_tolstring(L, -1, &len);
	if (tail_len > 0 && len > tail_len &&
	    memcmp(tb + len - tail_len, tail, tail_len) == 0)
		lua_pushlstring(L, tb, len - tail_len);
	return 1;
}

static int docall(lua_State *L, int tail_idx)
{
	int base = lua_gettop(L), status;

	lua_pushvalue(L, tail_idx);
	lua_pushcclosure(L, msghandler, 1);
	lua_insert(L, base);
	status = lua_pcall(L, 0, LUA_MULTRET, base);
	lua_remove(L, base);
	return status;
}

/* Like lua.c: the results go through the global print. */
static int print_results(lua_State *L, int top)
{
	int n = lua_gettop(L) - top;

	if (n == 0)
		return LUA_OK;
	if (!lua_checkstack(L, 1)) {
		lua_pushliteral(L, "too many results to print");
		return LUA_ERRRUN;
	}
	lua_getglobal(L, "print");
	lua_insert(L, top + 1);
	if (lua_pcall(L, n, 0, 0) != LUA_OK) {
		lua_pushfstring(L, "error calling 'print' (%s)", lua_tostring(L, -1));
		return LUA_ERRRUN;
	}
	return LUA_OK;
}

static void report(lua_State *L)
{
	const char *msg = lua_tostring(L, -1), *nl;

	fflush(stdout);
	if (msg == NULL)
		msg = "(error object is not a string)";
	/* A traceback keeps its lines and tabs; everything else is escaped. */
	for (; (nl = strpbrk(msg, "\n\t")) != NULL; msg = nl + 1) {
		ls_fputs_printable(msg, (size_t)(nl - msg), stderr);
		fputc(*nl, stderr);
	}
	ls_fputs_printable(msg, strlen(msg), stderr);
	fputc('\n', stderr);
	fflush(stderr);
}

/* The traceback of the REPL's own frames, which statements' tracebacks end
 * with: "\n\t[C]: in function 'layersplit.repl.run'..." */
static void push_tail(lua_State *L)
{
	const char *tb, *start;

	luaL_traceback(L, L, NULL, 0);
	tb = lua_tostring(L, -1);
	start = strchr(tb, '\n');
	lua_pushstring(L, start != NULL ? start : "");
	lua_remove(L, -2);
}

/* repl.run([opts]) -> number of statements that failed, and whether the
 * session was interactive (standard input a terminal).  opts.history: the
 * history file (used with libedit); opts.banner: printed first when
 * interactive. */
static int repl_run(lua_State *L)
{
	struct sigaction sa;
	struct repl *r;
	int failed = 0, status, top, stop;
	const char *history_path, *banner;

	if (lua_isnoneornil(L, 1)) {
		lua_settop(L, 0);
		lua_newtable(L);
	}
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	lua_getfield(L, 1, "history");
	history_path = luaL_optstring(L, 2, NULL);
	lua_getfield(L, 1, "banner");
	banner = luaL_optstring(L, 3, NULL);
	if (repl_state != NULL)
		return luaL_error(L, "the REPL is already running");
	push_tail(L);
	r = lua_newuserdatauv(L, sizeof *r, 0);
	memset(r, 0, sizeof *r);
	luaL_setmetatable(L, REPL_MT);
	lua_toclose(L, -1);
	top = lua_gettop(L);

	ls_prompt_open(&r->prompt, history_path);
	if (r->prompt.interactive && banner != NULL) {
		fputs(banner, stdout);
		fflush(stdout);
	}
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigint;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: a read at the prompt must return */
	repl_state = L;
	if (sigaction(SIGINT, &sa, &r->old_sigint) != 0) {
		repl_state = NULL;
		return luaL_error(L, "sigaction: %s", strerror(errno));
	}
	r->handler_set = 1;

	for (;;) {
		status = read_statement(L, r);
		if (status == LS_PROMPT_EOF)
			break;
		if (status == LS_PROMPT_INTERRUPTED) {
			if (ls_interrupted != 0 && ls_interrupted != SIGINT)
				break;
			fputs("\n", stdout);
			fflush(stdout);
			continue;
		}
		if (status == LUA_OK)
			status = docall(L, top - 1);
		if (status == LUA_OK)
			status = print_results(L, top);
		if (status != LUA_OK) {
			report(L);
			failed++;
		}
		fflush(stdout);
		lua_settop(L, top);
		if (ls_interrupted != 0 && ls_interrupted != SIGINT)
			break;
	}
	if (r->prompt.interactive && ls_interrupted == 0)
		fputs("\n", stdout);
	fflush(stdout);
	repl_close(r);
	stop = ls_interrupted != 0 && ls_interrupted != SIGINT;
	clear_interrupt(L);
	if (stop) {
		/* SIGTERM, SIGHUP, SIGPIPE: the host reports them and exits. */
		push_interrupted(L);
		return lua_error(L);
	}
	lua_pushinteger(L, failed);
	lua_pushboolean(L, r->prompt.interactive);
	return 2;
}

int luaopen_layersplit_repl(lua_State *L)
{
	static const luaL_Reg meta[] = {
		{"__gc", repl_gc},
		{"__close", repl_gc},
		{NULL, NULL}
	};
	static const luaL_Reg funcs[] = {
		{"run", repl_run},
		{NULL, NULL}
	};

	if (luaL_newmetatable(L, REPL_MT))
		luaL_setfuncs(L, meta, 0);
	lua_pop(L, 1);
	luaL_newlib(L, funcs);
	return 1;
}
