/* progress.c: layersplit.progress, a progress line on stderr for people
 * watching a long run.  A ticker thread redraws it a few times a second from
 * counters the data path keeps anyway, so no Lua runs per data block. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>

#include "archive.h"
#include "printable.h"
#include "progress.h"
#include "sink.h"

#define METER_MT "layersplit.progress.meter"
#define TICK_NS 250000000L
#define WINDOW 8		/* samples the rate is taken over: about 2 s */
#define LABEL_IN 256		/* bytes of an entry name shown, at most */
#define LABEL_MAX LS_PRINTABLE_SIZE(LABEL_IN)
#define LINE_MAX_COLS 512

struct meter {
	const _Atomic uint64_t *bytes_in; /* the reader's; kept alive by the user value */
	uint64_t total;			/* input size, 0 when unknown */
	int fd;

	pthread_mutex_t mu;		/* guards label and stopping */
	pthread_cond_t cv;
	int stopping;
	char label[LABEL_MAX];
	_Atomic unsigned layers;

	int started, stopped, drawn;	/* drawn: written by the ticker, read after join */
	pthread_t ticker;
	double win_t[WINDOW];		/* the ticker's own rate window */
	uint64_t win_bytes[WINDOW];
	int win_n;
};

static double now(void)
{
	struct timespec ts;

	/* CLOCK_MONOTONIC cannot fail on Linux with a valid pointer. */
	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void human_bytes(char *out, size_t size, double n)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
	int u = -1;

	if (n < 1024) {
		snprintf(out, size, "%.0f B", n);
		return;
	}
	while (n >= 1024 && u < 4) {
		n /= 1024;
		u++;
	}
	snprintf(out, size, "%.1f %s", n, units[u]);
}

static void duration(char *out, size_t size, double seconds)
{
	long s = seconds > 359999 ? 359999 : (long)(seconds + 0.5);

	if (s >= 3600)
		snprintf(out, size, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
	else
		snprintf(out, size, "%ld:%02ld", s / 60, s % 60);
}

/* Columns of the terminal on fd, less one so the line never wraps. */
static int columns(int fd)
{
	struct winsize ws;
	int cols = 80;

	if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		cols = ws.ws_col;
	if (cols > LINE_MAX_COLS)
		cols = LINE_MAX_COLS;
	return cols > 20 ? cols - 1 : 19;
}

/* Bytes per second over the last few ticks; 0 until there are two samples. */
static double rate(struct meter *m, double t, uint64_t bytes)
{
	if (m->win_n == WINDOW) {
		memmove(m->win_t, m->win_t + 1, (WINDOW - 1) * sizeof(m->win_t[0]));
		memmove(m->win_bytes, m->win_bytes + 1, (WINDOW - 1) * sizeof(m->win_bytes[0]));
		m->win_n--;
	}
	m->win_t[m->win_n] = t;
	m->win_bytes[m->win_n] = bytes;
	m->win_n++;
	if (m->win_n < 2 || t <= m->win_t[0])
		return 0;
	return (double)(bytes - m->win_bytes[0]) / (t - m->win_t[0]);
}

/* Appends as much of label's tail as fits in room columns, from a UTF-8
 * character boundary, with "..." in front when it was cut. */
static int append_label(char *out, size_t room, const char *label)
{
	size_t len = strlen(label);
	const char *p = label;

	if (len <= room)
		return snprintf(out, room + 1, "%s", label);
	if (room < 8)
		return 0;
	p = label + len - (room - 3);
	while ((*p & 0xc0) == 0x80)
		p++;
	return snprintf(out, room + 1, "...%s", p);
}

static void write_all(int fd, const char *s, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* a progress line is not worth failing the run for */
		s += w;
		n -= (size_t)w;
	}
}

