/* stage.c: fs.stage, fs.sync, fs.commit and fs.discard: staging
 * directories, kept in a process-wide list so that ls_fs_cleanup can remove
 * the uncommitted ones.  Each is named after its OUTDIR and its process,
 * `.<outdir>.layersplit-<pid>-XXXXXX`, and locked (flock) while the process
 * lives, so a later run can tell the stage of a killed run from a live one. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <openssl/evp.h>

#include "fs.h"
#include "sink.h"
#include "stage.h"
#include "tree.h"

/* ".<token>.layersplit-<pid>-XXXXXX" must fit NAME_MAX: 27 bytes besides
 * the token with a 7-digit pid (pid_max is at most 2^22). */
#define NAME_BYTES 255
#define TOKEN_MAX (NAME_BYTES - 27)
#define TOKEN_HASH 16		/* hex digits of sha256 for a long name */
#define STALE_SECONDS 60	/* an unlocked stage this old is stale, whatever its pid */

/* Process-wide, because signal cleanup is: one entry per uncommitted stage. */
struct stage {
	char *path;          /* "<parent>/.<token>.layersplit-<pid>-XXXXXX", as given to Lua */
	char *outdir;        /* the outdir it was made for, without trailing '/' */
	const char *name;    /* basename of path */
	const char *outname; /* basename of outdir */
	int parent;          /* fd of the directory holding both (O_PATH if unreadable) */
	int parent_readable; /* parent can be listed and fsync'd */
	int lock;            /* the stage itself, open and flock'ed */
	int synced;          /* fs.sync has run on it */
};

static struct stage *stages;
static size_t nstages, capstages;

volatile sig_atomic_t ls_committed;

static void stage_free(struct stage *s)
{
	/* fds only read or locked: nothing to flush; closing drops the lock */
	if (s->lock >= 0)
		(void)close(s->lock);
	if (s->parent >= 0)
		(void)close(s->parent);
	free(s->path);
	free(s->outdir);
	*s = stages[--nstages];
}

