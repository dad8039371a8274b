/* archive.c: layersplit.archive, the image archive read once, in order, as a
 * stream.  A reader wraps one libarchive handle; a nested reader's handle
 * pulls its input from the parent's current entry and tees it to sinks.
 * This file is the Lua side; the stream itself is in reader.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* <archive.h> may be src/archive.h (under -Isrc), which passes on to libarchive's. */
#include <archive.h>
#include <archive_entry.h>
#include <lauxlib.h>
#include <lua.h>

#include "archive.h"
#include "path.h"
#include "reader.h"
#include "sink.h"

#define READER_MT "layersplit.archive.reader"
#define PEEK_MAX (1 << 20)

/* User values: what keeps the input alive, the current entry's path, the tees. */
enum { UV_SOURCE = 1, UV_PATH, UV_TEES, UV_COUNT = UV_TEES };

static int push_err(lua_State *L, struct reader *r)
{
	const char *class = r->err_class ? r->err_class : LS_EARCHIVE;

	if (!r->broken)
		r->err_class = NULL;
	return ls_fail(L, class, "%s", r->err);
}

static struct reader *new_reader(lua_State *L, int ntees)
{
	struct reader *r = lua_newuserdatauv(L, sizeof(*r) +
					     ntees * sizeof(r->tees[0]), UV_COUNT);

	memset(r, 0, sizeof(*r));
	r->fd = -1;
	r->ntees = ntees;
	luaL_setmetatable(L, READER_MT);
	return r;
}

/* opts.format: 0 for "tar" (the default), 1 for "raw". */
static int opt_raw(lua_State *L, int idx)
{
	const char *f;
	int raw;

	if (lua_isnoneornil(L, idx))
		return 0;
	luaL_checktype(L, idx, LUA_TTABLE);
	lua_getfield(L, idx, "format");
	f = lua_tostring(L, -1);
	if (lua_isnil(L, -1) || (f != NULL && strcmp(f, "tar") == 0))
		raw = 0;
	else if (f != NULL && strcmp(f, "raw") == 0)
		raw = 1;
	else
		return luaL_argerror(L, idx, "format must be \"tar\" or \"raw\"");
	lua_pop(L, 1);
	return raw;
}

/* opts.max_size: the most data one entry may hand out (0, the default: no
 * cap); a sparse entry's holes and a decompressed stream count in full.
 * opts.max_ratio: how many times its input a decompressing nested raw
 * reader may hand out (0: no cap).  Nested readers inherit both. */
static int64_t opt_int(lua_State *L, int idx, const char *key, int64_t inherited)
{
	lua_Integer n;

	if (!lua_istable(L, idx))
		return inherited;
	lua_getfield(L, idx, key);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return inherited;
	}
	n = luaL_checkinteger(L, -1);
	if (n < 0)
		return luaL_error(L, "bad argument #%d (%s must not be negative)", idx, key);
	lua_pop(L, 1);
	return (int64_t)n;
}

/* Opens r on its input; leaves r, or a failure, on the stack. */
static int start(lua_State *L, struct reader *r, int raw)
{
	return ls_reader_start(r, raw) == 0 ? 1 : push_err(L, r);
}

static int l_open(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	int raw = opt_raw(L, 2);
	int64_t max_size = opt_int(L, 2, "max_size", 0);
	int64_t max_ratio = opt_int(L, 2, "max_ratio", 0);
	struct reader *r = new_reader(L, 0);
	struct stat st;
	int e;

	lua_pushvalue(L, 1);
	lua_setiuservalue(L, -2, UV_SOURCE);
	r->name = strcmp(path, "-") == 0 ? "<stdin>" : path; /* as in every message */
	r->max_size = max_size;
	r->max_ratio = max_ratio;
	r->buf = malloc(READ_BUF_SIZE);
	if (r->buf == NULL)
		return ls_fail(L, LS_EIO, "%s", strerror(ENOMEM));
	if (strcmp(path, "-") == 0) {
		r->fd = 0;
	} else {
		r->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		r->own_fd = 1;
	}
	e = r->fd < 0 ? errno : fstat(r->fd, &st) != 0 ? errno
		: S_ISDIR(st.st_mode) ? EISDIR : 0;
	if (e != 0) {
		ls_reader_close(r, 0);
		return ls_fail(L, LS_EIO, "%s: %s", r->name, strerror(e));
	}
	return start(L, r, raw);
}