/* "\r" + one line no wider than the terminal + clear to the end of the line. */
static void draw(struct meter *m, const char *label)
{
	char line[LINE_MAX_COLS + 16], done[32], total[32], speed[32], eta[32];
	uint64_t bytes = atomic_load_explicit(m->bytes_in, memory_order_relaxed);
	unsigned layers = atomic_load_explicit(&m->layers, memory_order_relaxed);
	double bps = rate(m, now(), bytes);
	size_t cols = (size_t)columns(m->fd);
	char *p = line + 1;	/* after the "\r" */
	int n;

	human_bytes(done, sizeof done, (double)bytes);
	n = snprintf(p, LINE_MAX_COLS + 1, "layersplit: %s", done);
	if (m->total > 0) {
		human_bytes(total, sizeof total, (double)m->total);
		n += snprintf(p + n, LINE_MAX_COLS + 1 - n, " of %s %3d%%", total,
			      bytes >= m->total ? 100 : (int)(bytes * 100 / m->total));
	}
	if (bps > 0) {
		human_bytes(speed, sizeof speed, bps);
		n += snprintf(p + n, LINE_MAX_COLS + 1 - n, "  %s/s", speed);
		if (m->total > bytes) {
			duration(eta, sizeof eta, (double)(m->total - bytes) / bps);
			n += snprintf(p + n, LINE_MAX_COLS + 1 - n, "  ETA %s", eta);
		}
	}
	n += snprintf(p + n, LINE_MAX_COLS + 1 - n, "  %u layer%s",
		      layers, layers == 1 ? "" : "s");
	if ((size_t)n > cols)
		n = (int)cols;
	if (label[0] != '\0' && (size_t)n + 2 + (strlen(label) < 8 ? strlen(label) : 8) <= cols) {
		memcpy(p + n, "  ", 2);
		n += 2;
		n += append_label(p + n, cols - (size_t)n, label);
	}
	if ((size_t)n > cols)
		n = (int)cols;
	line[0] = '\r';
	memcpy(p + n, "\033[K", 3);
	write_all(m->fd, line, (size_t)n + 4);
	m->drawn = 1;
}

static void *ticker_main(void *arg)
{
	struct meter *m = arg;
	char label[LABEL_MAX];
	struct timespec until;

	for (;;) {
		pthread_mutex_lock(&m->mu);
		if (m->stopping) {
			pthread_mutex_unlock(&m->mu);
			return NULL;
		}
		memcpy(label, m->label, sizeof label);
		pthread_mutex_unlock(&m->mu);
		/* Drawn outside the lock: a stalled terminal must not stall the data path. */
		draw(m, label);
		(void)clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += TICK_NS;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&m->mu);
		/* 0 is a wakeup (stop, or spurious); anything else ends the wait. */
		while (!m->stopping && pthread_cond_timedwait(&m->cv, &m->mu, &until) == 0)
			;
		pthread_mutex_unlock(&m->mu);
	}
}

/* Stops the ticker and clears its line; idempotent. */
static void stop(struct meter *m)
{
	if (m->stopped)
		return;
	m->stopped = 1;
	if (m->started) {
		pthread_mutex_lock(&m->mu);
		m->stopping = 1;
		pthread_cond_signal(&m->cv);
		pthread_mutex_unlock(&m->mu);
		pthread_join(m->ticker, NULL);
		if (m->drawn)
			write_all(m->fd, "\r\033[K", 4);
	}
	pthread_cond_destroy(&m->cv);
	pthread_mutex_destroy(&m->mu);
}

static struct meter *check_meter(lua_State *L)
{
	struct meter *m = luaL_checkudata(L, 1, METER_MT);

	if (m->stopped)
		luaL_error(L, "attempt to use a stopped progress meter");
	return m;
}

/* Starts the ticker with every signal blocked, so signals reach the main thread. */
static int start_ticker(struct meter *m)
{
	sigset_t all, old;
	int err;

	sigfillset(&all);
	err = pthread_sigmask(SIG_BLOCK, &all, &old);
	if (err != 0)
		return err;
	err = pthread_create(&m->ticker, NULL, ticker_main, m);
	/* Restoring the caller's own mask can't fail with a valid how. */
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	return err;
}

