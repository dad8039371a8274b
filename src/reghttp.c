/* reghttp.c: one request's setup and answer, shared by the session's
 * requests (registry.c) and the streaming upload (regupload.c). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "printable.h"
#include "reghttp.h"
#include "sink.h"

#define MAX_HEADERS (64 * 1024)

static int grow(char **buf, size_t *cap, size_t need)
{
	size_t n = *cap ? *cap : 1024;
	char *p;

	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	if ((p = realloc(*buf, n)) == NULL)
		return -1;
	*buf = p;
	*cap = n;
	return 0;
}

/* Keeps the last response's header lines; a status line starts over (an
 * interim 100 Continue has its own). */
static size_t on_header(char *line, size_t size, size_t n, void *arg)
{
	struct ls_reg_response *r = arg;
	size_t len = size * n, name_len, value_len;
	const char *colon, *value;

	if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
		r->hlen = 0;
		return len;
	}
	colon = memchr(line, ':', len);
	if (colon == NULL)
		return len;
	name_len = (size_t)(colon - line);
	value = colon + 1;
	while (value < line + len && (*value == ' ' || *value == '\t'))
		value++;
	value_len = (size_t)(line + len - value);
	while (value_len > 0 && isspace((unsigned char)value[value_len - 1]))
		value_len--;
	if (r->hlen + name_len + value_len + 2 > MAX_HEADERS)
		return len; /* a flood of headers is dropped, not stored */
	if (grow(&r->headers, &r->hcap, r->hlen + name_len + value_len + 2) != 0)
		return 0;
	for (size_t i = 0; i < name_len; i++)
		r->headers[r->hlen++] = (char)tolower((unsigned char)line[i]);
	r->headers[r->hlen++] = '\0';
	memcpy(r->headers + r->hlen, value, value_len);
	r->hlen += value_len;
	r->headers[r->hlen++] = '\0';
	return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct ls_reg_response *r = arg;
	size_t len = size * n;

	if (r->blen + len > r->max_body) {
		r->too_large = 1;
		return 0;
	}
	if (grow(&r->body, &r->bcap, r->blen + len + 1) != 0)
		return 0;
	memcpy(r->body + r->blen, data, len);
	r->blen += len;
	return len;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
		       curl_off_t ultotal, curl_off_t ulnow)
{
	struct ls_reg_session *s = arg;

	return ls_interrupted != 0 && !s->after_signal;
}

void ls_reg_lock_share(CURL *h, curl_lock_data data, curl_lock_access access, void *arg)
{
	struct ls_reg_session *s = arg;

	pthread_mutex_lock(&s->locks[data]);
}

void ls_reg_unlock_share(CURL *h, curl_lock_data data, void *arg)
{
	struct ls_reg_session *s = arg;

	pthread_mutex_unlock(&s->locks[data]);
}

void ls_reg_setup(struct ls_reg_session *s, CURL *h, const char *method, const char *url,
		  struct ls_reg_response *r, struct curl_slist *hdrs)
{
	if (s->share != NULL)
		curl_easy_setopt(h, CURLOPT_SHARE, s->share);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, s->user_agent);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, s->connect_timeout);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, s->low_speed_time);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, s->tls_verify ? 1L : 0L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, s->tls_verify ? 2L : 0L);
	if (s->cainfo)
		curl_easy_setopt(h, CURLOPT_CAINFO, s->cainfo);
	if (s->sslcert)
		curl_easy_setopt(h, CURLOPT_SSLCERT, s->sslcert);
	if (s->sslkey)
		curl_easy_setopt(h, CURLOPT_SSLKEY, s->sslkey);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, s);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	else if (strcmp(method, "GET") != 0)
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	r->errbuf[0] = '\0';
}

void ls_reg_response_free(struct ls_reg_response *r)
{
	free(r->headers);
	free(r->body);
	r->headers = r->body = NULL;
	r->hlen = r->hcap = r->blen = r->bcap = 0;
}