static int l_open_memory(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	int raw = opt_raw(L, 2);
	int64_t max_size = opt_int(L, 2, "max_size", 0);
	int64_t max_ratio = opt_int(L, 2, "max_ratio", 0);
	struct reader *r = new_reader(L, 0);

	lua_pushvalue(L, 1);
	lua_setiuservalue(L, -2, UV_SOURCE);
	r->name = "memory";
	r->max_size = max_size;
	r->max_ratio = max_ratio;
	r->mem = (const unsigned char *)s;
	r->mem_len = len;
	return start(L, r, raw);
}

/* The reader at argument 1, open, not lent to a nested reader, and on an entry if need_entry. */
static struct reader *check(lua_State *L, int need_entry)
{
	struct reader *r = luaL_checkudata(L, 1, READER_MT);

	if (r->closed)
		luaL_error(L, "attempt to use a closed reader");
	if (r->child != NULL)
		luaL_error(L, "reader is busy with a nested reader");
	if (need_entry && !r->in_entry)
		luaL_error(L, "reader has no current entry");
	return r;
}

/* r's scratch buffer, at least n bytes, or NULL. */
static char *scratch(struct reader *r, size_t n)
{
	char *grown;

	if (n > r->scratch_cap) {
		grown = realloc(r->scratch, n);
		if (grown == NULL)
			return NULL;
		r->scratch = grown;
		r->scratch_cap = n;
	}
	return r->scratch;
}

static void reset_entry(struct reader *r)
{
	r->in_entry = r->skipped = r->size_set = r->data_eof = 0;
	r->path = NULL;
	r->size = r->taken = r->blk_off = r->pos = 0;
	r->peek_len = r->peek_pos = 0;
	r->blk = NULL;
	r->blk_len = 0;
}

/* Every image producer ends its tar with zero blocks, which libarchive
 * consumes at the end; a stream that stops exactly between two entries has
 * none, so nothing was read past the last header position.  Only for the
 * outer archive: a layer's own tar is not ours to judge. */
static int cut_between_entries(struct reader *r)
{
	if (r->parent != NULL ||
	    (archive_format(r->a) & ARCHIVE_FORMAT_BASE_MASK) != ARCHIVE_FORMAT_TAR)
		return 0;
	return archive_filter_bytes(r->a, 0) == archive_read_header_position(r->a);
}

static int l_next(lua_State *L)
{
	struct reader *r = check(L, 0);
	struct archive_entry *e;
	const char *name, *link, *path, *target = NULL, *type, *why = NULL;
	char *buf;
	size_t len, tlen = 0;
	int rc;

	reset_entry(r);
	if (r->broken)
		return push_err(L, r);
	if (r->at_end) {
		lua_pushnil(L);
		return 1;
	}
	if (ls_interrupted)
		return ls_fail(L, LS_ESIGNAL, "interrupted");
	rc = archive_read_next_header(r->a, &e);
	if (rc == ARCHIVE_EOF && r->err_class != NULL)
		rc = ARCHIVE_FATAL; /* a failed read is never a clean end */
	if (rc == ARCHIVE_EOF && cut_between_entries(r))
		return ls_fail(L, LS_EARCHIVE, "%s: truncated: the stream ends between two "
			       "entries, without tar's end-of-archive blocks", r->name);
	if (rc == ARCHIVE_EOF) {
		r->at_end = 1;
		lua_pushnil(L);
		return 1;
	}
	if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
		ls_reader_archive_err(r, rc, r->name);
		return push_err(L, r);
	}
	if (r->scan.nul_path)
		return ls_fail(L, LS_EARCHIVE, "%s: a PAX header names a path or link with "
			       "a NUL byte in it (the name would be cut short there)", r->name);
	name = archive_entry_pathname(e);
	/* Refusing one entry leaves the stream usable: class "entry". */
	if (name == NULL)
		return ls_fail(L, LS_EENTRY, "entry with an unreadable name");
	link = archive_entry_hardlink(e);
	buf = scratch(r, strlen(name) + (link ? strlen(link) : 0) + 4);
	if (buf == NULL)
		return ls_fail(L, LS_EIO, "%s", strerror(ENOMEM));
	path = ls_path_entry_name(name, buf, &len, &why);
	if (path == NULL)
		return ls_fail(L, LS_EENTRY, "%s: %s", name, why);
	if (link != NULL) {
		type = "hardlink";
		target = ls_path_entry_name(link, buf + len + 1, &tlen, &why);
		if (target == NULL)
			return ls_fail(L, LS_EENTRY, "%s: hard link to %s: %s",
				       name, archive_entry_hardlink(e), why);
	} else if (archive_entry_filetype(e) == AE_IFLNK) {
		type = "symlink";
		target = archive_entry_symlink(e) ? archive_entry_symlink(e) : "";
		tlen = strlen(target);
	} else {
		type = archive_entry_filetype(e) == AE_IFREG ? "file"
			: archive_entry_filetype(e) == AE_IFDIR ? "dir" : "other";
	}
	lua_createtable(L, 0, 6);
	lua_pushlstring(L, path, len);
	r->path = lua_tostring(L, -1);
	lua_pushvalue(L, -1);
	lua_setiuservalue(L, 1, UV_PATH);
	lua_setfield(L, -2, "path");
	lua_pushstring(L, type);
	lua_setfield(L, -2, "type");
	if (target != NULL) {
		lua_pushlstring(L, target, tlen);
		lua_setfield(L, -2, "target");
	}
	if (strcmp(type, "file") != 0) {
		lua_pushinteger(L, 0);
		lua_setfield(L, -2, "size");
	} else if (archive_entry_size_is_set(e)) {
		r->size = archive_entry_size(e);
		r->size_set = 1;
		lua_pushinteger(L, (lua_Integer)r->size);
		lua_setfield(L, -2, "size");
	}
	lua_pushinteger(L, (lua_Integer)archive_entry_perm(e));
	lua_setfield(L, -2, "mode");
	if (archive_entry_sparse_count(e) > 0) {
		/* Its holes are data the archive does not hold. */
		lua_pushboolean(L, 1);
		lua_setfield(L, -2, "sparse");
	}
	r->in_entry = 1;
	return 1;
}

