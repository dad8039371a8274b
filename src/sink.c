/* sink.c: helpers shared by every sink type. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <fcntl.h>

#include <lauxlib.h>

#include "sink.h"

volatile int ls_interrupted;

struct ls_sink *ls_tosink(lua_State *L, int idx)
{
	void *p = lua_touserdata(L, idx);
	int is_sink;

	if (p == NULL || !lua_getmetatable(L, idx))
		return NULL;
	lua_getfield(L, -1, LS_SINK_FIELD);
	is_sink = lua_toboolean(L, -1);
	lua_pop(L, 2);
	return is_sink ? (struct ls_sink *)p : NULL;
}

struct ls_sink *ls_checksink(lua_State *L, int arg)
{
	struct ls_sink *s = ls_tosink(L, arg);

	if (s == NULL)
		luaL_typeerror(L, arg, "sink");
	return s;
}

void ls_marksink(lua_State *L)
{
	lua_pushboolean(L, 1);
	lua_setfield(L, -2, LS_SINK_FIELD);
}

int ls_sinks_write(struct ls_sink **sinks, int n, const void *buf, size_t len,
		   struct ls_sink **failed)
{
	for (int i = 0; i < n; i++) {
		if (sinks[i]->ops->write(sinks[i], buf, len) != 0) {
			*failed = sinks[i];
			return -1;
		}
	}
	return 0;
}

int ls_fail(lua_State *L, const char *class, const char *fmt, ...)
{
	va_list ap;

	lua_pushnil(L);
	va_start(ap, fmt);
	lua_pushvfstring(L, fmt, ap);
	va_end(ap);
	lua_pushstring(L, class);
	return 3;
}

int ls_cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	int rc = pthread_condattr_init(&ca);

	if (rc != 0)
		return rc;
	rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (rc == 0)
		rc = pthread_cond_init(cv, &ca);
	(void)pthread_condattr_destroy(&ca);
	return rc;
}

void ls_cond_tick(pthread_cond_t *cv, pthread_mutex_t *mu)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
		pthread_cond_wait(cv, mu);
		return;
	}
	ts.tv_nsec += LS_WAIT_NS;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	/* ETIMEDOUT is the point of the timeout; the caller rechecks anyway. */
	(void)pthread_cond_timedwait(cv, mu, &ts);
}

void ls_writeback(int fd, uint64_t *started, uint64_t written)
{
	if (written - *started < LS_WRITEBACK_CHUNK)
		return;
	(void)sync_file_range(fd, (off_t)*started, (off_t)(written - *started),
			      SYNC_FILE_RANGE_WRITE);
	*started = written;
}