void ls_reg_trace(struct ls_reg_session *s, const char *method, const char *url,
		  long status, const char *err)
{
	CURLU *u;
	char *path = NULL, *host = NULL;

	if (!s->trace)
		return;
	u = curl_url();
	if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
		curl_url_get(u, CURLUPART_PATH, &path, 0);
		curl_url_get(u, CURLUPART_HOST, &host, 0);
	}
	/* escaped as every message: repository names come from the archive */
	fprintf(stderr, "trace: %s ", method);
	if (host != NULL)
		ls_fputs_printable(host, strlen(host), stderr);
	ls_fputs_printable(path ? path : "?", strlen(path ? path : "?"), stderr);
	fputs(": ", stderr);
	if (err != NULL)
		ls_fputs_printable(err, strlen(err), stderr);
	else
		fprintf(stderr, "%ld", status);
	fputc('\n', stderr);
	curl_free(path);
	curl_free(host);
	curl_url_cleanup(u);
}

/* location resolved against url, as a new string on the stack. */
static void push_resolved(lua_State *L, const char *url, const char *location)
{
	CURLU *u = curl_url();
	char *abs = NULL;

	if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_URL, location, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_URL, &abs, 0) == CURLUE_OK)
		lua_pushstring(L, abs);
	else
		lua_pushnil(L);
	curl_free(abs);
	curl_url_cleanup(u);
}

void ls_reg_push_response(lua_State *L, struct ls_reg_response *r, const char *url)
{
	size_t i = 0;

	lua_createtable(L, 0, 4);
	lua_pushinteger(L, r->status);
	lua_setfield(L, -2, "status");
	lua_pushlstring(L, r->body ? r->body : "", r->blen);
	lua_setfield(L, -2, "body");
	lua_newtable(L);
	while (i < r->hlen) {
		const char *name = r->headers + i;
		const char *value = name + strlen(name) + 1;

		i = (size_t)(value - r->headers) + strlen(value) + 1;
		lua_pushstring(L, value);
		lua_setfield(L, -2, name);
	}
	lua_getfield(L, -1, "location");
	if (lua_isstring(L, -1)) {
		push_resolved(L, url, lua_tostring(L, -1));
		lua_setfield(L, -4, "location");
	}
	lua_pop(L, 1);
	lua_setfield(L, -2, "headers");
}

const char *ls_reg_why(CURLcode rc, struct ls_reg_response *r, char *buf, size_t len)
{
	if (r->too_large && r->status > 0) {
		snprintf(buf, len, "answer larger than %zu bytes (HTTP %ld)", r->max_body, r->status);
		return buf;
	}
	if (r->too_large) {
		snprintf(buf, len, "answer larger than %zu bytes", r->max_body);
		return buf;
	}
	return r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);
}

int ls_reg_fail(lua_State *L, CURLcode rc, struct ls_reg_response *r)
{
	char buf[64];

	if (rc == CURLE_ABORTED_BY_CALLBACK && ls_interrupted)
		return ls_fail(L, LS_ESIGNAL, "interrupted");
	return ls_fail(L, LS_EIO, "%s", ls_reg_why(rc, r, buf, sizeof(buf)));
}

struct curl_slist *ls_reg_headers(struct curl_slist *list, const char *auth)
{
	struct curl_slist *l;
	char *line;

	/* No "Expect: 100-continue" round trip before a body. */
	if ((l = curl_slist_append(list, "Expect:")) == NULL)
		goto fail;
	list = l;
	if (auth == NULL)
		return list;
	if ((line = malloc(strlen(auth) + 16)) == NULL)
		goto fail;
	sprintf(line, "Authorization: %s", auth);
	l = curl_slist_append(list, line);
	/* The credential is not left lying in freed memory. */
	explicit_bzero(line, strlen(line));
	free(line);
	if (l == NULL)
		goto fail;
	return l;
fail:
	curl_slist_free_all(list);
	return NULL;
}

void ls_reg_session_release(struct ls_reg_session *s)
{
	if (atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	if (s->easy)
		curl_easy_cleanup(s->easy);
	if (s->share)
		curl_share_cleanup(s->share);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&s->locks[i]);
	free(s->cainfo);
	free(s->sslcert);
	free(s->sslkey);
	free(s->user_agent);
	free(s);
}