static int l_peek(lua_State *L)
{
	struct reader *r = check(L, 1);
	lua_Integer want = luaL_checkinteger(L, 2);
	size_t n, cap;
	const void *p;
	size_t avail;
	unsigned char *grown;
	int rc;

	luaL_argcheck(L, want >= 0 && want <= PEEK_MAX, 2, "must be 0 to 1 MiB");
	if (r->taken > 0 || r->skipped)
		return luaL_error(L, "peek after the entry's data was consumed");
	n = (size_t)want;
	if (n > r->peek_cap) {
		cap = r->peek_cap ? r->peek_cap * 2 : 4096;
		cap = cap < n ? n : cap > PEEK_MAX ? PEEK_MAX : cap;
		grown = realloc(r->peek, cap);
		if (grown == NULL)
			return ls_fail(L, LS_EIO, "%s", strerror(ENOMEM));
		r->peek = grown;
		r->peek_cap = cap;
	}
	while (r->peek_len < n) {
		rc = ls_reader_view(r, &p, &avail);
		if (rc == 0)
			break;
		if (rc < 0)
			return push_err(L, r);
		if (avail > n - r->peek_len)
			avail = n - r->peek_len;
		memcpy(r->peek + r->peek_len, p, avail);
		ls_reader_consume(r, avail);
		r->peek_len += avail;
	}
	lua_pushlstring(L, (const char *)r->peek, r->peek_len < n ? r->peek_len : n);
	return 1;
}

static int l_read(lua_State *L)
{
	struct reader *r = check(L, 1);
	lua_Integer max = luaL_checkinteger(L, 2);
	luaL_Buffer b;
	const void *p;
	size_t n;
	int64_t total = 0;
	int rc;

	luaL_argcheck(L, max >= 0, 2, "must not be negative");
	if (r->size_set && r->size - r->taken > max)
		return ls_fail(L, LS_EARCHIVE, "%s: entry too large (%I bytes, limit %I)",
			       r->path, (lua_Integer)r->size, max);
	luaL_buffinit(L, &b);
	while ((rc = ls_reader_next_chunk(r, &p, &n)) > 0) {
		if (ls_interrupted)
			return ls_fail(L, LS_ESIGNAL, "interrupted");
		total += (int64_t)n;
		if (total > max)
			return ls_fail(L, LS_EARCHIVE,
				       "%s: entry too large (more than %I bytes, limit %I)",
				       r->path, max, max);
		luaL_addlstring(&b, p, n);
	}
	if (rc < 0)
		return push_err(L, r);
	luaL_pushresult(&b);
	return 1;
}

static int l_pipe(lua_State *L)
{
	struct reader *r = check(L, 1);
	int nsinks = lua_gettop(L) - 1;
	struct ls_sink **sinks, *failed;
	const void *p;
	size_t n;
	lua_Integer total = 0;
	int rc;

	sinks = lua_newuserdatauv(L, (nsinks + 1) * sizeof(*sinks), 0);
	for (int i = 0; i < nsinks; i++)
		sinks[i] = ls_checksink(L, i + 2);
	while ((rc = ls_reader_next_chunk(r, &p, &n)) > 0) {
		if (ls_interrupted)
			return ls_fail(L, LS_ESIGNAL, "interrupted");
		if (ls_sinks_write(sinks, nsinks, p, n, &failed) != 0)
			return ls_fail(L, ls_reader_known_class(failed->ops->class(failed)),
				       "%s", failed->ops->error(failed));
		total += (lua_Integer)n;
	}
	if (rc < 0)
		return push_err(L, r);
	lua_pushinteger(L, total);
	return 1;
}

