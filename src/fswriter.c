/* fswriter.c: fs.writer, a sink writing raw bytes to a new file (created
 * exclusively, never through a symlink, by ls_fs_create). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "fs.h"
#include "fswriter.h"
#include "sink.h"

#define WRITER_MT "layersplit.fs.writer"

struct writer {
	struct ls_sink sink; /* first: the userdata is a sink */
	int fd;              /* -1 once closed */
	int err;             /* first failure, sticky; EINTR: a signal */
	uint64_t bytes;
	uint64_t max;        /* bytes it takes at most; UINT64_MAX: no limit */
	int writeback;       /* start the file's writeback as it grows */
	uint64_t wb_started; /* bytes already handed to writeback */
	char *msg;           /* room for "<path>: <why>", after path */
	size_t msgsize;
	char path[];
};

static void writer_seterror(struct writer *w, int err, const char *why)
{
	w->err = err;
	snprintf(w->msg, w->msgsize, "%s: %s", w->path, why ? why :
		 err == EINTR && ls_interrupted ? "interrupted" : strerror(err));
}

static int writer_write(struct ls_sink *sink, const void *buf, size_t len)
{
	struct writer *w = (struct writer *)sink;

	if (w->err != 0)
		return -1;
	if (w->fd < 0) {
		writer_seterror(w, EBADF, "write to a closed writer");
		return -1;
	}
	if (len > w->max - w->bytes) {
		w->err = EFBIG;
		snprintf(w->msg, w->msgsize, "%s: more than %llu bytes", w->path,
			 (unsigned long long)w->max);
		return -1;
	}
	if (ls_fs_write_all(w->fd, buf, len) != 0) {
		writer_seterror(w, errno, NULL);
		return -1;
	}
	w->bytes += len;
	if (w->writeback)
		ls_writeback(w->fd, &w->wb_started, w->bytes);
	return 0;
}

static const char *writer_error(struct ls_sink *sink)
{
	return ((struct writer *)sink)->msg;
}

static const char *writer_class(struct ls_sink *sink)
{
	struct writer *w = (struct writer *)sink;

	return w->err == EINTR && ls_interrupted ? LS_ESIGNAL
	       : w->err == EFBIG ? LS_EARCHIVE : LS_EIO;
}

static const struct ls_sink_ops writer_ops = {
	.write = writer_write,
	.error = writer_error,
	.class = writer_class,
};

/* Closes the file once; 0, or -1 with the first failure kept in w. */
static int writer_close(struct writer *w)
{
	if (w->fd >= 0) {
		int r = close(w->fd);
		w->fd = -1;
		if (r != 0 && w->err == 0)
			writer_seterror(w, errno, NULL);
	}
	return w->err != 0 ? -1 : 0;
}

/* Pushes a closed writer named name (for messages). */
static struct writer *push_writer(lua_State *L, const char *name)
{
	size_t len = strlen(name), msgsize = len + 256;
	struct writer *w = lua_newuserdatauv(L, sizeof(*w) + len + 1 + msgsize, 0);

	/* Created closed and owned by Lua first, as liolib does. */
	memset(w, 0, sizeof(*w));
	w->sink.ops = &writer_ops;
	w->fd = -1;
	memcpy(w->path, name, len + 1);
	w->msg = w->path + len + 1;
	w->msgsize = msgsize;
	w->msg[0] = '\0';
	luaL_setmetatable(L, WRITER_MT);
	return w;
}

int ls_fs_writer(lua_State *L)
{
	const char *path = ls_fs_checkpath(L, 1);
	struct writer *w = push_writer(L, path);

	w->max = UINT64_MAX;
	if (lua_istable(L, 2)) {
		lua_getfield(L, 2, "writeback");
		w->writeback = lua_toboolean(L, -1);
		lua_pop(L, 1);
	}
	if ((w->fd = ls_fs_create(path)) < 0)
		return ls_fs_fail_errno(L, path, errno);
	return 1;
}

struct writer *ls_fs_writer_push(lua_State *L, const char *name, uint64_t max)
{
	struct writer *w = push_writer(L, name);

	w->max = max;
	return w;
}

void ls_fs_writer_set_fd(struct writer *w, int fd)
{
	w->fd = fd;
}

static int m_write(lua_State *L)
{
	struct writer *w = luaL_checkudata(L, 1, WRITER_MT);
	size_t len;
	const char *data = luaL_checklstring(L, 2, &len);

	if (w->fd < 0)
		return luaL_error(L, "attempt to use a closed writer");
	if (writer_write(&w->sink, data, len) != 0)
		return ls_fail(L, writer_class(&w->sink), "%s", w->msg);
	lua_settop(L, 1);
	return 1;
}

/* :close() and __close: bytes written, or the first failure, every time. */
static int m_close(lua_State *L)
{
	struct writer *w = luaL_checkudata(L, 1, WRITER_MT);

	if (writer_close(w) != 0)
		return ls_fail(L, writer_class(&w->sink), "%s", w->msg);
	lua_pushinteger(L, (lua_Integer)w->bytes);
	return 1;
}

static int m_gc(lua_State *L)
{
	(void)writer_close(luaL_checkudata(L, 1, WRITER_MT));
	return 0;
}

static int m_tostring(lua_State *L)
{
	struct writer *w = luaL_checkudata(L, 1, WRITER_MT);

	lua_pushfstring(L, "fs.writer (%s%s)", w->path,
			w->fd < 0 ? ", closed" : "");
	return 1;
}

static const luaL_Reg writer_methods[] = {
	{"write", m_write},
	{"close", m_close},
	{NULL, NULL},
};

static const luaL_Reg writer_meta[] = {
	{"__gc", m_gc},
	{"__close", m_close},
	{"__tostring", m_tostring},
	{"__index", NULL},
	{NULL, NULL},
};

void ls_fs_writer_meta(lua_State *L)
{
	if (luaL_newmetatable(L, WRITER_MT)) {
		luaL_setfuncs(L, writer_meta, 0);
		luaL_newlibtable(L, writer_methods);
		luaL_setfuncs(L, writer_methods, 0);
		lua_setfield(L, -2, "__index");
		ls_marksink(L);
	}
	lua_pop(L, 1);
}
