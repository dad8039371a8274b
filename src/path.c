/* path.c: archive paths and output names, checked and normalized in memory. */
#include <string.h>

#include "path.h"

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

const char *ls_path_normalize(const char *s, size_t len, char *out,
			      size_t *outlen, enum ls_path_names *names)
{
	const char *why = bad_archive_path(s, len);

	*names = LS_PATH_NAMES_PATH;
	*outlen = 0;
	if (why != NULL)
		return why;
	if (push_components(out, outlen, s, len) != 0)
		return "path climbs out of the archive";
	if (*outlen == 0) {
		if (len == 0)
			*names = LS_PATH_NAMES_NOTHING; /* not ": empty path" */
		return "empty path";
	}
	return NULL;
}

const char *ls_path_resolve_link(const char *link, size_t llen,
				 const char *target, size_t tlen, char *out,
				 size_t *outlen, enum ls_path_names *names)
{
	const char *why = bad_archive_path(link, llen);
	char *slash;

	*names = LS_PATH_NAMES_PATH;
	*outlen = 0;
	if (why != NULL)
		return why;
	if (memchr(target, '\0', tlen) != NULL)
		return "NUL byte in link target";
	if (tlen == 0)
		return "empty link target";
	if (target[0] == '/') {
		*names = LS_PATH_NAMES_LINK;
		return "link target is absolute";
	}
	if ((why = ls_path_normalize(link, llen, out, outlen, names)) != NULL)
		return why;
	/* The target is relative to the directory holding the link. */
	slash = memrchr(out, '/', *outlen);
	*outlen = slash ? (size_t)(slash - out) : 0;
	*names = LS_PATH_NAMES_LINK;
	if (push_components(out, outlen, target, tlen) != 0)
		return "link target climbs out of the archive";
	if (*outlen == 0)
		return "link target is the archive root";
	return NULL;
}

const char *ls_path_unsafe_name(const char *s, size_t len)
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

/* An entry name as the reader hands it out (see path.h). */
const char *ls_path_entry_name(const char *name, char *out, size_t *len, const char **why)
{
	const char *c, *slash;
	size_t n = 0;

	if (*name == '/') {
		*why = "absolute path in archive";
		return NULL;
	}
	for (c = name; *c != '\0'; c = *slash ? slash + 1 : slash) {
		slash = strchrnul(c, '/');
		if (slash == c || (slash - c == 1 && c[0] == '.'))
			continue;
		if (slash - c == 2 && c[0] == '.' && c[1] == '.') {
			*why = "path climbs out of the archive with ..";
			return NULL;
		}
		if (n > 0)
			out[n++] = '/';
		memcpy(out + n, c, (size_t)(slash - c));
		n += (size_t)(slash - c);
	}
	if (n == 0) /* "./" itself: the archive root */
		out[n++] = '.';
	out[n] = '\0';
	*len = n;
	return out;
}
