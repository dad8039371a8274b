/* stage.c: fs.stage, fs.commit and fs.discard: staging directories, kept in
 * a process-wide list so that ls_fs_cleanup can remove the uncommitted ones. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>

#include "fs.h"
#include "sink.h"
#include "stage.h"

#define RM_DEPTH_MAX 256
#define RM_PASSES 4

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

/* The directory name under at, opened for reading without following a
 * symlink; NULL with errno on failure. */
static DIR *open_dir(int at, const char *name)
{
	int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *dir;
	int err;

	if (fd < 0)
		return NULL;
	if ((dir = fdopendir(fd)) == NULL) {
		err = errno;
		(void)close(fd); /* reporting the fdopendir failure */
		errno = err;
	}
	return dir;
}

/* Removes name under at and everything below it, never following a
 * symlink (a directory is only entered through O_NOFOLLOW).  0 or -1/errno. */
static int remove_tree(int at, const char *name, int depth)
{
	int err = 0;
	DIR *dir;
	struct dirent *de;

	/* Linux says EISDIR for a directory; anything else is removed here. */
	if (unlinkat(at, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR)
		return -1;
	if (depth >= RM_DEPTH_MAX) {
		errno = ELOOP;
		return -1;
	}
	if ((dir = open_dir(at, name)) == NULL)
		return -1;
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
			if (remove_tree(dirfd(dir), de->d_name, depth + 1) != 0 &&
			    err == 0)
				err = errno;
		}
		if (err != 0)
			break;
		if (unlinkat(at, name, AT_REMOVEDIR) == 0)
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
	const char *path = ls_fs_checkpath(L, arg);

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
	const char *outdir = ls_fs_checkpath(L, arg);

	*len = strlen(outdir);
	while (*len > 1 && outdir[*len - 1] == '/')
		(*len)--;
	return lua_pushlstring(L, outdir, *len);
}

/* 1 if the directory is empty, 0 if not, -1 with errno on failure. */
static int dir_is_empty(const char *path)
{
	DIR *dir = open_dir(AT_FDCWD, path);
	int empty = 1, err = 0;
	struct dirent *de;

	if (dir == NULL)
		return -1;
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

int ls_stage_dirfd(const char *path)
{
	for (size_t i = 0; i < nstages; i++)
		if (strcmp(stages[i].path, path) == 0)
			return openat(stages[i].parent, stages[i].name,
				      O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	errno = ENOENT;
	return -1;
}

int ls_remove_tree(int at, const char *name)
{
	return remove_tree(at, name, 0);
}

int ls_fs_stage(lua_State *L)
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
			return ls_fs_fail_errno(L, outdir, errno);
		}
	} else if (errno != ENOENT) {
		return ls_fs_fail_errno(L, outdir, errno);
	}
	if (nstages == capstages) {
		size_t cap = capstages ? 2 * capstages : 4;
		s = realloc(stages, cap * sizeof(*s));
		if (s == NULL)
			return ls_fs_fail_errno(L, outdir, ENOMEM);
		stages = s;
		capstages = cap;
	}
	/* From here on no Lua call until the stage is registered: no leaks. */
	if ((fd = open(parent, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
		return ls_fs_fail_errno(L, parent, errno);
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
	return ls_fs_fail_errno(L, parent, err);
}

int ls_fs_commit(lua_State *L)
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
		return ls_fs_fail_errno(L, errno == ENOENT ? s->path : outdir, errno);
	}
	stage_free(s);
	lua_pushboolean(L, 1);
	return 1;
}

int ls_fs_discard(lua_State *L)
{
	struct stage *s = checkstage(L, 1);

	if (remove_tree(s->parent, s->name, 0) != 0)
		return ls_fs_fail_errno(L, s->path, errno);
	stage_free(s);
	lua_pushboolean(L, 1);
	return 1;
}
