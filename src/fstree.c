/* fstree.c: fs.tree, fs.remove_tree and fs.list.  A tree is a directory
 * inside an uncommitted staging directory; every name given to it is walked
 * one component at a time with openat(O_NOFOLLOW), so no name, whatever a
 * layer says, can reach outside it or through a symbolic link.  Files are
 * created exclusively.  This is what extraction writes through: Lua decides
 * which entry goes where, these calls make sure it stays inside. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h> /* renameat2 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>

#include "fs.h"
#include "fstree.h"
#include "fswriter.h"
#include "path.h"
#include "sink.h"
#include "tree.h"

#define TREE_MT "layersplit.fs.tree"
#define DIR_MT "layersplit.fs.dir"
#define TREE_DEPTH_MAX 256 /* components in one name */
#define COMPONENT_MAX 255  /* NAME_MAX */

struct tree {
	int fd; /* O_PATH directory; -1 once closed */
};

/* nil, "<name>: <reason>", class: "entry" when the name itself can't be
 * made here (too long, collides with what is there, not valid on this file
 * system), "io" for the rest (no space, permissions, ...). */
static int fail_name(lua_State *L, const char *name, int err)
{
	switch (err) {
	case ENAMETOOLONG: case EEXIST: case ENOTDIR: case EISDIR:
	case ELOOP: case EILSEQ: case EINVAL: case EMLINK: case ENOENT:
		return ls_fail(L, LS_EENTRY, "%s: %s", name, strerror(err));
	}
	return ls_fs_fail_errno(L, name, err);
}

/* Copies the component of name starting at *pos into comp and moves *pos
 * past it and its slash.  0, or -1 with errno ENAMETOOLONG. */
static int next_component(const char *name, size_t len, size_t *pos, char *comp)
{
	const char *start = name + *pos, *slash = memchr(start, '/', len - *pos);
	size_t n = slash ? (size_t)(slash - start) : len - *pos;

	if (n > COMPONENT_MAX) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(comp, start, n);
	comp[n] = '\0';
	*pos += n + (slash ? 1 : 0);
	return 0;
}

/* The directory holding name's last component, under root, as a new fd;
 * the last component in last.  With create, missing directories are made
 * (0755).  -1 with errno set.  name must be safe (ls_path_unsafe_name). */
static int walk(int root, const char *name, size_t len, int create, char *last)
{
	char comp[COMPONENT_MAX + 1];
	size_t pos = 0;
	int fd = fcntl(root, F_DUPFD_CLOEXEC, 0), next, err, depth = 0;

	if (fd < 0)
		return -1;
	for (;;) {
		if (next_component(name, len, &pos, comp) != 0)
			goto fail;
		if (pos >= len)
			break; /* comp is the last component */
		if (++depth > TREE_DEPTH_MAX) {
			errno = ENAMETOOLONG;
			goto fail;
		}
		next = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0 && errno == ENOENT && create) {
			if (mkdirat(fd, comp, 0755) != 0 && errno != EEXIST)
				goto fail;
			next = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		if (next < 0)
			goto fail;
		(void)close(fd); /* an O_PATH fd: nothing to flush */
		fd = next;
	}
	memcpy(last, comp, strlen(comp) + 1);
	return fd;
fail:
	err = errno;
	(void)close(fd); /* reporting the failure that got us here */
	errno = err;
	return -1;
}

static struct tree *checktree(lua_State *L)
{
	struct tree *t = luaL_checkudata(L, 1, TREE_MT);

	if (t->fd < 0)
		luaL_error(L, "attempt to use a closed tree");
	return t;
}

/* Argument arg as a name under a tree; NULL after pushing the failure
 * (class "entry") if it is not a safe relative name. */
static const char *tree_name(lua_State *L, int arg, size_t *len)
{
	const char *name = luaL_checklstring(L, arg, len);
	const char *why = ls_path_unsafe_name(name, *len);

	if (why != NULL) {
		ls_fail(L, LS_EENTRY, "%s: %s", name, why);
		return NULL;
	}
	return name;
}

