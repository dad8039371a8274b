/* fs.c: layersplit.fs, path checks and file I/O.  The path rules are in
 * path.c, the staging directory in stage.c, fs.writer in fswriter.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h> /* renameat2 */
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>

#include <lauxlib.h>

#include "fs.h"
#include "fstree.h"
#include "fswriter.h"
#include "path.h"
#include "printable.h"
#include "sink.h"

#define FD_MT "layersplit.fs.fd"
#define READ_MAX_DEFAULT (16 * 1024 * 1024)
#define COPY_CHUNK (64 * 1024 * 1024) /* checks ls_interrupted between chunks */

/* ---- path functions ---- */

/* nil, message, "archive" for a path that path.c refused. */
static int refuse(lua_State *L, const char *why, enum ls_path_names names,
		  const char *path, const char *target)
{
	if (names == LS_PATH_NAMES_LINK)
		return ls_fail(L, LS_EARCHIVE, "%s -> %s: %s", path, target,
			       why);
	if (names == LS_PATH_NAMES_NOTHING)
		return ls_fail(L, LS_EARCHIVE, "%s", why);
	return ls_fail(L, LS_EARCHIVE, "%s: %s", path, why);
}

static int l_normalize(lua_State *L)
{
	size_t len, outlen;
	const char *path = luaL_checklstring(L, 1, &len), *why;
	enum ls_path_names names;
	luaL_Buffer b;
	char *out = luaL_buffinitsize(L, &b, len + 1);

	why = ls_path_normalize(path, len, out, &outlen, &names);
	if (why != NULL)
		return refuse(L, why, names, path, NULL);
	luaL_pushresultsize(&b, outlen);
	return 1;
}

static int l_resolve_link(lua_State *L)
{
	size_t llen, tlen, outlen;
	const char *link = luaL_checklstring(L, 1, &llen);
	const char *target = luaL_checklstring(L, 2, &tlen), *why;
	enum ls_path_names names;
	luaL_Buffer b;
	char *out = luaL_buffinitsize(L, &b, llen + tlen + 2);

	why = ls_path_resolve_link(link, llen, target, tlen, out, &outlen,
				   &names);
	if (why != NULL)
		return refuse(L, why, names, link, target);
	luaL_pushresultsize(&b, outlen);
	return 1;
}

static int l_join(lua_State *L)
{
	size_t dlen, nlen;
	const char *dir = luaL_checklstring(L, 1, &dlen);
	const char *name = luaL_checklstring(L, 2, &nlen);
	const char *why = ls_path_unsafe_name(name, nlen);

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

const char *ls_fs_checkpath(lua_State *L, int arg)
{
	size_t len;
	const char *path = luaL_checklstring(L, arg, &len);

	luaL_argcheck(L, len > 0 && strlen(path) == len, arg,
		      "empty path or NUL byte in path");
	return path;
}

/* nil, "<path>: <strerror>", "io"; EINTR after a signal is class "signal". */
int ls_fs_fail_errno(lua_State *L, const char *path, int err)
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
	const char *path = ls_fs_checkpath(L, 1);
	size_t len;
	const char *data = luaL_checklstring(L, 2, &len);
	int fd = ls_fs_create(path), err;

	if (fd < 0)
		return ls_fs_fail_errno(L, path, errno);
	if (ls_fs_write_all(fd, data, len) != 0) {
		err = errno;
		(void)close(fd); /* the write error is the one to report */
		(void)unlink(path);
		return ls_fs_fail_errno(L, path, err);
	}
	if (close(fd) != 0) {
		err = errno;
		(void)unlink(path);
		return ls_fs_fail_errno(L, path, err);
	}
	lua_pushboolean(L, 1);
	return 1;
}