static int l_skip(lua_State *L)
{
	struct reader *r = check(L, 1);
	int rc;

	r->skipped = r->data_eof = 1;
	r->size = r->taken; /* nothing remains for read() */
	r->peek_pos = r->peek_len;
	r->blk_len = 0;
	r->blk_off = r->pos;
	if (r->broken)
		return push_err(L, r);
	rc = archive_read_data_skip(r->a);
	if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
		ls_reader_archive_err(r, rc, r->path);
		return push_err(L, r);
	}
	lua_pushboolean(L, 1);
	return 1;
}

static int l_nested(lua_State *L)
{
	struct reader *r = check(L, 1);
	int first = lua_istable(L, 2) ? 3 : 2;
	int raw = first == 3 ? opt_raw(L, 2) : 0;
	int64_t max_size = opt_int(L, 2, "max_size", r->max_size);
	int64_t max_ratio = opt_int(L, 2, "max_ratio", r->max_ratio);
	int ntees = lua_gettop(L) - first + 1;
	struct reader *c;

	for (int i = 0; i < ntees; i++)
		ls_checksink(L, first + i);
	if (r->broken)
		return push_err(L, r);
	c = new_reader(L, ntees);
	lua_createtable(L, ntees, 0);
	for (int i = 0; i < ntees; i++) {
		c->tees[i] = ls_tosink(L, first + i);
		lua_pushvalue(L, first + i);
		lua_rawseti(L, -2, i + 1);
	}
	lua_setiuservalue(L, -2, UV_TEES);
	lua_pushvalue(L, 1);
	lua_setiuservalue(L, -2, UV_SOURCE);
	c->name = r->path;
	c->max_size = max_size;
	c->max_ratio = max_ratio;
	c->parent = r;
	r->child = c;
	return start(L, c, raw);
}

static int l_bytes_in(lua_State *L)
{
	struct reader *r = luaL_checkudata(L, 1, READER_MT);

	lua_pushinteger(L, (lua_Integer)r->bytes_in);
	return 1;
}

const _Atomic uint64_t *ls_archive_bytes_in(lua_State *L, int idx)
{
	struct reader *r = luaL_checkudata(L, idx, READER_MT);

	return &r->bytes_in;
}

static int l_close(lua_State *L)
{
	struct reader *r = luaL_checkudata(L, 1, READER_MT);

	if (ls_reader_close(r, 1) != 0)
		return ls_fail(L, r->err_class ? r->err_class : LS_EARCHIVE,
			       "%s", r->err);
	lua_pushboolean(L, 1);
	return 1;
}

static int l_gc(lua_State *L)
{
	/* Collected unclosed: no I/O into sinks that may be finished already. */
	ls_reader_close(luaL_checkudata(L, 1, READER_MT), 0);
	return 0;
}

static int l_tbc(lua_State *L)
{
	/* Leaving a scope by error: just release, the tees are of no use. */
	ls_reader_close(luaL_checkudata(L, 1, READER_MT), lua_isnil(L, 2));
	return 0;
}

static int l_tostring(lua_State *L)
{
	struct reader *r = luaL_checkudata(L, 1, READER_MT);

	if (r->closed)
		lua_pushstring(L, "archive reader (closed)");
	else
		lua_pushfstring(L, "archive reader (%p)", (void *)r);
	return 1;
}

int luaopen_layersplit_archive(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"next", l_next}, {"peek", l_peek}, {"read", l_read},
		{"pipe", l_pipe}, {"skip", l_skip}, {"nested", l_nested},
		{"bytes_in", l_bytes_in}, {"close", l_close}, {NULL, NULL},
	};
	static const luaL_Reg meta[] = {
		{"__gc", l_gc}, {"__close", l_tbc}, {"__tostring", l_tostring},
		{NULL, NULL},
	};
	static const luaL_Reg funcs[] = {
		{"open", l_open}, {"open_memory", l_open_memory}, {NULL, NULL},
	};

	if (luaL_newmetatable(L, READER_MT)) {
		luaL_setfuncs(L, meta, 0);
		luaL_newlib(L, methods);
		lua_setfield(L, -2, "__index");
	}
	lua_pop(L, 1);
	luaL_newlib(L, funcs);
	return 1;
}