/* Opens (and with create makes) the directory name under at: an O_PATH fd. */
static int open_subdir(int at, const char *name, size_t len, int create)
{
	char last[COMPONENT_MAX + 1];
	int dir = walk(at, name, len, create, last), fd, err;

	if (dir < 0)
		return -1;
	fd = openat(dir, last, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && create) {
		if (mkdirat(dir, last, 0755) == 0 || errno == EEXIST)
			fd = openat(dir, last, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	}
	err = errno;
	(void)close(dir); /* an O_PATH fd */
	errno = err;
	return fd;
}

/* fs.tree(stage [, name]) -> tree rooted at stage/name (made if absent). */
int ls_fs_tree(lua_State *L)
{
	const char *stage = ls_fs_checkpath(L, 1), *name = NULL;
	size_t len = 0;
	struct tree *t;
	int sfd;

	if (!lua_isnoneornil(L, 2)) {
		name = luaL_checklstring(L, 2, &len);
		const char *why = ls_path_unsafe_name(name, len);
		if (why != NULL)
			return luaL_argerror(L, 2, lua_pushfstring(L,
				"unsafe name '%s': %s", name, why));
	}
	t = lua_newuserdatauv(L, sizeof(*t), 0);
	t->fd = -1;
	luaL_setmetatable(L, TREE_MT);
	if ((sfd = ls_stage_dirfd(stage)) < 0) {
		if (errno == ENOENT)
			return luaL_argerror(L, 1, lua_pushfstring(L,
				"'%s' is not an uncommitted stage", stage));
		return ls_fs_fail_errno(L, stage, errno);
	}
	if (name == NULL) {
		t->fd = sfd;
		return 1;
	}
	t->fd = open_subdir(sfd, name, len, 1);
	int err = errno;
	(void)close(sfd); /* an O_PATH fd */
	if (t->fd < 0)
		return fail_name(L, name, err);
	return 1;
}

/* tree:file(name [, max]) -> a sink writing the new file name (0644),
 * directories above it made as needed; max bytes at most (no max: no limit). */
static int t_file(lua_State *L)
{
	struct tree *t = checktree(L);
	size_t len;
	const char *name = tree_name(L, 2, &len);
	lua_Integer max = luaL_optinteger(L, 3, -1);
	char last[COMPONENT_MAX + 1];
	struct writer *w;
	int dir, fd, err;

	if (name == NULL)
		return 3;
	luaL_argcheck(L, max >= -1, 3, "negative size");
	w = ls_fs_writer_push(L, name, max < 0 ? UINT64_MAX : (uint64_t)max);
	if ((dir = walk(t->fd, name, len, 1, last)) < 0)
		return fail_name(L, name, errno);
	fd = openat(dir, last, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
	err = errno;
	(void)close(dir); /* an O_PATH fd */
	if (fd < 0)
		return fail_name(L, name, err);
	ls_fs_writer_set_fd(w, fd);
	return 1;
}

/* tree:copy(from, to) -> bytes copied into the new file to. */
static int t_copy(lua_State *L)
{
	struct tree *t = checktree(L);
	size_t flen, tlen;
	const char *from = tree_name(L, 2, &flen), *to;
	char last[COMPONENT_MAX + 1];
	uint64_t copied = 0;
	struct stat st;
	int dir, in, out, err, src_failed = 0;

	if (from == NULL || (to = tree_name(L, 3, &tlen)) == NULL)
		return 3;
	if ((dir = walk(t->fd, from, flen, 0, last)) < 0)
		return fail_name(L, from, errno);
	in = openat(dir, last, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	err = errno;
	(void)close(dir); /* an O_PATH fd */
	if (in < 0)
		return fail_name(L, from, err);
	err = fstat(in, &st) != 0 ? errno : !S_ISREG(st.st_mode) ? EINVAL : 0;
	if (err != 0) {
		(void)close(in); /* reporting why it can't be copied */
		return fail_name(L, from, err);
	}
	if ((dir = walk(t->fd, to, tlen, 1, last)) < 0) {
		err = errno;
		(void)close(in); /* reporting the walk's failure */
		return fail_name(L, to, err);
	}
	out = openat(dir, last, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
	err = errno;
	if (out < 0) {
		(void)close(dir);
		(void)close(in); /* reporting the create failure */
		return fail_name(L, to, err);
	}
	err = ls_fs_copy_data(in, out, &st, &copied, &src_failed);
	if (close(out) != 0 && err == 0)
		err = errno;
	if (close(in) != 0 && err == 0)
		err = errno;
	if (err != 0)
		(void)unlinkat(dir, last, 0); /* ours: created exclusively above */
	(void)close(dir); /* an O_PATH fd */
	if (err != 0)
		return ls_fs_fail_errno(L, src_failed ? from : to, err);
	lua_pushinteger(L, (lua_Integer)copied);
	return 1;
}

/* tree:rename(from, to) -> true: moves a file or a directory; to must not
 * exist, the directories above it are made as needed. */
static int t_rename(lua_State *L)
{
	struct tree *t = checktree(L);
	size_t flen, tlen;
	const char *from = tree_name(L, 2, &flen), *to;
	char flast[COMPONENT_MAX + 1], tlast[COMPONENT_MAX + 1];
	int fdir, tdir, r, err;

	if (from == NULL || (to = tree_name(L, 3, &tlen)) == NULL)
		return 3;
	if ((fdir = walk(t->fd, from, flen, 0, flast)) < 0)
		return fail_name(L, from, errno);
	if ((tdir = walk(t->fd, to, tlen, 1, tlast)) < 0) {
		err = errno;
		(void)close(fdir); /* an O_PATH fd */
		return fail_name(L, to, err);
	}
	r = renameat2(fdir, flast, tdir, tlast, RENAME_NOREPLACE);
	if (r != 0 && (errno == EINVAL || errno == ENOSYS)) {
		/* a file system without RENAME_NOREPLACE: check, then rename */
		struct stat st;
		if (fstatat(tdir, tlast, &st, AT_SYMLINK_NOFOLLOW) == 0)
			errno = EEXIST;
		else
			r = renameat(fdir, flast, tdir, tlast);
	}
	err = errno;
	(void)close(fdir); /* O_PATH fds */
	(void)close(tdir);
	if (r != 0)
		return fail_name(L, err == EEXIST ? to : from, err);
	lua_pushboolean(L, 1);
	return 1;
}

/* Removes name under root and all below it; pushes true (also when it is
 * absent) or the failure. */
static int remove_at(lua_State *L, int root, const char *name, size_t len)
{
	char last[COMPONENT_MAX + 1];
	int dir, r, err;

	if ((dir = walk(root, name, len, 0, last)) < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return lua_pushboolean(L, 1), 1;
		return ls_fs_fail_errno(L, name, errno);
	}
	r = ls_tree_remove(dir, last);
	err = errno;
	(void)close(dir); /* an O_PATH fd */
	if (r != 0)
		return ls_fs_fail_errno(L, name, err);
	lua_pushboolean(L, 1);
	return 1;
}

/* tree:remove(name) -> true: the file, or the directory and all below it;
 * true also when it is absent. */
static int t_remove(lua_State *L)
{
	struct tree *t = checktree(L);
	size_t len;
	const char *name = tree_name(L, 2, &len);

	return name == NULL ? 3 : remove_at(L, t->fd, name, len);
}

/* tree:kind(name) -> "file", "dir", "link", "other", or nil if absent. */
static int t_kind(lua_State *L)
{
	struct tree *t = checktree(L);
	size_t len;
	const char *name = tree_name(L, 2, &len);
	char last[COMPONENT_MAX + 1];
	struct stat st;
	int dir, r, err;

	if (name == NULL)
		return 3;
	if ((dir = walk(t->fd, name, len, 0, last)) < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return lua_pushnil(L), 1;
		return fail_name(L, name, errno);
	}
	r = fstatat(dir, last, &st, AT_SYMLINK_NOFOLLOW);
	err = errno;
	(void)close(dir); /* an O_PATH fd */
	if (r != 0) {
		if (err == ENOENT)
			return lua_pushnil(L), 1;
		return fail_name(L, name, err);
	}
	lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir" :
			  S_ISLNK(st.st_mode) ? "link" : "other");
	return 1;
}

static int t_close(lua_State *L)
{
	struct tree *t = luaL_checkudata(L, 1, TREE_MT);

	if (t->fd >= 0)
		(void)close(t->fd); /* an O_PATH fd */
	t->fd = -1;
	lua_pushboolean(L, 1);
	return 1;
}

/* fs.remove_tree(stage, name) -> true: name under the uncommitted stage and
 * everything below it, never following a symlink; true if absent. */
int ls_fs_remove_tree(lua_State *L)
{
	const char *stage = ls_fs_checkpath(L, 1);
	size_t len;
	const char *name = luaL_checklstring(L, 2, &len);
	const char *why = ls_path_unsafe_name(name, len);
	int sfd, n;

	if (why != NULL)
		return luaL_argerror(L, 2, lua_pushfstring(L, "unsafe name '%s': %s",
							   name, why));
	if ((sfd = ls_stage_dirfd(stage)) < 0) {
		if (errno == ENOENT)
			return luaL_argerror(L, 1, lua_pushfstring(L,
				"'%s' is not an uncommitted stage", stage));
		return ls_fs_fail_errno(L, stage, errno);
	}
	n = remove_at(L, sfd, name, len); /* pushes without raising */
	(void)close(sfd); /* an O_PATH fd */
	return n;
}

/* A DIR * owned by a userdata, so a Lua error while listing can't leak it. */
static int dir_gc(lua_State *L)
{
	DIR **d = luaL_checkudata(L, 1, DIR_MT);

	if (*d != NULL)
		(void)closedir(*d); /* only read from */
	*d = NULL;
	return 0;
}

static const char *const *sort_base;

static int by_name(const void *a, const void *b)
{
	return strcmp(sort_base[*(const int *)a], sort_base[*(const int *)b]);
}

/* fs.list(dir) -> the names in dir (not "." and ".."), sorted bytewise. */
int ls_fs_list(lua_State *L)
{
	const char *path = ls_fs_checkpath(L, 1);
	DIR **d = lua_newuserdatauv(L, sizeof(*d), 0);
	struct dirent *de;
	const char **names;
	int *order, n = 0, fd, err;

	*d = NULL;
	luaL_setmetatable(L, DIR_MT);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || (*d = fdopendir(fd)) == NULL) {
		err = errno;
		if (fd >= 0)
			(void)close(fd); /* reporting the fdopendir failure */
		return ls_fs_fail_errno(L, path, err);
	}
	lua_newtable(L);
	for (errno = 0; (de = readdir(*d)) != NULL; errno = 0) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		lua_pushstring(L, de->d_name);
		lua_rawseti(L, -2, ++n);
	}
	err = errno;
	(void)closedir(*d); /* only read from */
	*d = NULL;
	if (err != 0)
		return ls_fs_fail_errno(L, path, err);
	/* Sorted without a Lua call between malloc and free. */
	lua_createtable(L, n, 0);
	for (int i = 1; i <= n; i++) { /* presize the array part */
		lua_pushboolean(L, 0);
		lua_rawseti(L, -2, i);
	}
	names = malloc((size_t)n * sizeof(*names) + 1);
	order = malloc((size_t)n * sizeof(*order) + 1);
	if (names == NULL || order == NULL) {
		free(names);
		free(order);
		return ls_fs_fail_errno(L, path, ENOMEM);
	}
	for (int i = 0; i < n; i++) {
		lua_rawgeti(L, -2, i + 1);
		names[i] = lua_tostring(L, -1);
		lua_pop(L, 1); /* still referenced by the first table */
		order[i] = i;
	}
	sort_base = names;
	qsort(order, (size_t)n, sizeof(*order), by_name);
	for (int i = 0; i < n; i++) {
		lua_rawgeti(L, -2, order[i] + 1);
		lua_rawseti(L, -2, i + 1);
	}
	free(names);
	free(order);
	return 1;
}

void ls_fs_tree_meta(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"file", t_file}, {"copy", t_copy}, {"rename", t_rename},
		{"remove", t_remove}, {"kind", t_kind}, {"close", t_close},
		{NULL, NULL},
	};

	if (luaL_newmetatable(L, TREE_MT)) {
		lua_pushcfunction(L, t_close);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, t_close);
		lua_setfield(L, -2, "__close");
		luaL_newlib(L, methods);
		lua_setfield(L, -2, "__index");
	}
	lua_pop(L, 1);
	if (luaL_newmetatable(L, DIR_MT)) {
		lua_pushcfunction(L, dir_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_pop(L, 1);
}