void ls_fs_cleanup(void)
{
	while (nstages > 0) {
		struct stage *s = &stages[nstages - 1];
		/* Best effort: nothing is left to report an error to. */
		(void)ls_tree_remove(s->parent, s->name);
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
	DIR *dir = ls_tree_opendir(AT_FDCWD, path);
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

/* Pushes the part of a stage name that stands for OUTDIR's base name: the
 * name itself, or when too long for NAME_MAX its start (whole UTF-8
 * characters) and "~" and the start of its sha256. */
static const char *push_token(lua_State *L, const char *base, size_t len)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char hex[TOKEN_HASH + 1];
	size_t keep = TOKEN_MAX - TOKEN_HASH - 1;

	if (len <= TOKEN_MAX)
		return lua_pushlstring(L, base, len);
	if (EVP_Digest(base, len, md, &mdlen, EVP_sha256(), NULL) != 1)
		mdlen = 0; /* no digest: the cut name alone still fits */
	for (unsigned i = 0; i < TOKEN_HASH / 2 && i < mdlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	hex[mdlen ? TOKEN_HASH : 0] = '\0';
	while (keep > 0 && ((unsigned char)base[keep] & 0xc0) == 0x80)
		keep--;
	return lua_pushfstring(L, "%s~%s", lua_pushlstring(L, base, keep), hex);
}

/* If name is "<prefix><pid>-XXXXXX", its pid; else 0. */
static long stage_pid(const char *name, const char *prefix, size_t plen)
{
	const char *p = name + plen, *digits = p;
	long pid = 0;

	if (strncmp(name, prefix, plen) != 0)
		return 0;
	while (*p >= '0' && *p <= '9' && p - digits < 8)
		pid = pid * 10 + (*p++ - '0');
	if (p == digits || *p != '-' || strlen(p + 1) != 6)
		return 0;
	return pid;
}

/* Whether the stage open as fd, of process pid, belongs to a live run:
 * its lock is held, or (the moment between mkdtemp and flock) its process
 * still exists and it is new. */
static int stage_alive(int fd, long pid)
{
	struct stat st;

	if (flock(fd, LOCK_EX | LOCK_NB) != 0)
		return 1; /* held, or locks unsupported here: not ours to judge */
	if (pid == (long)getpid() || fstat(fd, &st) != 0)
		return pid != (long)getpid();
	if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
		return 0;
	return time(NULL) - st.st_ctime < STALE_SECONDS;
}

/* Removes the stages of dead runs for the same OUTDIR (names starting with
 * prefix) from the directory parent, appending their paths to the table at
 * the top of the stack. */
static void sweep_stale(lua_State *L, int parent, const char *parent_name,
			const char *prefix)
{
	size_t plen = strlen(prefix);
	DIR *dir = ls_tree_opendir(parent, ".");
	struct dirent *de;
	long pid;
	int fd;

	if (dir == NULL)
		return; /* nothing to sweep is no reason to fail the run */
	while ((de = readdir(dir)) != NULL) {
		if ((pid = stage_pid(de->d_name, prefix, plen)) <= 0)
			continue;
		fd = openat(dirfd(dir), de->d_name,
			    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (!stage_alive(fd, pid) && ls_tree_remove(dirfd(dir), de->d_name) == 0) {
			lua_pushfstring(L, "%s%s%s", parent_name,
					parent_name[strlen(parent_name) - 1] == '/' ? "" : "/",
					de->d_name);
			lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
		}
		(void)close(fd); /* read only; drops the lock */
	}
	(void)closedir(dir); /* read only */
}

/* Opens the directory that holds OUTDIR: readable if it can be, so that it
 * can be listed and fsync'd, else O_PATH, enough for the *at calls. */
static int open_parent(const char *parent, int *readable)
{
	int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	*readable = fd >= 0;
	if (fd < 0 && errno == EACCES)
		fd = open(parent, O_PATH | O_DIRECTORY | O_CLOEXEC);
	return fd;
}

/* Checks that outdir is absent or an empty directory: 0, or a failure pushed. */
static int check_outdir(lua_State *L, const char *outdir)
{
	struct stat st;

	if (lstat(outdir, &st) != 0)
		return errno == ENOENT ? 0 : ls_fs_fail_errno(L, outdir, errno);
	if (S_ISLNK(st.st_mode))
		return ls_fail(L, LS_EUSAGE, "%s: not a directory (a symbolic link)", outdir);
	if (!S_ISDIR(st.st_mode))
		return ls_fail(L, LS_EUSAGE, "%s: not a directory", outdir);
	switch (dir_is_empty(outdir)) {
	case 1:
		return 0;
	case 0:
		return ls_fail(L, LS_EUSAGE, "%s: output directory is not empty", outdir);
	default:
		return ls_fs_fail_errno(L, outdir, errno);
	}
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

/* fs.stage(outdir) -> stage path, {paths of stale stages removed} */
int ls_fs_stage(lua_State *L)
{
	size_t len, plen;
	const char *outdir = push_trimmed(L, 1, &len), *base, *parent, *tmpl, *prefix;
	struct stage *s;
	int fd, err, readable, nret;

	base = memrchr(outdir, '/', len);
	base = base ? base + 1 : outdir;
	if (*base == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
		return ls_fail(L, LS_EUSAGE,
			       "%s: not usable as an output directory", outdir);
	plen = (size_t)(base - outdir);
	parent = plen == 0 ? "." : lua_pushlstring(L, outdir, plen > 1 ? plen - 1 : 1);
	prefix = lua_pushfstring(L, ".%s.layersplit-",
				 push_token(L, base, len - plen));
	tmpl = lua_pushfstring(L, "%s%s%s%d-XXXXXX", parent,
			       parent[strlen(parent) - 1] == '/' ? "" : "/",
			       prefix, (int)getpid());
	if ((nret = check_outdir(L, outdir)) != 0)
		return nret;
	if (nstages == capstages) {
		size_t cap = capstages ? 2 * capstages : 4;
		s = realloc(stages, cap * sizeof(*s));
		if (s == NULL)
			return ls_fs_fail_errno(L, outdir, ENOMEM);
		stages = s;
		capstages = cap;
	}
	lua_newtable(L); /* the stale stages removed, for --verbose */
	/* From here on no Lua call that can raise until the stage is registered,
	 * but for the sweep's names (a memory error there leaks the fd). */
	if ((fd = open_parent(parent, &readable)) < 0)
		return ls_fs_fail_errno(L, plen == 0 ? outdir : parent, errno);
	if (readable)
		sweep_stale(L, fd, parent, prefix);
	s = &stages[nstages];
	*s = (struct stage){.parent = fd, .parent_readable = readable, .lock = -1};
	if ((s->path = strdup(tmpl)) == NULL || (s->outdir = strdup(outdir)) == NULL) {
		err = ENOMEM;
		goto fail;
	}
	if (mkdtemp(s->path) == NULL) {
		err = errno;
		goto fail;
	}
	s->name = strrchr(s->path, '/') + 1;
	s->lock = openat(fd, s->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (s->lock < 0 || fchmod(s->lock, 0755) != 0) { /* mkdtemp makes it 0700 */
		err = errno;
		(void)unlinkat(fd, s->name, AT_REMOVEDIR); /* ours, and still empty */
		goto fail;
	}
	/* Where locks are unsupported a later run can't sweep; no reason to fail. */
	(void)flock(s->lock, LOCK_EX | LOCK_NB);
	s->outname = s->outdir + (base - outdir);
	nstages++;
	lua_pushstring(L, s->path);
	lua_insert(L, -2);
	return 2;
fail:
	if (s->lock >= 0)
		(void)close(s->lock); /* reporting the failure that got us here */
	(void)close(fd);
	free(s->path);
	free(s->outdir);
	return ls_fail(L, err == EINTR && ls_interrupted ? LS_ESIGNAL : LS_EIO,
		       "%s: cannot create a staging directory beside it: %s",
		       outdir, strerror(err));
}

/* fs.sync(stage) -> true: every file and directory in it on disk. */
int ls_fs_sync(lua_State *L)
{
	struct stage *s = checkstage(L, 1);
	int err = ls_tree_sync(s->lock);

	if (err != 0)
		return ls_fs_fail_errno(L, s->path, err);
	s->synced = 1;
	lua_pushboolean(L, 1);
	return 1;
}

/* fs.commit(stage, outdir [, {sync = true}]) -> true [, warning]: with
 * sync, fsyncs the stage's files (unless fs.sync did), renames the stage to
 * outdir and fsyncs the directory holding both, so that after a power loss
 * outdir is absent or complete.  The rename is the commit: nothing after it
 * fails the call, a failed fsync there is only a warning. */
int ls_fs_commit(lua_State *L)
{
	struct stage *s = checkstage(L, 1);
	size_t len;
	const char *outdir;
	int sync = 1, err;

	if (!lua_isnoneornil(L, 3)) {
		luaL_checktype(L, 3, LUA_TTABLE);
		lua_getfield(L, 3, "sync");
		sync = lua_isnil(L, -1) || lua_toboolean(L, -1);
		lua_pop(L, 1);
	}
	lua_settop(L, 2);
	outdir = push_trimmed(L, 2, &len);
	if (strcmp(outdir, s->outdir) != 0)
		return luaL_error(L, "fs.commit: stage '%s' was made for '%s', not '%s'",
				  s->path, s->outdir, outdir);
	if (sync && !s->synced && (err = ls_tree_sync(s->lock)) != 0)
		return ls_fs_fail_errno(L, s->path, err);
	/* From the rename on, a signal no longer discards the output. */
	ls_committed = 1;
	if (ls_interrupted) {
		ls_committed = 0;
		return ls_fs_fail_errno(L, s->path, EINTR);
	}
	if (renameat(s->parent, s->name, s->parent, s->outname) != 0) {
		err = errno;
		ls_committed = 0;
		if (err == ENOTEMPTY || err == EEXIST)
			return ls_fail(L, LS_EIO,
				       "%s: output directory is not empty", outdir);
		/* ENOENT can only mean the stage itself went missing. */
		return ls_fs_fail_errno(L, err == ENOENT ? s->path : outdir, err);
	}
	err = !sync ? 0 : !s->parent_readable ? EACCES : fsync(s->parent) != 0 ? errno : 0;
	stage_free(s);
	lua_pushboolean(L, 1);
	if (err == 0)
		return 1;
	lua_pushfstring(L, "%s: committed, but its directory was not synced: %s",
			outdir, strerror(err));
	return 2;
}

int ls_fs_discard(lua_State *L)
{
	struct stage *s = checkstage(L, 1);

	if (ls_tree_remove(s->parent, s->name) != 0)
		return ls_fs_fail_errno(L, s->path, errno);
	stage_free(s);
	lua_pushboolean(L, 1);
	return 1;
}
