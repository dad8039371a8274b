/* fs.c: layersplit.fs, path checks, the staging directory and file I/O. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>

#include <lauxlib.h>

#include "fs.h"
#include "sink.h"

#define WRITER_MT "layersplit.fs.writer"
#define FD_MT "layersplit.fs.fd"
#define READ_MAX_DEFAULT (16 * 1024 * 1024)
#define COPY_CHUNK (64 * 1024 * 1024) /* checks ls_interrupted between chunks */
#define RM_DEPTH_MAX 256
#define RM_PASSES 4

/* ---- pure path functions ---- */

/* Appends the components of in[0..len) to out[0..*outlen), dropping empty
 * and "." ones and resolving "..".  0, or -1 if ".." climbs above out. */
static int push_components(char *out, size_t *outlen, const char *in,
			   size_t len)
{
	for (size_t i = 0, j; i < len; i = j + 1) {
		for (j = i; j < len && in[j] != '/'; j++)
			;
		size_t n = j - i;
		if (n == 0 || (n == 1 && in[i] == '.'))
			continue;
		if (n == 2 && in[i] == '.' && in[i + 1] == '.') {
			if (*outlen == 0)
				return -1;
			char *slash = memrchr(out, '/', *outlen);
			*outlen = slash ? (size_t)(slash - out) : 0;
			continue;
		}
		if (*outlen > 0)
			out[(*outlen)++] = '/';
		memcpy(out + *outlen, in + i, n);
		*outlen += n;
	}
	return 0;
}

/* Why an archive path can't be normalized at all, or NULL. */
static const char *bad_archive_path(const char *s, size_t len)
{
	if (memchr(s, '\0', len) != NULL)
		return "NUL byte in path";
	if (len > 0 && s[0] == '/')
		return "absolute path";
	return NULL;
}

static int l_normalize(lua_State *L)
{
	size_t len, outlen = 0;
	const char *path = luaL_checklstring(L, 1, &len);
	const char *why = bad_archive_path(path, len);
	luaL_Buffer b;
	char *out;

	if (why != NULL)
		return ls_fail(L, LS_EARCHIVE, "%s: %s", path, why);
	out = luaL_buffinitsize(L, &b, len + 1);
	if (push_components(out, &outlen, path, len) != 0)
		return ls_fail(L, LS_EARCHIVE,
			       "%s: path climbs out of the archive", path);
	if (outlen == 0)
		return ls_fail(L, LS_EARCHIVE, "%s%sempty path", path,
			       len > 0 ? ": " : "");
	luaL_pushresultsize(&b, outlen);
	return 1;
}

static int l_resolve_link(lua_State *L)
{
	size_t llen, tlen, outlen = 0;
	const char *link = luaL_checklstring(L, 1, &llen);
	const char *target = luaL_checklstring(L, 2, &tlen);
	const char *why = bad_archive_path(link, llen);
	luaL_Buffer b;
	char *out, *slash;

	if (why != NULL)
		return ls_fail(L, LS_EARCHIVE, "%s: %s", link, why);
	if (memchr(target, '\0', tlen) != NULL)
		return ls_fail(L, LS_EARCHIVE,
			       "%s: NUL byte in link target", link);
	if (tlen == 0)
		return ls_fail(L, LS_EARCHIVE, "%s: empty link target", link);
	if (target[0] == '/')
		return ls_fail(L, LS_EARCHIVE,
			       "%s -> %s: link target is absolute", link, target);
	out = luaL_buffinitsize(L, &b, llen + tlen + 2);
	if (push_components(out, &outlen, link, llen) != 0)
		return ls_fail(L, LS_EARCHIVE,
			       "%s: path climbs out of the archive", link);
	if (outlen == 0)
		return ls_fail(L, LS_EARCHIVE, "%s%sempty path", link,
			       llen > 0 ? ": " : "");
	/* The target is relative to the directory holding the link. */
	slash = memrchr(out, '/', outlen);
	outlen = slash ? (size_t)(slash - out) : 0;
	if (push_components(out, &outlen, target, tlen) != 0)
		return ls_fail(L, LS_EARCHIVE,
			       "%s -> %s: link target climbs out of the archive",
			       link, target);
	if (outlen == 0)
		return ls_fail(L, LS_EARCHIVE,
			       "%s -> %s: link target is the archive root",
			       link, target);
	luaL_pushresultsize(&b, outlen);
	return 1;
}

