/* archive.c: layersplit.archive, the image archive read once, in order, as a
 * stream.  A reader wraps one libarchive handle; a nested reader's handle
 * pulls its input from the parent's current entry and tees it to sinks. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* <archive.h> may be src/archive.h (under -Isrc), which passes on to libarchive's. */
#include <archive.h>
#include <archive_entry.h>
#include <lauxlib.h>
#include <lua.h>

#include "archive.h"
#include "sink.h"

#define READER_MT "layersplit.archive.reader"
#define READ_BUF_SIZE (1 << 20)
#define PEEK_MAX (1 << 20)

/* User values: what keeps the input alive, the current entry's path, the tees. */
enum { UV_SOURCE = 1, UV_PATH, UV_TEES, UV_COUNT = UV_TEES };

struct reader {
	struct archive *a;
	int closed;
	int fd, own_fd;
	const char *name;		/* for I/O messages; kept alive by UV_SOURCE */
	const unsigned char *mem;	/* open_memory input */
	size_t mem_len, mem_pos;
	unsigned char *buf;		/* read(2) buffer */
	uint64_t bytes_in;

	struct reader *parent, *child;
	int tee_failed;

	int in_entry, at_end, skipped;
	const char *path;		/* kept alive by UV_PATH */
	int64_t size;
	int size_set;
	int64_t taken;			/* bytes of the entry handed out */
	unsigned char *peek;		/* first bytes of the entry, kept for peek */
	size_t peek_cap, peek_len, peek_pos;
	const unsigned char *blk;	/* rest of the last libarchive data block */
	size_t blk_len;
	int64_t blk_off, pos;		/* blk_off > pos: a sparse hole comes first */
	int data_eof;

	const char *err_class;		/* set: err holds the real cause of a failure */
	int broken;			/* libarchive is in a fatal state */
	char err[512];

	int ntees;
	struct ls_sink *tees[];
};

static const unsigned char zeros[65536];

static void set_err(struct reader *r, const char *class, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->err, sizeof(r->err), fmt, ap);
	va_end(ap);
	r->err_class = class;
}

/* Sinks report a class string; map it to ours so the pointer stays valid. */
static const char *known_class(const char *class)
{
	if (class != NULL && strcmp(class, LS_EIO) == 0)
		return LS_EIO;
	if (class != NULL && strcmp(class, LS_ESIGNAL) == 0)
		return LS_ESIGNAL;
#ifdef LS_EUSAGE
	if (class != NULL && strcmp(class, LS_EUSAGE) == 0)
		return LS_EUSAGE;
#endif
	return LS_EARCHIVE;
}

/* A libarchive call failed: keep the cause a callback recorded, else its message. */
static void archive_err(struct reader *r, int rc, const char *prefix)
{
	const char *msg = r->a ? archive_error_string(r->a) : NULL;

	if (r->err_class == NULL)
		set_err(r, LS_EARCHIVE, "%s: %s", prefix,
			msg ? msg : "unknown archive error");
	if (rc == ARCHIVE_FATAL)
		r->broken = 1;
}

static int push_err(lua_State *L, struct reader *r)
{
	const char *class = r->err_class ? r->err_class : LS_EARCHIVE;

	if (!r->broken)
		r->err_class = NULL;
	return ls_fail(L, class, "%s", r->err);
}

/* Moves another reader's or a sink's failure into r (for a callback's caller). */
static void take_err(struct reader *r, struct reader *from)
{
	set_err(r, from->err_class ? from->err_class : LS_EARCHIVE, "%s",
		from->err);
	if (!from->broken)
		from->err_class = NULL;
}

/* A read callback fails: libarchive only passes on "read error", so r keeps the cause. */
static la_ssize_t cb_fail(struct archive *a, struct reader *r, const char *class,
			  const char *fmt, ...)
{
	va_list ap;

	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(r->err, sizeof(r->err), fmt, ap);
		va_end(ap);
		r->err_class = class;
	}
	archive_set_error(a, -1, "%s", r->err);
	return -1;
}

