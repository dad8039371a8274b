/* tree.h: directory trees under a directory fd (the staging directory). */
#ifndef LS_TREE_H
#define LS_TREE_H

#include <dirent.h>

/* The directory name under at, opened for reading, never through a
 * symlink; NULL with errno set. */
DIR *ls_tree_opendir(int at, const char *name);

/* Removes name under at and everything below it, never following a
 * symlink, retrying EINTR, so a signal cannot stop it half way.
 * 0, or -1 with errno set. */
int ls_tree_remove(int at, const char *name);

/* fsyncs every regular file and directory under the directory fd, then fd
 * itself.  0 or an errno (EINTR when ls_interrupted stopped it). */
int ls_tree_sync(int fd);

#endif