/* progress.start(reader [, {total = bytes}]) -> meter */
static int l_start(lua_State *L)
{
	const _Atomic uint64_t *bytes_in = ls_archive_bytes_in(L, 1);
	lua_Integer total = 0;
	pthread_condattr_t attr;
	struct meter *m;
	int err;

	if (!lua_isnoneornil(L, 2)) {
		luaL_checktype(L, 2, LUA_TTABLE);
		lua_getfield(L, 2, "total");
		total = luaL_optinteger(L, -1, 0);
		lua_pop(L, 1);
	}
	m = lua_newuserdatauv(L, sizeof(*m), 1);
	memset(m, 0, sizeof(*m));
	m->stopped = 1; /* nothing to release until the primitives are set up */
	luaL_setmetatable(L, METER_MT);
	lua_pushvalue(L, 1);
	lua_setiuservalue(L, -2, 1);
	m->bytes_in = bytes_in;
	m->total = total > 0 ? (uint64_t)total : 0;
	m->fd = STDERR_FILENO;
	atomic_init(&m->layers, 0);
	if (pthread_condattr_init(&attr) != 0)
		return ls_fail(L, LS_EIO, "progress: %s", strerror(ENOMEM));
	err = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	if (err == 0)
		err = pthread_cond_init(&m->cv, &attr);
	pthread_condattr_destroy(&attr);
	if (err != 0)
		return ls_fail(L, LS_EIO, "progress: %s", strerror(err));
	err = pthread_mutex_init(&m->mu, NULL);
	if (err != 0) {
		pthread_cond_destroy(&m->cv);
		return ls_fail(L, LS_EIO, "progress: %s", strerror(err));
	}
	m->stopped = 0;
	err = start_ticker(m);
	if (err != 0) {
		stop(m);
		return ls_fail(L, LS_EIO, "progress: %s", strerror(err));
	}
	m->started = 1;
	return 1;
}

static int m_label(lua_State *L)
{
	struct meter *m = check_meter(L);
	size_t len;
	const char *s = luaL_optlstring(L, 2, "", &len);

	char label[LS_PRINTABLE_SIZE(LABEL_IN)];

	if (len > LABEL_IN) {
		s += len - LABEL_IN; /* the end of a path says the most */
		len = LABEL_IN;
		while (len > 0 && ((unsigned char)*s & 0xc0) == 0x80)
			s++, len--; /* from a character boundary */
	}
	/* Entry names come from the archive: escaped as in every message. */
	len = ls_printable(label, s, len);
	pthread_mutex_lock(&m->mu);
	memcpy(m->label, label, len + 1);
	pthread_mutex_unlock(&m->mu);
	return 0;
}

static int m_layer_done(lua_State *L)
{
	struct meter *m = check_meter(L);

	atomic_fetch_add_explicit(&m->layers, 1, memory_order_relaxed);
	return 0;
}

static int m_stop(lua_State *L)
{
	stop(luaL_checkudata(L, 1, METER_MT));
	return 0;
}

static int m_tostring(lua_State *L)
{
	struct meter *m = luaL_checkudata(L, 1, METER_MT);

	if (m->stopped)
		lua_pushstring(L, "progress meter (stopped)");
	else
		lua_pushfstring(L, "progress meter (%p)", (void *)m);
	return 1;
}

/* progress.is_terminal() -> whether stderr is a terminal */
static int l_is_terminal(lua_State *L)
{
	lua_pushboolean(L, isatty(STDERR_FILENO));
	return 1;
}

/* progress.input_size(path) -> size of a regular file ("-": standard input), or nil */
static int l_input_size(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct stat st;
	int rc = strcmp(path, "-") == 0 ? fstat(STDIN_FILENO, &st) : stat(path, &st);

	if (rc != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0)
		return 0;
	lua_pushinteger(L, (lua_Integer)st.st_size);
	return 1;
}

/* progress.clock() -> seconds on a monotonic clock, for timing a run */
static int l_clock(lua_State *L)
{
	lua_pushnumber(L, now());
	return 1;
}

int luaopen_layersplit_progress(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"label", m_label}, {"layer_done", m_layer_done}, {"stop", m_stop},
		{NULL, NULL},
	};
	static const luaL_Reg meta[] = {
		{"__gc", m_stop}, {"__close", m_stop}, {"__tostring", m_tostring},
		{NULL, NULL},
	};
	static const luaL_Reg funcs[] = {
		{"start", l_start}, {"is_terminal", l_is_terminal},
		{"input_size", l_input_size}, {"clock", l_clock}, {NULL, NULL},
	};

	if (luaL_newmetatable(L, METER_MT)) {
		luaL_setfuncs(L, meta, 0);
		luaL_newlib(L, methods);
		lua_setfield(L, -2, "__index");
	}
	lua_pop(L, 1);
	luaL_newlib(L, funcs);
	return 1;
}
