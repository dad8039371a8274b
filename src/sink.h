/* sink.h: the byte-stream interface every C stream primitive shares.
 *
 * A sink is a Lua userdata whose memory begins with struct ls_sink and whose
 * metatable has the field LS_SINK_FIELD set to true.  Archive entries (and
 * nested readers, inflaters, ...) push bytes into sinks; Lua only wires them
 * together, no byte of layer data passes through Lua.
 */
#ifndef LS_SINK_H
#define LS_SINK_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <lua.h>

#define LS_SINK_FIELD "__layersplit_sink"

/* Error classes reported to Lua as the third result of a failed call:
 * nil, message, class.  The runtime maps them to exit codes. */
#define LS_EARCHIVE "archive" /* the input was rejected: exit 1 */
#define LS_EIO "io"           /* I/O or system failure: exit 3 */
#define LS_ESIGNAL "signal"   /* interrupted by a signal */
#define LS_EUSAGE "usage"     /* a usage error: exit 2 */
#define LS_EENTRY "entry"     /* one entry (or name) refused, the stream goes on: exit 1 */

struct ls_sink;

struct ls_sink_ops {
	/* Consume len bytes.  0 on success; -1 on failure, after which
	 * error() describes it and class() says LS_EIO or LS_EARCHIVE. */
	int (*write)(struct ls_sink *s, const void *buf, size_t len);
	const char *(*error)(struct ls_sink *s);
	const char *(*class)(struct ls_sink *s);
};

struct ls_sink {
	const struct ls_sink_ops *ops;
};

/* The sink at stack index idx, or NULL if that value is not a sink. */
struct ls_sink *ls_tosink(lua_State *L, int idx);
/* Like ls_tosink, but raises a Lua error naming argument arg if not a sink. */
struct ls_sink *ls_checksink(lua_State *L, int arg);
/* Marks the metatable at the top of the stack as a sink metatable. */
void ls_marksink(lua_State *L);
/* Writes buf to every sink in sinks[0..n).  0, or -1 with *failed set to
 * the sink that failed. */
int ls_sinks_write(struct ls_sink **sinks, int n, const void *buf, size_t len,
		   struct ls_sink **failed);

/* Set by the signal handler (SIGINT, SIGTERM, SIGHUP, SIGPIPE); every C loop
 * that moves data checks it and stops with class LS_ESIGNAL. */
extern volatile int ls_interrupted;

/* How long a C loop that waits on a condition variable sleeps at most
 * before it looks at ls_interrupted again. */
#define LS_WAIT_NS (100 * 1000 * 1000)

/* Initialises cv so that its timed waits count on the monotonic clock (a
 * clock step can't stall them).  0 or an errno. */
int ls_cond_init(pthread_cond_t *cv);
/* Waits on cv (from ls_cond_init), mu held, for at most LS_WAIT_NS; the
 * caller rechecks its condition and ls_interrupted. */
void ls_cond_tick(pthread_cond_t *cv, pthread_mutex_t *mu);

/* Pushes nil, message, class and returns 3: the failure convention. */
int ls_fail(lua_State *L, const char *class, const char *fmt, ...);

/* A file's bytes between two starts of its writeback. */
#define LS_WRITEBACK_CHUNK ((uint64_t)8 << 20)
/* Starts the disk's writeback of fd's bytes from *started to written, once
 * they are LS_WRITEBACK_CHUNK or more, and moves *started there: the disk
 * works while the run goes on, and the fsync before the commit finds little
 * left.  Only a hint: a failure is ignored (the fsync is what counts). */
void ls_writeback(int fd, uint64_t *started, uint64_t written);

#endif