/* Why name is not a safe relative path to put under a directory, or NULL. */
static const char *unsafe_name(const char *s, size_t len)
{
	if (len == 0)
		return "empty name";
	if (memchr(s, '\0', len) != NULL)
		return "NUL byte in name";
	if (s[0] == '/')
		return "absolute name";
	for (size_t i = 0, j; i <= len; i = j + 1) {
		for (j = i; j < len && s[j] != '/'; j++)
			;
		if (j == i)
			return "empty component";
		if (j - i == 1 && s[i] == '.')
			return "'.' component";
		if (j - i == 2 && s[i] == '.' && s[i + 1] == '.')
			return "'..' component";
	}
	return NULL;
}

static int l_join(lua_State *L)
{
	size_t dlen, nlen;
	const char *dir = luaL_checklstring(L, 1, &dlen);
	const char *name = luaL_checklstring(L, 2, &nlen);
	const char *why = unsafe_name(name, nlen);

	luaL_argcheck(L, dlen > 0 && strlen(dir) == dlen, 1,
		      "empty directory or NUL byte in it");
	if (why != NULL)
		return luaL_argerror(L, 2, lua_pushfstring(L,
			"unsafe name '%s': %s", name, why));
	lua_pushfstring(L, "%s%s%s", dir, dir[dlen - 1] == '/' ? "" : "/",
			name);
	return 1;
}

/* ---- helpers for calls that touch the file system ---- */

static const char *checkpath(lua_State *L, int arg)
{
	size_t len;
	const char *path = luaL_checklstring(L, arg, &len);

	luaL_argcheck(L, len > 0 && strlen(path) == len, arg,
		      "empty path or NUL byte in path");
	return path;
}

/* nil, "<path>: <strerror>", "io"; EINTR after a signal is class "signal". */
static int fail_errno(lua_State *L, const char *path, int err)
{
	if (err == EINTR && ls_interrupted)
		return ls_fail(L, LS_ESIGNAL, "%s: interrupted", path);
	return ls_fail(L, LS_EIO, "%s: %s", path, strerror(err));
}

/* A userdata owning an fd, so a Lua error between open and close can't leak it. */
static int *newfd(lua_State *L)
{
	int *fd = lua_newuserdatauv(L, sizeof(*fd), 0);

	*fd = -1;
	luaL_setmetatable(L, FD_MT);
	return fd;
}

static int fd_gc(lua_State *L)
{
	int *fd = luaL_checkudata(L, 1, FD_MT);

	if (*fd >= 0)
		(void)close(*fd); /* only reached on an error path already */
	*fd = -1;
	return 0;
}

int ls_fs_create(const char *path)
{
	return open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW,
		    0644);
}

