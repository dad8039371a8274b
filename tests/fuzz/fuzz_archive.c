/* fuzz_archive.c: the libFuzzer target behind `make fuzz`.
 *
 * Each input is an image archive.  A fresh Lua state runs the real driver
 * with the default policy on it, read from memory, into OUTDIR in a private
 * directory, then is closed and OUTDIR removed, so every iteration starts
 * clean and a leak shows.  Besides crashes, leaks and sanitizer reports, an
 * outcome the tool must never have aborts: a failure that is neither an
 * archive rejection nor the heap cap (a Lua error in the bundled code, an
 * I/O error), a staging directory left behind, OUTDIR missing after success
 * or present after failure, or a file appearing in the working directory.
 */
#include <errno.h>
#include <dirent.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "fs.h"
#include "host.h"

#define HEAP_LIMIT ((size_t)64 << 20)
#define LUA_EDGES 65536

/* libFuzzer sees only the instrumented C, and the policy is Lua: a line hook
 * counts (previous line, line) pairs of the bundled Lua here, so an input
 * that takes the policy down a new path counts as new coverage too. */
__attribute__((section("__libfuzzer_extra_counters")))
static uint8_t lua_edges[LUA_EDGES];
static uint32_t last_line;

static char root[4096];   /* holds OUTDIR, and nothing else */
static char work[4096];   /* the working directory: stays empty */
static char outdir[4200];

static const char script[] =
	"local data, outdir = ...\n"
	"require('layersplit.driver').run({input = 'fuzz-input', input_data = data,\n"
	"	outdir = outdir, policy = 'launchpad', engine = 'zlib', level = 1,\n"
	"	jobs = 1, settings = {}, progress = 'never', quiet = true})\n";

static void die(const char *what, const char *why)
{
	fprintf(stderr, "fuzz_archive: %s: %s\n", what, why);
	abort();
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (remove(path) != 0)
		die(path, strerror(errno));
	return 0;
}

static void remove_tree(const char *path)
{
	struct stat st;

	if (lstat(path, &st) != 0 && errno == ENOENT)
		return;
	if (nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
		die(path, "cannot remove");
}

/* The one name in dir other than "." and "..", "" if empty; aborts if more. */
static void only_entry(const char *dir, char *name, size_t len)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (d == NULL)
		die(dir, strerror(errno));
	name[0] = '\0';
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (n++ > 0)
			die(dir, "more than one entry after a run");
		snprintf(name, len, "%s", de->d_name);
	}
	closedir(d);
}

static void cleanup_dirs(void)
{
	remove_tree(root);
	remove_tree(work);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");

	if (tmp == NULL || *tmp == '\0')
		tmp = "/tmp";
	snprintf(root, sizeof(root), "%s/layersplit-fuzz-XXXXXX", tmp);
	snprintf(work, sizeof(work), "%s/layersplit-fuzz-cwd-XXXXXX", tmp);
	if (mkdtemp(root) == NULL || mkdtemp(work) == NULL)
		die(tmp, strerror(errno));
	if (chdir(work) != 0)
		die(work, strerror(errno));
	snprintf(outdir, sizeof(outdir), "%s/out", root);
	atexit(cleanup_dirs);
	return 0;
}

static void line_hook(lua_State *L, lua_Debug *ar)
{
	uint32_t h = 2166136261u; /* FNV-1a of the chunk name and the line */
	uint8_t *edge;

	if (lua_getinfo(L, "S", ar) == 0)
		return;
	for (const char *c = ar->source; *c != '\0'; c++)
		h = (h ^ (unsigned char)*c) * 16777619u;
	h = (h ^ (uint32_t)ar->currentline) * 16777619u;
	edge = &lua_edges[(h ^ last_line) % LUA_EDGES];
	if (*edge < 255)
		(*edge)++;
	last_line = h >> 1;
}

/* What the failed run left on the stack: accepted, or an abort. */
static void check_failure(lua_State *L)
{
	const char *class = NULL, *message = NULL;

	if (lua_type(L, -1) == LUA_TTABLE) {
		lua_getfield(L, -1, "class");
		lua_getfield(L, -2, "message");
		class = lua_tostring(L, -2);
		message = lua_tostring(L, -1);
	} else {
		message = lua_tostring(L, -1);
	}
	if (message == NULL)
		message = "(no message)";
	if (class != NULL && strcmp(class, "archive") == 0)
		return;
	/* The heap cap: a bomb of tiny entries is refused, not a bug. */
	if (strcmp(message, "not enough memory") == 0)
		return;
	die(class ? class : "error", message);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	lua_State *L = ls_host_new(HEAP_LIMIT);
	char left[256];
	int ok;

	if (L == NULL)
		die("ls_host_new", "cannot create the Lua state");
	last_line = 0;
	lua_sethook(L, line_hook, LUA_MASKLINE, 0);
	if (luaL_loadbuffer(L, script, sizeof(script) - 1, "=fuzz") != LUA_OK)
		die("script", lua_tostring(L, -1));
	lua_pushlstring(L, (const char *)data, size);
	lua_pushstring(L, outdir);
	ok = ls_host_pcall(L, 2, 0) == LUA_OK;
	if (!ok)
		check_failure(L);
	/* What main() does after the run: remove an uncommitted stage. */
	ls_fs_cleanup();
	ls_host_close(L);

	only_entry(root, left, sizeof(left));
	if (ok && strcmp(left, "out") != 0)
		die(root, "success without OUTDIR");
	if (!ok && left[0] != '\0')
		die(left, "left behind by a failed run");
	only_entry(work, left, sizeof(left));
	if (left[0] != '\0')
		die(left, "written into the working directory");
	if (ok) {
		struct stat st;
		char manifest[4300];

		snprintf(manifest, sizeof(manifest), "%s/manifest.json", outdir);
		if (stat(manifest, &st) != 0 || !S_ISREG(st.st_mode))
			die(manifest, "missing after success");
		remove_tree(outdir);
	}
	return 0;
}
