/* regupload.c: session:upload(url), the streaming blob upload as a sink.
 *
 * A thread runs ONE PATCH to the upload location whose chunked body it reads
 * from a bounded ring; write() fills the ring and waits while it is full, so
 * a slow registry slows whoever feeds the sink and memory never grows.  A
 * failed transfer does not fail the sink: the bytes go on to the other
 * sinks (the spool) and finish() reports the failure, for a retry from the
 * spool.  Only a signal or a cancel makes write() fail.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>

#include "registry.h"
#include "reghttp.h"
#include "sink.h"

#define UPLOAD_MT "layersplit.registry.upload"

struct upload {
	struct ls_sink sink; /* first: the userdata is a sink */
	struct ls_reg_session *s;
	CURL *h;
	struct curl_slist *hdrs;
	struct ls_reg_response r;
	CURLcode rc;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t tid;
	int started, joined, finished;
	int eof, abort, done, timed_out;
	unsigned char *ring;
	size_t cap, head, len;
	unsigned long long queued, sent;
	time_t last_progress;
	curl_off_t last_ul, last_dl;
	char msg[128];
	char url[];
};

static time_t now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static int upload_write(struct ls_sink *sink, const void *buf, size_t len)
{
	struct upload *u = (struct upload *)sink;
	const unsigned char *p = buf;
	int rc = 0;

	pthread_mutex_lock(&u->mu);
	while (len > 0) {
		size_t tail, n;

		if (ls_interrupted) {
			snprintf(u->msg, sizeof(u->msg), "upload: interrupted");
			rc = -1;
			break;
		}
		if (u->done || u->abort || u->eof)
			break; /* the transfer ended: finish() says how */
		if (u->len == u->cap) {
			ls_cond_tick(&u->cv, &u->mu);
			continue;
		}
		tail = (u->head + u->len) % u->cap;
		n = u->cap - u->len;
		if (n > u->cap - tail)
			n = u->cap - tail;
		if (n > len)
			n = len;
		memcpy(u->ring + tail, p, n);
		u->len += n;
		u->queued += n;
		p += n;
		len -= n;
		pthread_cond_broadcast(&u->cv);
	}
	pthread_mutex_unlock(&u->mu);
	return rc;
}

static const char *upload_error(struct ls_sink *sink)
{
	return ((struct upload *)sink)->msg;
}

static const char *upload_class(struct ls_sink *sink)
{
	return LS_ESIGNAL;
}

static const struct ls_sink_ops upload_ops = {
	.write = upload_write,
	.error = upload_error,
	.class = upload_class,
};

/* Upload thread: the PATCH body, from the ring. */
static size_t on_read(char *buf, size_t size, size_t nitems, void *arg)
{
	struct upload *u = arg;
	size_t want = size * nitems, n = 0;

	pthread_mutex_lock(&u->mu);
	while (u->len == 0 && !u->eof && !u->abort && !ls_interrupted)
		ls_cond_tick(&u->cv, &u->mu);
	if (u->abort || ls_interrupted) {
		pthread_mutex_unlock(&u->mu);
		return CURL_READFUNC_ABORT;
	}
	while (want > 0 && u->len > 0) {
		size_t k = u->cap - u->head;

		if (k > u->len)
			k = u->len;
		if (k > want)
			k = want;
		memcpy(buf + n, u->ring + u->head, k);
		u->head = (u->head + k) % u->cap;
		u->len -= k;
		n += k;
		want -= k;
	}
	u->sent += n;
	u->last_progress = now();
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
	return n;
}