int ls_fs_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR && !ls_interrupted)
				continue;
			return -1;
		}
		if (n == 0) {
			errno = EIO; /* a write that makes no progress would loop */
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int l_write_file(lua_State *L)
{
	const char *path = checkpath(L, 1);
	size_t len;
	const char *data = luaL_checklstring(L, 2, &len);
	int fd = ls_fs_create(path), err;

	if (fd < 0)
		return fail_errno(L, path, errno);
	if (ls_fs_write_all(fd, data, len) != 0) {
		err = errno;
		(void)close(fd); /* the write error is the one to report */
		(void)unlink(path);
		return fail_errno(L, path, err);
	}
	if (close(fd) != 0) {
		err = errno;
		(void)unlink(path);
		return fail_errno(L, path, err);
	}
	lua_pushboolean(L, 1);
	return 1;
}

static int l_read_file(lua_State *L)
{
	const char *path = checkpath(L, 1);
	lua_Integer max = luaL_optinteger(L, 2, READ_MAX_DEFAULT);
	int *fd, err;
	uint64_t total = 0, hint = 0;
	struct stat st;
	luaL_Buffer b;

	luaL_argcheck(L, max >= 0, 2, "negative size");
	fd = newfd(L);
	if ((*fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return fail_errno(L, path, errno);
	if (fstat(*fd, &st) != 0)
		return fail_errno(L, path, errno);
	if (S_ISREG(st.st_mode)) {
		if (st.st_size > max)
			goto too_large;
		hint = (uint64_t)st.st_size + 1; /* +1 to see the end */
	}
	luaL_buffinit(L, &b);
	for (;;) {
		uint64_t room = (uint64_t)max - total + 1;
		uint64_t want = hint > total ? hint - total : 65536;
		if (want > room)
			want = room;
		char *p = luaL_prepbuffsize(&b, (size_t)want);
		ssize_t n = read(*fd, p, (size_t)want);
		if (n < 0) {
			if (errno == EINTR && !ls_interrupted)
				continue;
			return fail_errno(L, path, errno);
		}
		if (n == 0)
			break;
		luaL_addsize(&b, (size_t)n);
		total += (uint64_t)n;
		if (total > (uint64_t)max)
			goto too_large;
	}
	err = close(*fd);
	*fd = -1;
	if (err != 0)
		return fail_errno(L, path, errno);
	luaL_pushresult(&b);
	return 1;
too_large:
	return ls_fail(L, LS_EARCHIVE, "%s: larger than %I bytes", path, max);
}

/* Copies in to out with read/write from their current offsets: 0 or errno. */
static int copy_rw(int in, int out, uint64_t *copied, int *src_failed)
{
	char buf[65536];

	for (;;) {
		if (ls_interrupted)
			return EINTR;
		ssize_t n = read(in, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			*src_failed = 1;
			return errno;
		}
		if (n == 0)
			return 0;
		if (ls_fs_write_all(out, buf, (size_t)n) != 0)
			return errno;
		*copied += (uint64_t)n;
	}
}

/* Reflink, else copy_file_range, else read/write: 0 or errno. */
static int copy_data(int in, int out, const struct stat *st, uint64_t *copied,
		     int *src_failed)
{
	if (ioctl(out, FICLONE, in) == 0) {
		*copied = (uint64_t)st->st_size;
		return 0;
	}
	for (;;) {
		if (ls_interrupted)
			return EINTR;
		ssize_t n = copy_file_range(in, NULL, out, NULL, COPY_CHUNK, 0);
		if (n > 0) {
			*copied += (uint64_t)n;
			continue;
		}
		if (n == 0)
			return 0;
		if (errno == EINTR)
			continue;
		/* These mean "not between these files": the offsets have
		 * advanced past what was copied, so read/write goes on from there. */
		if (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
		    errno == EOPNOTSUPP || errno == EPERM)
			return copy_rw(in, out, copied, src_failed);
		return errno;
	}
}

static int l_copy(lua_State *L)
{
	const char *src = checkpath(L, 1), *dst = checkpath(L, 2);
	uint64_t copied = 0;
	int in, out, err, src_failed = 0;
	struct stat st;

	if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0)
		return fail_errno(L, src, errno);
	if (fstat(in, &st) != 0)
		err = errno;
	else if (!S_ISREG(st.st_mode))
		err = S_ISDIR(st.st_mode) ? EISDIR : EINVAL; /* no streams */
	else
		err = 0;
	if (err != 0) {
		(void)close(in); /* reporting the fstat failure */
		return fail_errno(L, src, err);
	}
	if ((out = ls_fs_create(dst)) < 0) {
		err = errno;
		(void)close(in); /* reporting the create failure */
		return fail_errno(L, dst, err);
	}
	err = copy_data(in, out, &st, &copied, &src_failed);
	if (close(out) != 0 && err == 0)
		err = errno;
	if (close(in) != 0 && err == 0) {
		err = errno;
		src_failed = 1;
	}
	if (err != 0) {
		(void)unlink(dst); /* ours: created exclusively above */
		return fail_errno(L, src_failed ? src : dst, err);
	}
	lua_pushinteger(L, (lua_Integer)copied);
	return 1;
}

static int l_remove(lua_State *L)
{
	const char *path = checkpath(L, 1);

	if (unlink(path) != 0)
		return fail_errno(L, path, errno);
	lua_pushboolean(L, 1);
	return 1;
}

static int l_mkdir(lua_State *L)
{
	const char *path = checkpath(L, 1);

	if (mkdir(path, 0755) != 0)
		return fail_errno(L, path, errno);
	lua_pushboolean(L, 1);
	return 1;
}

static int l_kind(lua_State *L)
{
	const char *path = checkpath(L, 1);
	struct stat st;

	if (lstat(path, &st) != 0) {
		if (errno != ENOENT && errno != ENOTDIR)
			return fail_errno(L, path, errno);
		lua_pushnil(L); /* absent */
		return 1;
	}
	lua_pushstring(L, S_ISREG(st.st_mode) ? "file" :
			  S_ISDIR(st.st_mode) ? "dir" :
			  S_ISLNK(st.st_mode) ? "link" : "other");
	return 1;
}
