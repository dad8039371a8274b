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
	uint64_t total = 0, hint = 0;
	int *fd, err = 0, r;
	struct stat st;
	luaL_Buffer b;
	const int too_large = -1; /* not an errno */

	luaL_argcheck(L, max >= 0, 2, "negative size");
	fd = newfd(L);
	if ((*fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return fail_errno(L, path, errno);
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
		return fail_errno(L, path, err);
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

	/* O_NONBLOCK: a FIFO must not hang us before the check below. */
	if ((in = open(src, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0)
		return fail_errno(L, src, errno);
	if (fstat(in, &st) != 0)
		err = errno;
	else
		err = S_ISDIR(st.st_mode) ? EISDIR : 0;
	if (err != 0 || !S_ISREG(st.st_mode)) {
		(void)close(in); /* reporting why it can't be copied */
		if (err != 0)
			return fail_errno(L, src, err);
		return ls_fail(L, LS_EIO, "%s: not a regular file", src);
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

/* ---- staging directories ---- */

/* Process-wide, because signal cleanup is: one entry per uncommitted stage. */
struct stage {
	char *path;          /* "<parent>/.<base>.layersplit-XXXXXX", as given to Lua */
	char *outdir;        /* the outdir it was made for, without trailing '/' */
	const char *name;    /* basename of path */
	const char *outname; /* basename of outdir */
	int parent;          /* O_PATH fd of the directory holding both */
};

static struct stage *stages;
static size_t nstages, capstages;

/* Removes name under dirfd and everything below it, never following a
 * symlink (a directory is only entered through O_NOFOLLOW).  0 or -1/errno. */
static int remove_tree(int dirfd, const char *name, int depth)
{
	int fd, err = 0;
	DIR *dir;
	struct dirent *de;

	/* Linux says EISDIR for a directory; anything else is removed here. */
	if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR)
		return -1;
	if (depth >= RM_DEPTH_MAX) {
		errno = ELOOP;
		return -1;
	}
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if ((dir = fdopendir(fd)) == NULL) {
		err = errno;
		(void)close(fd); /* reporting the fdopendir failure */
		errno = err;
		return -1;
	}
	/* Removing while reading may hide entries: read again until empty. */
	for (int pass = 0; pass < RM_PASSES; pass++) {
		err = 0;
		rewinddir(dir);
		for (;;) {
			errno = 0;
			if ((de = readdir(dir)) == NULL) {
				if (errno != 0)
					err = errno;
				break;
			}
			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			if (remove_tree(fd, de->d_name, depth + 1) != 0 &&
			    err == 0)
				err = errno;
		}
		if (err != 0)
			break;
		if (unlinkat(dirfd, name, AT_REMOVEDIR) == 0)
			break;
		err = errno;
		if (err != ENOTEMPTY && err != EEXIST)
			break;
	}
	if (closedir(dir) != 0 && err == 0)
		err = errno;
	errno = err;
	return err == 0 ? 0 : -1;
}

static void stage_free(struct stage *s)
{
	if (s->parent >= 0)
		(void)close(s->parent); /* an O_PATH fd: nothing to flush */
	free(s->path);
	free(s->outdir);
	*s = stages[--nstages];
}

void ls_fs_cleanup(void)
{
	while (nstages > 0) {
		struct stage *s = &stages[nstages - 1];
		/* Best effort: nothing is left to report an error to. */
		(void)remove_tree(s->parent, s->name, 0);
		stage_free(s);
	}
}

/* The registered stage named by argument arg; raises if there is none. */
static struct stage *checkstage(lua_State *L, int arg)
{
	const char *path = checkpath(L, arg);

	for (size_t i = 0; i < nstages; i++)
		if (strcmp(stages[i].path, path) == 0)
			return &stages[i];
	luaL_argerror(L, arg, lua_pushfstring(L,
		"'%s' is not an uncommitted stage", path));
	return NULL;
}

/* Pushes outdir without trailing slashes; its length in *len. */
static const char *push_trimmed(lua_State *L, int arg, size_t *len)
{
	const char *outdir = checkpath(L, arg);

	*len = strlen(outdir);
	while (*len > 1 && outdir[*len - 1] == '/')
		(*len)--;
	return lua_pushlstring(L, outdir, *len);
}

/* 1 if the directory is empty, 0 if not, -1 with errno on failure. */
static int dir_is_empty(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int empty = 1, err = 0;
	DIR *dir;
	struct dirent *de;

	if (fd < 0)
		return -1;
	if ((dir = fdopendir(fd)) == NULL) {
		err = errno;
		(void)close(fd); /* reporting the fdopendir failure */
		errno = err;
		return -1;
	}
	for (errno = 0; (de = readdir(dir)) != NULL; errno = 0) {
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
			empty = 0;
			break;
		}
	}
	if (de == NULL && errno != 0)
		err = errno;
	if (closedir(dir) != 0 && err == 0)
		err = errno;
	errno = err;
	return err != 0 ? -1 : empty;
}

static int l_stage(lua_State *L)
{
	size_t len, plen;
	const char *outdir = push_trimmed(L, 1, &len), *base, *parent, *tmpl;
	struct stage *s;
	struct stat st;
	int fd, err;

	base = memrchr(outdir, '/', len);
	base = base ? base + 1 : outdir;
	if (*base == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
		return ls_fail(L, LS_EUSAGE,
			       "%s: not usable as an output directory", outdir);
	plen = (size_t)(base - outdir);
	parent = plen == 0 ? "." : lua_pushlstring(L, outdir, plen > 1 ? plen - 1 : 1);
	tmpl = lua_pushfstring(L, "%s%s.%s.layersplit-XXXXXX", parent,
			       parent[strlen(parent) - 1] == '/' ? "" : "/", base);
	if (lstat(outdir, &st) == 0) {
		if (S_ISLNK(st.st_mode))
			return ls_fail(L, LS_EUSAGE,
				       "%s: not a directory (a symbolic link)", outdir);
		if (!S_ISDIR(st.st_mode))
			return ls_fail(L, LS_EUSAGE, "%s: not a directory", outdir);
		switch (dir_is_empty(outdir)) {
		case 1:
			break;
		case 0:
			return ls_fail(L, LS_EUSAGE,
				       "%s: output directory is not empty", outdir);
		default:
			return fail_errno(L, outdir, errno);
		}
	} else if (errno != ENOENT) {
		return fail_errno(L, outdir, errno);
	}
	if (nstages == capstages) {
		size_t cap = capstages ? 2 * capstages : 4;
		s = realloc(stages, cap * sizeof(*s));
		if (s == NULL)
			return fail_errno(L, outdir, ENOMEM);
		stages = s;
		capstages = cap;
	}
	/* From here on no Lua call until the stage is registered: no leaks. */
	if ((fd = open(parent, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
		return fail_errno(L, parent, errno);
	s = &stages[nstages];
	*s = (struct stage){.parent = fd};
	if ((s->path = strdup(tmpl)) == NULL || (s->outdir = strdup(outdir)) == NULL) {
		err = ENOMEM;
		goto fail;
	}
	if (mkdtemp(s->path) == NULL) {
		err = errno;
		goto fail;
	}
	if (chmod(s->path, 0755) != 0) { /* mkdtemp makes it 0700 */
		err = errno;
		(void)rmdir(s->path); /* ours, and still empty */
		goto fail;
	}
	s->name = strrchr(s->path, '/') + 1;
	s->outname = s->outdir + (base - outdir);
	nstages++;
	lua_pushstring(L, s->path);
	return 1;
fail:
	(void)close(fd); /* reporting the failure that got us here */
	free(s->path);
	free(s->outdir);
	return fail_errno(L, parent, err);
}

static int l_commit(lua_State *L)
{
	struct stage *s = checkstage(L, 1);
	size_t len;
	const char *outdir = push_trimmed(L, 2, &len);

	if (strcmp(outdir, s->outdir) != 0)
		return luaL_error(L, "fs.commit: stage '%s' was made for '%s', not '%s'",
				  s->path, s->outdir, outdir);
	if (renameat(s->parent, s->name, s->parent, s->outname) != 0) {
		if (errno == ENOTEMPTY || errno == EEXIST)
			return ls_fail(L, LS_EIO,
				       "%s: output directory is not empty", outdir);
		/* ENOENT can only mean the stage itself went missing. */
		return fail_errno(L, errno == ENOENT ? s->path : outdir, errno);
	}
	stage_free(s);
	lua_pushboolean(L, 1);
	return 1;
}

static int l_discard(lua_State *L)
{
	struct stage *s = checkstage(L, 1);

	if (remove_tree(s->parent, s->name, 0) != 0)
		return fail_errno(L, s->path, errno);
	stage_free(s);
	lua_pushboolean(L, 1);
	return 1;
}

/* ---- fs.writer: a sink writing raw bytes to a new file ---- */

struct writer {
	struct ls_sink sink; /* first: the userdata is a sink */
	int fd;              /* -1 once closed */
	int err;             /* first failure, sticky; EINTR: a signal */
	uint64_t bytes;
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
	if (ls_fs_write_all(w->fd, buf, len) != 0) {
		writer_seterror(w, errno, NULL);
		return -1;
	}
	w->bytes += len;
	return 0;
}

static const char *writer_error(struct ls_sink *sink)
{
	return ((struct writer *)sink)->msg;
}

static const char *writer_class(struct ls_sink *sink)
{
	struct writer *w = (struct writer *)sink;

	return w->err == EINTR && ls_interrupted ? LS_ESIGNAL : LS_EIO;
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

static int l_writer(lua_State *L)
{
	const char *path = checkpath(L, 1);
	size_t len = strlen(path), msgsize = len + 256;
	struct writer *w = lua_newuserdatauv(L, sizeof(*w) + len + 1 + msgsize, 0);

	/* Created closed and owned by Lua first, as liolib does. */
	memset(w, 0, sizeof(*w));
	w->sink.ops = &writer_ops;
	w->fd = -1;
	memcpy(w->path, path, len + 1);
	w->msg = w->path + len + 1;
	w->msgsize = msgsize;
	w->msg[0] = '\0';
	luaL_setmetatable(L, WRITER_MT);
	if ((w->fd = ls_fs_create(path)) < 0)
		return fail_errno(L, path, errno);
	return 1;
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

static const luaL_Reg fs_funcs[] = {
	{"normalize", l_normalize},
	{"resolve_link", l_resolve_link},
	{"join", l_join},
	{"stage", l_stage},
	{"commit", l_commit},
	{"discard", l_discard},
	{"write_file", l_write_file},
	{"read_file", l_read_file},
	{"copy", l_copy},
	{"remove", l_remove},
	{"mkdir", l_mkdir},
	{"kind", l_kind},
	{"writer", l_writer},
	{NULL, NULL},
};

int luaopen_layersplit_fs(lua_State *L)
{
	if (luaL_newmetatable(L, WRITER_MT)) {
		luaL_setfuncs(L, writer_meta, 0);
		luaL_newlibtable(L, writer_methods);
		luaL_setfuncs(L, writer_methods, 0);
		lua_setfield(L, -2, "__index");
		ls_marksink(L);
	}
	lua_pop(L, 1);
	if (luaL_newmetatable(L, FD_MT)) {
		lua_pushcfunction(L, fd_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_pop(L, 1);
	luaL_newlib(L, fs_funcs);
	return 1;
}