static la_ssize_t fd_read(struct archive *a, void *ud, const void **buf)
{
	struct reader *r = ud;
	ssize_t n;

	do {
		if (ls_interrupted)
			return cb_fail(a, r, LS_ESIGNAL, "interrupted");
		n = read(r->fd, r->buf, READ_BUF_SIZE);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return cb_fail(a, r, LS_EIO, "%s: %s", r->name, strerror(errno));
	r->bytes_in += n;
	*buf = r->buf;
	return n;
}

static la_ssize_t mem_read(struct archive *a, void *ud, const void **buf)
{
	struct reader *r = ud;
	size_t n = r->mem_len - r->mem_pos;

	if (ls_interrupted)
		return cb_fail(a, r, LS_ESIGNAL, "interrupted");
	if (n > READ_BUF_SIZE)
		n = READ_BUF_SIZE;
	*buf = r->mem + r->mem_pos;
	r->mem_pos += n;
	r->bytes_in += n;
	return (la_ssize_t)n;
}

/* The entry's next bytes after the peek buffer, not consumed yet: 1, 0 at the
 * end, -1 on failure (recorded in r). */
static int view(struct reader *r, const void **p, size_t *n)
{
	const void *b;
	size_t len;
	la_int64_t off;
	int rc;

	for (;;) {
		if (r->blk_off > r->pos) {
			uint64_t hole = (uint64_t)(r->blk_off - r->pos);

			*p = zeros;
			*n = hole < sizeof(zeros) ? (size_t)hole : sizeof(zeros);
			return 1;
		}
		if (r->blk_len > 0) {
			*p = r->blk;
			*n = r->blk_len;
			return 1;
		}
		if (r->data_eof)
			return 0;
		if (r->broken)
			return -1;
		off = r->pos;
		rc = archive_read_data_block(r->a, &b, &len, &off);
		if (rc == ARCHIVE_EOF && r->err_class != NULL)
			rc = ARCHIVE_FATAL; /* a failed read is never a clean end */
		if (rc == ARCHIVE_EOF) {
			r->data_eof = 1;
			if (off > r->pos) /* the entry ends in a hole */
				r->blk_off = off;
			continue;
		}
		if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
			archive_err(r, rc, r->path);
			return -1;
		}
		if (off < r->pos) {
			set_err(r, LS_EARCHIVE, "%s: data blocks out of order", r->path);
			return -1;
		}
		r->blk = b;
		r->blk_len = len;
		r->blk_off = off;
	}
}

static void consume(struct reader *r, size_t k)
{
	if (r->blk_off == r->pos) {
		r->blk += k;
		r->blk_len -= k;
		r->blk_off += k;
	}
	r->pos += k;
}

/* Hands out the entry's next chunk, peeked bytes first; valid until the next call. */
static int next_chunk(struct reader *r, const void **p, size_t *n)
{
	int rc;

	if (r->peek_pos < r->peek_len) {
		*p = r->peek + r->peek_pos;
		*n = r->peek_len - r->peek_pos;
		r->peek_pos = r->peek_len;
		r->taken += *n;
		return 1;
	}
	rc = view(r, p, n);
	if (rc == 1) {
		consume(r, *n);
		r->taken += *n;
	}
	return rc;
}

static int write_tees(struct reader *r, const void *p, size_t n)
{
	struct ls_sink *failed;

	if (ls_sinks_write(r->tees, r->ntees, p, n, &failed) == 0)
		return 0;
	r->tee_failed = 1;
	set_err(r, known_class(failed->ops->class(failed)), "%s",
		failed->ops->error(failed));
	return -1;
}

/* Input of a nested libarchive: the parent's entry data, teed on its way. */
static la_ssize_t nested_read(struct archive *a, void *ud, const void **buf)
{
	struct reader *r = ud;
	const void *p;
	size_t n;
	int rc;

	if (ls_interrupted)
		return cb_fail(a, r, LS_ESIGNAL, "interrupted");
	if (r->parent == NULL)
		return cb_fail(a, r, LS_EIO, "the outer reader was closed");
	rc = next_chunk(r->parent, &p, &n);
	if (rc == 0)
		return 0;
	if (rc < 0) {
		take_err(r, r->parent);
		return cb_fail(a, r, NULL, NULL);
	}
	if (write_tees(r, p, n) != 0)
		return cb_fail(a, r, NULL, NULL);
	r->bytes_in += n;
	*buf = p;
	return (la_ssize_t)n;
}

