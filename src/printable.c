/* printable.c: the one escaping of names for messages.  Archive names reach
 * the terminal through errors, --verbose, --trace and the progress line; a
 * newline there would split a message, an escape sequence could rewrite the
 * screen or the window title.  So every byte that is not printable text is
 * written as \ddd (decimal, as in Lua), and so is the backslash itself. */
#include <string.h>

#include <lauxlib.h>

#include "printable.h"

/* The length of the printable UTF-8 character at s (at most n bytes), or 0
 * if it is invalid, overlong, a surrogate, a C1 control or a character that
 * reorders or separates lines (bidi controls, U+2028, U+2029). */
static size_t utf8_printable(const unsigned char *s, size_t n)
{
	size_t len;
	unsigned long c;

	if (s[0] > 0xf4)
		return 0;
	if (s[0] >= 0xf0)
		len = 4, c = s[0] & 0x07;
	else if (s[0] >= 0xe0)
		len = 3, c = s[0] & 0x0f;
	else if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, c = s[0] & 0x1f;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10ffff)) ||
	    (c >= 0xd800 && c <= 0xdfff) || c <= 0x9f ||
	    c == 0x061c || c == 0x200e || c == 0x200f || (c >= 0x2028 && c <= 0x202e) ||
	    (c >= 0x2066 && c <= 0x2069))
		return 0;
	return len;
}

/* Writes the printable form of the character at p (before end) to o: the
 * bytes consumed in *used, the bytes written returned (at most 4 per byte). */
static size_t unit(const unsigned char *p, const unsigned char *end, char *o, size_t *used)
{
	size_t n;

	if (*p >= 0x20 && *p < 0x7f && *p != '\\') {
		*o = (char)*p;
		return *used = 1;
	}
	if (*p >= 0x80 && (n = utf8_printable(p, (size_t)(end - p))) > 0) {
		memcpy(o, p, n);
		return *used = n;
	}
	o[0] = '\\';
	o[1] = (char)('0' + *p / 100);
	o[2] = (char)('0' + *p / 10 % 10);
	o[3] = (char)('0' + *p % 10);
	*used = 1;
	return 4;
}

size_t ls_printable(char *out, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	char *o = out;
	size_t used;

	while (p < end) {
		o += unit(p, end, o, &used);
		p += used;
	}
	*o = '\0';
	return (size_t)(o - out);
}

void ls_fputs_printable(const char *s, size_t len, FILE *f)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	char buf[1024];
	size_t n = 0, used;

	while (p < end) {
		n += unit(p, end, buf + n, &used);
		p += used;
		if (n > sizeof(buf) - 16) {
			(void)fwrite(buf, 1, n, f); /* stderr: nowhere to report to */
			n = 0;
		}
	}
	(void)fwrite(buf, 1, n, f);
}

const char *ls_push_printable(lua_State *L, const char *s, size_t len)
{
	luaL_Buffer b;
	char *out = luaL_buffinitsize(L, &b, LS_PRINTABLE_SIZE(len));

	luaL_pushresultsize(&b, ls_printable(out, s, len));
	return lua_tostring(L, -1);
}

int ls_l_printable(lua_State *L)
{
	size_t len;
	const char *s = luaL_tolstring(L, 1, &len);

	ls_push_printable(L, s, len);
	return 1;
}
