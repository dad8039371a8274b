/* embedded.h: the bundled Lua sources compiled into the binary. */
#ifndef LS_EMBEDDED_H
#define LS_EMBEDDED_H

#include <stddef.h>

struct ls_embedded {
	const char *module; /* "layersplit.cli", "layersplit.policies.launchpad" */
	const char *chunk;  /* "@layersplit/cli.lua": readable tracebacks */
	const char *source;
	size_t size;
};

/* Terminated by an entry whose module is NULL. */
extern const struct ls_embedded ls_embedded[];

#endif
