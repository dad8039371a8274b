/* path.h: archive paths normalized and output names checked, as pure
 * functions (no I/O, no Lua) behind fs.normalize, fs.resolve_link, fs.join. */
#ifndef LS_PATH_H
#define LS_PATH_H

#include <stddef.h>

/* What the message of a refusal names before the reason. */
enum ls_path_names {
	LS_PATH_NAMES_PATH,    /* "<path>: <why>" (the link's path for a link) */
	LS_PATH_NAMES_LINK,    /* "<link> -> <target>: <why>" */
	LS_PATH_NAMES_NOTHING, /* "<why>": the path was the empty string */
};

/* Normalizes the archive path s[0..len) into out (room for len + 1 bytes):
 * empty and "." components dropped, ".." resolved.  NULL with *outlen set,
 * or why it is refused (NUL byte, absolute, climbs out, empty). */
const char *ls_path_normalize(const char *s, size_t len, char *out,
			      size_t *outlen, enum ls_path_names *names);

/* The archive path that a symlink at link[0..llen) with target[0..tlen)
 * points to, normalized into out (room for llen + tlen + 2 bytes).  NULL
 * with *outlen set, or why it is refused (also a target that is absolute,
 * climbs out or is the archive root). */
const char *ls_path_resolve_link(const char *link, size_t llen,
				 const char *target, size_t tlen, char *out,
				 size_t *outlen, enum ls_path_names *names);

/* Why s[0..len) is not a safe relative name to put under a directory
 * (empty, NUL byte, absolute, an empty, "." or ".." component), or NULL. */
const char *ls_path_unsafe_name(const char *s, size_t len);

/* An archive entry's name normalized into out (room for strlen(name) + 2
 * bytes): "./", empty and "." components dropped, so a//b and a/./b are a/b
 * and one name has one spelling ("." for the root itself).  out, or NULL
 * with *why if it is absolute or has a ".." component. */
const char *ls_path_entry_name(const char *name, char *out, size_t *len, const char **why);

#endif