static int l_read_file(lua_State *L)
{
	const char *path = ls_fs_checkpath(L, 1);
	lua_Integer max = luaL_optinteger(L, 2, READ_MAX_DEFAULT);
	uint64_t total = 0, hint = 0;
	int *fd, err = 0, r;
	struct stat st;
	luaL_Buffer b;
	const int too_large = -1; /* not an errno */

	luaL_argcheck(L, max >= 0, 2, "negative size");
	fd = newfd(L);
	if ((*fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return ls_fs_fail_errno(L, path, errno);
	if (fstat(*fd, &st) != 0)
		err = errno;
	else if (S_ISREG(st.st_mode) && st.st_size > max)
		err = too_large;
	else if (S_ISREG(st.st_mode))
		hint = (uint64_t)st.st_size + 1; /* +1 to see the end */
	luaL_buffinit(L, &b);
	while (err == 0) {
		uint64_t room = (uint64_t)max - total + 1;
		uint64_t want = hint > total ? hint - total : 65536;
		if (want > room)
			want = room;
		char *p = luaL_prepbuffsize(&b, (size_t)want);
		ssize_t n = read(*fd, p, (size_t)want);
		if (n < 0 && errno == EINTR && !ls_interrupted)
			continue;
		if (n <= 0) {
			err = n < 0 ? errno : 0;
			break;
		}
		luaL_addsize(&b, (size_t)n);
		if ((total += (uint64_t)n) > (uint64_t)max)
			err = too_large;
	}
	r = close(*fd);
	*fd = -1;
	if (r != 0 && err == 0)
		err = errno;
	if (err == too_large)
		return ls_fail(L, LS_EARCHIVE, "%s: larger than %I bytes", path,
			       max);
	if (err != 0)
		return ls_fs_fail_errno(L, path, err);
	luaL_pushresult(&b);
	return 1;
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

int ls_fs_copy_data(int in, int out, const struct stat *st, uint64_t *copied,
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
	const char *src = ls_fs_checkpath(L, 1), *dst = ls_fs_checkpath(L, 2);
	uint64_t copied = 0;
	int in, out, err, src_failed = 0;
	struct stat st;

	/* O_NONBLOCK: a FIFO must not hang us before the check below. */
	if ((in = open(src, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0)
		return ls_fs_fail_errno(L, src, errno);
	if (fstat(in, &st) != 0)
		err = errno;
	else
		err = S_ISDIR(st.st_mode) ? EISDIR : 0;
	if (err != 0 || !S_ISREG(st.st_mode)) {
		(void)close(in); /* reporting why it can't be copied */
		if (err != 0)
			return ls_fs_fail_errno(L, src, err);
		return ls_fail(L, LS_EIO, "%s: not a regular file", src);
	}
	if ((out = ls_fs_create(dst)) < 0) {
		err = errno;
		(void)close(in); /* reporting the create failure */
		return ls_fs_fail_errno(L, dst, err);
	}
	err = ls_fs_copy_data(in, out, &st, &copied, &src_failed);
	if (close(out) != 0 && err == 0)
		err = errno;
	if (close(in) != 0 && err == 0) {
		err = errno;
		src_failed = 1;
	}
	if (err != 0) {
		(void)unlink(dst); /* ours: created exclusively above */
		return ls_fs_fail_errno(L, src_failed ? src : dst, err);
	}
	lua_pushinteger(L, (lua_Integer)copied);
	return 1;
}

static int l_remove(lua_State *L)
{
	const char *path = ls_fs_checkpath(L, 1);

	if (unlink(path) != 0)
		return ls_fs_fail_errno(L, path, errno);
	lua_pushboolean(L, 1);
	return 1;
}

/* Moves a file within one file system without copying; like every file this
 * module creates, the destination must not exist yet. */
static int l_rename(lua_State *L)
{
	const char *from = ls_fs_checkpath(L, 1), *to = ls_fs_checkpath(L, 2);

	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) != 0) {
		if (errno != EINVAL && errno != ENOSYS)
			return ls_fs_fail_errno(L, errno == EEXIST ? to : from, errno);
		/* a file system without RENAME_NOREPLACE: check, then rename */
		if (access(to, F_OK) == 0)
			return ls_fs_fail_errno(L, to, EEXIST);
		if (rename(from, to) != 0)
			return ls_fs_fail_errno(L, from, errno);
	}
	lua_pushboolean(L, 1);
	return 1;
}

static int l_mkdir(lua_State *L)
{
	const char *path = ls_fs_checkpath(L, 1);

	if (mkdir(path, 0755) != 0)
		return ls_fs_fail_errno(L, path, errno);
	lua_pushboolean(L, 1);
	return 1;
}

static int l_kind(lua_State *L)
{
	const char *path = ls_fs_checkpath(L, 1);
	struct stat st;

	if (lstat(path, &st) != 0) {
		if (errno != ENOENT && errno != ENOTDIR)
			return ls_fs_fail_errno(L, path, errno);
		lua_pushnil(L); /* absent */
		return 1;
	}
	lua_pushstring(L, S_ISREG(st.st_mode) ? "file" :
			  S_ISDIR(st.st_mode) ? "dir" :
			  S_ISLNK(st.st_mode) ? "link" : "other");
	return 1;
}

static const luaL_Reg fs_funcs[] = {
	{"normalize", l_normalize},
	{"resolve_link", l_resolve_link},
	{"join", l_join},
	{"stage", ls_fs_stage},
	{"sync", ls_fs_sync},
	{"commit", ls_fs_commit},
	{"discard", ls_fs_discard},
	{"write_file", l_write_file},
	{"read_file", l_read_file},
	{"copy", l_copy},
	{"remove", l_remove},
	{"rename", l_rename},
	{"mkdir", l_mkdir},
	{"kind", l_kind},
	{"printable", ls_l_printable},
	{"writer", ls_fs_writer},
	{"list", ls_fs_list},
	{"tree", ls_fs_tree},
	{"remove_tree", ls_fs_remove_tree},
	{NULL, NULL},
};

int luaopen_layersplit_fs(lua_State *L)
{
	ls_fs_writer_meta(L);
	ls_fs_tree_meta(L);
	if (luaL_newmetatable(L, FD_MT)) {
		lua_pushcfunction(L, fd_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_pop(L, 1);
	luaL_newlib(L, fs_funcs);
	return 1;
}
