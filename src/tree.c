/* tree.c: whole directory trees under a directory fd, for the staging
 * directory: removed, or fsync'd, by *at calls on open directories, never
 * following a symlink and never rebuilding a path. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sink.h"
#include "tree.h"

#define TREE_DEPTH_MAX 256
#define RM_PASSES 4

/* openat that retries EINTR: cleanup must finish whatever signals arrive. */
static int open_at(int at, const char *name, int flags)
{
	int fd;

	do
		fd = openat(at, name, flags | O_CLOEXEC | O_NOFOLLOW);
	while (fd < 0 && errno == EINTR);
	return fd;
}

static int unlink_at(int at, const char *name, int flags)
{
	int r;

	do
		r = unlinkat(at, name, flags);
	while (r != 0 && errno == EINTR);
	return r;
}

/* The directory name under at, opened for reading; NULL with errno. */
DIR *ls_tree_opendir(int at, const char *name)
{
	int fd = open_at(at, name, O_RDONLY | O_DIRECTORY);
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

static int is_dot(const char *name)
{
	return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

static int remove_in(int at, const char *name, int depth);

/* Empties the open directory dir: 0 or an errno. */
static int empty_dir(DIR *dir, int depth)
{
	struct dirent *de;
	int err = 0;

	for (;;) {
		errno = 0;
		if ((de = readdir(dir)) == NULL)
			return errno != 0 ? errno : err;
		if (is_dot(de->d_name))
			continue;
		/* d_type spares a failed unlink per directory; DT_UNKNOWN tries both. */
		if (de->d_type == DT_DIR) {
			if (remove_in(dirfd(dir), de->d_name, depth + 1) != 0 && err == 0)
				err = errno;
		} else if (unlink_at(dirfd(dir), de->d_name, 0) != 0 && errno != ENOENT) {
			if (errno == EISDIR || errno == EPERM) {
				if (remove_in(dirfd(dir), de->d_name, depth + 1) != 0 && err == 0)
					err = errno;
			} else if (err == 0) {
				err = errno;
			}
		}
	}
}

/* Removes the directory name under at and everything in it. */
static int remove_in(int at, const char *name, int depth)
{
	DIR *dir;
	int err = 0;

	if (depth >= TREE_DEPTH_MAX) {
		errno = ELOOP;
		return -1;
	}
	if ((dir = ls_tree_opendir(at, name)) == NULL) {
		/* Not a directory after all (ENOTDIR, or ELOOP for a symlink). */
		if (errno == ENOTDIR || errno == ELOOP)
			return unlink_at(at, name, 0) == 0 || errno == ENOENT ? 0 : -1;
		return errno == ENOENT ? 0 : -1;
	}
	/* Removing while reading may hide entries: read again until empty. */
	for (int pass = 0; pass < RM_PASSES; pass++) {
		if (pass > 0)
			rewinddir(dir);
		if ((err = empty_dir(dir, depth)) != 0)
			break;
		if (unlink_at(at, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
			break;
		err = errno;
		if (err != ENOTEMPTY && err != EEXIST)
			break;
	}
	(void)closedir(dir); /* read only: nothing to lose */
	errno = err;
	return err == 0 ? 0 : -1;
}

int ls_tree_remove(int at, const char *name)
{
	if (unlink_at(at, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -1;
	return remove_in(at, name, 0);
}

/* Starts (phase 0) or waits for (phase 1) the writeback of every file under
 * the open directory fd, then fsyncs fd itself in phase 1: 0 or an errno. */
static int sync_dir(int fd, int phase, int depth)
{
	DIR *dir;
	struct dirent *de;
	int err = 0, sub;

	if (depth >= TREE_DEPTH_MAX)
		return ELOOP;
	if ((sub = dup(fd)) < 0)
		return errno;
	if ((dir = fdopendir(sub)) == NULL) {
		err = errno;
		(void)close(sub); /* reporting the fdopendir failure */
		return err;
	}
	rewinddir(dir); /* sub shares fd's offset */
	while (err == 0) {
		if (ls_interrupted) {
			err = EINTR;
			break;
		}
		errno = 0;
		if ((de = readdir(dir)) == NULL) {
			err = errno;
			break;
		}
		if (is_dot(de->d_name) || (de->d_type != DT_REG && de->d_type != DT_DIR &&
					   de->d_type != DT_UNKNOWN))
			continue;
		int child = open_at(dirfd(dir), de->d_name, O_RDONLY | O_NONBLOCK);
		struct stat st;
		if (child < 0) {
			/* a symlink (ELOOP) has no data of ours to sync */
			if (errno != ELOOP)
				err = errno;
			continue;
		}
		if (fstat(child, &st) != 0) {
			err = errno;
		} else if (S_ISDIR(st.st_mode)) {
			err = sync_dir(child, phase, depth + 1);
		} else if (!S_ISREG(st.st_mode)) {
			/* a fifo or device node: no data here to sync */
		} else if (phase == 0) {
			/* Only a hint: the fsync in phase 1 is what counts. */
			(void)sync_file_range(child, 0, 0, SYNC_FILE_RANGE_WRITE);
		} else if (fsync(child) != 0) {
			err = errno;
		}
		if (close(child) != 0 && err == 0)
			err = errno;
	}
	(void)closedir(dir); /* read only */
	if (err == 0 && phase == 1 && fsync(fd) != 0)
		err = errno;
	return err;
}

int ls_tree_sync(int fd)
{
	int err = sync_dir(fd, 0, 0);

	if (err == 0)
		err = sync_dir(fd, 1, 0);
	return err;
}
