/* repl.h: layersplit.repl, the read-eval-print loop of `layersplit repl`. */
#ifndef LS_REPL_H
#define LS_REPL_H

#include <lua.h>

/* Module "layersplit.repl": repl.run([opts]) reads statements from standard
 * input and runs them in the calling state's globals.  Needs the state the
 * binary's host made: it sets ls_interrupted, which the C primitives watch. */
int luaopen_layersplit_repl(lua_State *L);

#endif
