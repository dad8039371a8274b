/* printable.h: names made safe for a terminal, one line each. */
#ifndef LS_PRINTABLE_H
#define LS_PRINTABLE_H

#include <stddef.h>
#include <stdio.h>
#include <lua.h>

/* The room ls_printable needs for len bytes, with the final NUL. */
#define LS_PRINTABLE_SIZE(len) (4 * (len) + 1)

/* Writes s[0..len) to out with every byte that is not printable text as
 * \ddd: control characters (C0, DEL, C1), invalid UTF-8, bidi controls,
 * line and paragraph separators, and the backslash.  out must hold
 * LS_PRINTABLE_SIZE(len) bytes; returns the length written (NUL-terminated). */
size_t ls_printable(char *out, const char *s, size_t len);

/* Writes the printable form of s[0..len) to f, without allocating (for
 * messages printed outside any protected call); write errors are ignored. */
void ls_fputs_printable(const char *s, size_t len, FILE *f);

/* Pushes the printable form of s[0..len); returns it. */
const char *ls_push_printable(lua_State *L, const char *s, size_t len);

/* printable(value) for Lua: tostring(value), escaped (errors.printable). */
int ls_l_printable(lua_State *L);

#endif