/* Upload thread: a registry that stops taking bytes (or answering) for
 * low_speed_time seconds ends the transfer; a slow producer does not. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
		       curl_off_t ultotal, curl_off_t ulnow)
{
	struct upload *u = arg;
	int stop = 0;

	pthread_mutex_lock(&u->mu);
	if (ulnow != u->last_ul || dlnow != u->last_dl) {
		u->last_ul = ulnow;
		u->last_dl = dlnow;
		u->last_progress = now();
	}
	if (u->abort || ls_interrupted) {
		stop = 1;
	} else if (u->s->low_speed_time > 0 && now() - u->last_progress > u->s->low_speed_time) {
		u->timed_out = 1;
		stop = 1;
	}
	pthread_mutex_unlock(&u->mu);
	return stop;
}

static void *upload_main(void *arg)
{
	struct upload *u = arg;

	u->rc = curl_easy_perform(u->h);
	curl_easy_getinfo(u->h, CURLINFO_RESPONSE_CODE, &u->r.status);
	pthread_mutex_lock(&u->mu);
	u->done = 1;
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
	return NULL;
}

static void join(struct upload *u)
{
	if (u->started && !u->joined) {
		pthread_join(u->tid, NULL);
		u->joined = 1;
	}
}

static void stop(struct upload *u)
{
	if (u->started) {
		pthread_mutex_lock(&u->mu);
		u->abort = 1;
		pthread_cond_broadcast(&u->cv);
		pthread_mutex_unlock(&u->mu);
	}
	join(u);
}

/* session:upload(url[, opts]): opts.auth, opts.buffer (bytes, default 1 MiB). */
int ls_reg_upload(lua_State *L, struct ls_reg_session *s)
{
	const char *url = luaL_checkstring(L, 2);
	const char *auth = NULL;
	lua_Integer cap = 1 << 20;
	struct curl_slist *hdrs;
	struct upload *u;
	sigset_t all, old;
	size_t ulen = strlen(url);
	int err;

	if (lua_istable(L, 3)) {
		lua_getfield(L, 3, "auth");
		auth = luaL_optstring(L, -1, NULL);
		lua_getfield(L, 3, "buffer");
		cap = luaL_optinteger(L, -1, cap);
		luaL_argcheck(L, cap >= 4096 && cap <= (64 << 20), 3, "buffer out of range");
	}
	u = lua_newuserdatauv(L, sizeof(*u) + ulen + 1, 1);
	memset(u, 0, sizeof(*u));
	memcpy(u->url, url, ulen + 1);
	u->sink.ops = &upload_ops;
	u->finished = 1; /* until the thread runs */
	pthread_mutex_init(&u->mu, NULL);
	if ((err = ls_cond_init(&u->cv)) != 0)
		return ls_fail(L, LS_EIO, "upload: %s", strerror(err));
	luaL_setmetatable(L, UPLOAD_MT);
	lua_pushvalue(L, 1);
	lua_setiuservalue(L, -2, 1); /* the session outlives the upload */
	atomic_fetch_add(&s->refs, 1);
	u->s = s;
	u->r.max_body = 1 << 20;
	u->cap = (size_t)cap;
	if ((u->ring = malloc(u->cap)) == NULL || (u->h = curl_easy_init()) == NULL ||
	    (u->hdrs = ls_reg_headers(NULL, auth)) == NULL ||
	    (hdrs = curl_slist_append(u->hdrs, "Content-Type: application/octet-stream")) == NULL)
		return ls_fail(L, LS_EIO, "upload: out of memory");
	u->hdrs = hdrs;
	ls_reg_setup(s, u->h, "PATCH", url, &u->r, u->hdrs);
	/* Unknown length over HTTP/1.1: curl sends the body chunked. */
	curl_easy_setopt(u->h, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(u->h, CURLOPT_READFUNCTION, on_read);
	curl_easy_setopt(u->h, CURLOPT_READDATA, u);
	curl_easy_setopt(u->h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(u->h, CURLOPT_XFERINFODATA, u);
	curl_easy_setopt(u->h, CURLOPT_LOW_SPEED_TIME, 0L);
	u->last_progress = now();
	/* Signals reach the main thread only. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	err = pthread_create(&u->tid, NULL, upload_main, u);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err != 0)
		return ls_fail(L, LS_EIO, "upload: cannot start a thread: %s", strerror(err));
	u->started = 1;
	u->finished = 0;
	return 1;
}

/* upload:finish(): ends the body and waits for the answer to the PATCH:
 * the response table, or nil, message, class ("timeout" in the message
 * when the registry stalled). */
static int u_finish(lua_State *L)
{
	struct upload *u = luaL_checkudata(L, 1, UPLOAD_MT);
	const char *ok;
	char why[64];

	if (u->finished)
		return luaL_error(L, "upload already finished");
	pthread_mutex_lock(&u->mu);
	u->eof = 1;
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
	join(u);
	u->finished = 1;
	ok = u->rc == CURLE_OK ? NULL : u->timed_out ? "timeout: the registry stopped taking data"
		: ls_reg_why(u->rc, &u->r, why, sizeof(why));
	ls_reg_trace(u->s, "PATCH", u->url, u->r.status, ok);
	if (u->rc != CURLE_OK) {
		if (ls_interrupted)
			return ls_fail(L, LS_ESIGNAL, "interrupted");
		return ls_fail(L, LS_EIO, "%s", ok);
	}
	ls_reg_push_response(L, &u->r, u->url);
	lua_pushinteger(L, (lua_Integer)u->sent);
	lua_setfield(L, -2, "sent");
	return 1;
}

/* upload:cancel(): stops the transfer (the caller DELETEs the location). */
static int u_cancel(lua_State *L)
{
	struct upload *u = luaL_checkudata(L, 1, UPLOAD_MT);

	stop(u);
	u->finished = 1;
	return 0;
}

static int u_gc(lua_State *L)
{
	struct upload *u = luaL_checkudata(L, 1, UPLOAD_MT);

	if (u->s == NULL)
		return 0;
	stop(u);
	if (u->h)
		curl_easy_cleanup(u->h);
	curl_slist_free_all(u->hdrs);
	ls_reg_response_free(&u->r);
	free(u->ring);
	pthread_mutex_destroy(&u->mu);
	pthread_cond_destroy(&u->cv);
	ls_reg_session_release(u->s);
	u->s = NULL;
	u->h = NULL;
	u->hdrs = NULL;
	u->ring = NULL;
	return 0;
}

static int u_tostring(lua_State *L)
{
	struct upload *u = luaL_checkudata(L, 1, UPLOAD_MT);

	lua_pushfstring(L, "registry upload (%s)", u->finished ? "finished" : "streaming");
	return 1;
}

void ls_reg_upload_meta(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"finish", u_finish}, {"cancel", u_cancel}, {NULL, NULL},
	};
	static const luaL_Reg meta[] = {
		{"__gc", u_gc}, {"__close", u_gc}, {"__tostring", u_tostring}, {NULL, NULL},
	};

	if (luaL_newmetatable(L, UPLOAD_MT)) {
		luaL_setfuncs(L, meta, 0);
		luaL_newlibtable(L, methods);
		luaL_setfuncs(L, methods, 0);
		lua_setfield(L, -2, "__index");
		ls_marksink(L);
	}
	lua_pop(L, 1);
}