/* Feeds what the nested libarchive did not read through the tees. */
static int drain_parent(struct reader *r)
{
	const void *p;
	size_t n;
	int rc;

	while ((rc = next_chunk(r->parent, &p, &n)) > 0) {
		if (ls_interrupted) {
			set_err(r, LS_ESIGNAL, "interrupted");
			return -1;
		}
		if (write_tees(r, p, n) != 0)
			return -1;
	}
	if (rc < 0) {
		take_err(r, r->parent);
		return -1;
	}
	return 0;
}

/* Idempotent; drain: a nested reader first feeds the rest of its input to its tees. */
static int close_reader(struct reader *r, int drain)
{
	int rc = 0;

	if (r->closed)
		return 0;
	r->closed = 1;
	if (r->child != NULL)
		close_reader(r->child, 0);
	if (r->a != NULL)
		archive_read_free(r->a);
	r->a = NULL;
	if (r->parent != NULL) {
		if (drain && r->tee_failed)
			rc = -1; /* the tees cannot see the whole entry any more */
		else if (drain)
			rc = drain_parent(r);
		r->parent->child = NULL;
		r->parent = NULL;
	}
	if (r->own_fd && r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	free(r->buf);
	r->buf = NULL;
	free(r->peek);
	r->peek = NULL;
	return rc;
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

/* Opens r's libarchive handle on the callback; leaves r or a failure on the
 * stack.  Format detection happens here, so garbage fails here.  A nested
 * reader that fails still feeds the whole entry to its tees, if it can. */
/* The compressions image archives use, each built into libarchive; not
 * filter_all, which would run external programs on hostile input. */
static int enable_filters(struct archive *a)
{
	int (*const filters[])(struct archive *) = {
		archive_read_support_filter_gzip, archive_read_support_filter_zstd,
		archive_read_support_filter_xz, archive_read_support_filter_bzip2,
		archive_read_support_filter_lzma, archive_read_support_filter_lz4,
	};

	for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++)
		if (filters[i](a) != ARCHIVE_OK)
			return ARCHIVE_FATAL;
	return ARCHIVE_OK;
}

static int start(lua_State *L, struct reader *r, int raw,
		 archive_read_callback *cb)
{
	int rc;

	r->a = archive_read_new();
	if (r->a == NULL) {
		close_reader(r, 0);
		return ls_fail(L, LS_EIO, "%s", strerror(ENOMEM));
	}
	rc = enable_filters(r->a);
	if (rc == ARCHIVE_OK)
		rc = archive_read_support_format_empty(r->a);
	if (rc == ARCHIVE_OK)
		rc = raw ? archive_read_support_format_raw(r->a)
			 : archive_read_support_format_tar(r->a);
	if (rc == ARCHIVE_OK)
		rc = archive_read_open(r->a, r, NULL, cb, NULL);
	if (rc != ARCHIVE_OK || r->err_class != NULL) {
		archive_err(r, ARCHIVE_FATAL, r->name);
		close_reader(r, 1);
		return push_err(L, r);
	}
	return 1;
}

static int l_open(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	int raw = opt_raw(L, 2);
	struct reader *r = new_reader(L, 0);
	struct stat st;
	int e;

	lua_pushvalue(L, 1);
	lua_setiuservalue(L, -2, UV_SOURCE);
	r->name = strcmp(path, "-") == 0 ? "stdin" : path;
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
		close_reader(r, 0);
		return ls_fail(L, LS_EIO, "%s: %s", r->name, strerror(e));
	}
	return start(L, r, raw, fd_read);
}

static int l_open_memory(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	int raw = opt_raw(L, 2);
	struct reader *r = new_reader(L, 0);

	lua_pushvalue(L, 1);
	lua_setiuservalue(L, -2, UV_SOURCE);
	r->name = "memory";
	r->mem = (const unsigned char *)s;
	r->mem_len = len;
	return start(L, r, raw, mem_read);
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

/* name without leading "./" and trailing "/", or NULL with *why if it is unsafe. */
static const char *safe_path(const char *name, size_t *len, const char **why)
{
	const char *p = name, *c, *end, *slash;

	while (p[0] == '.' && p[1] == '/') {
		for (p += 2; *p == '/'; p++)
			;
	}
	if (*p == '/') {
		*why = "absolute path in archive";
		return NULL;
	}
	end = p + strlen(p);
	while (end > p && end[-1] == '/')
		end--;
	for (c = p; c < end; c = slash + 1) {
		slash = memchr(c, '/', (size_t)(end - c));
		if (slash == NULL)
			slash = end;
		if (slash - c == 2 && c[0] == '.' && c[1] == '.') {
			*why = "path climbs out of the archive with ..";
			return NULL;
		}
	}
	if (end == p) /* "./" itself: the archive root */
		return *len = 1, ".";
	*len = (size_t)(end - p);
	return p;
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

static int l_next(lua_State *L)
{
	struct reader *r = check(L, 0);
	struct archive_entry *e;
	const char *name, *path, *target = NULL, *type, *why = NULL;
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
	if (rc == ARCHIVE_EOF) {
		r->at_end = 1;
		lua_pushnil(L);
		return 1;
	}
	if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
		archive_err(r, rc, r->name);
		return push_err(L, r);
	}
	name = archive_entry_pathname(e);
	if (name == NULL)
		return ls_fail(L, LS_EARCHIVE, "entry with an unreadable name");
	path = safe_path(name, &len, &why);
	if (path == NULL)
		return ls_fail(L, LS_EARCHIVE, "%s: %s", name, why);
	if (archive_entry_hardlink(e) != NULL) {
		type = "hardlink";
		target = safe_path(archive_entry_hardlink(e), &tlen, &why);
		if (target == NULL)
			return ls_fail(L, LS_EARCHIVE, "%s: hard link to %s: %s",
				       name, archive_entry_hardlink(e), why);
	} else if (archive_entry_filetype(e) == AE_IFLNK) {
		type = "symlink";
		target = archive_entry_symlink(e) ? archive_entry_symlink(e) : "";
		tlen = strlen(target);
	} else {
		type = archive_entry_filetype(e) == AE_IFREG ? "file"
			: archive_entry_filetype(e) == AE_IFDIR ? "dir" : "other";
	}
	lua_createtable(L, 0, 5);
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
		rc = view(r, &p, &avail);
		if (rc == 0)
			break;
		if (rc < 0)
			return push_err(L, r);
		if (avail > n - r->peek_len)
			avail = n - r->peek_len;
		memcpy(r->peek + r->peek_len, p, avail);
		consume(r, avail);
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
	while ((rc = next_chunk(r, &p, &n)) > 0) {
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
	while ((rc = next_chunk(r, &p, &n)) > 0) {
		if (ls_interrupted)
			return ls_fail(L, LS_ESIGNAL, "interrupted");
		if (ls_sinks_write(sinks, nsinks, p, n, &failed) != 0)
			return ls_fail(L, known_class(failed->ops->class(failed)),
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
		archive_err(r, rc, r->path);
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
	c->parent = r;
	r->child = c;
	return start(L, c, raw, nested_read);
}

static int l_bytes_in(lua_State *L)
{
	struct reader *r = luaL_checkudata(L, 1, READER_MT);

	lua_pushinteger(L, (lua_Integer)r->bytes_in);
	return 1;
}

static int l_close(lua_State *L)
{
	struct reader *r = luaL_checkudata(L, 1, READER_MT);

	if (close_reader(r, 1) != 0)
		return ls_fail(L, r->err_class ? r->err_class : LS_EARCHIVE,
			       "%s", r->err);
	lua_pushboolean(L, 1);
	return 1;
}

static int l_gc(lua_State *L)
{
	/* Collected unclosed: no I/O into sinks that may be finished already. */
	close_reader(luaL_checkudata(L, 1, READER_MT), 0);
	return 0;
}

static int l_tbc(lua_State *L)
{
	/* Leaving a scope by error: just release, the tees are of no use. */
	close_reader(luaL_checkudata(L, 1, READER_MT), lua_isnil(L, 2));
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
