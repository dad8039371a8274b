/* reghttp.h: the HTTP side of layersplit.registry, on libcurl: a session
 * (TLS options, timeouts, one connection cache shared by every handle,
 * tracing) and the setup and answer of one request.  registry.c is the Lua
 * binding, regupload.c the streaming blob upload. */
#ifndef LS_REGHTTP_H
#define LS_REGHTTP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include <curl/curl.h>
#include <lua.h>

struct ls_reg_session {
	atomic_int refs; /* the Lua userdata and each upload */
	CURLSH *share;   /* connections and DNS, shared by the main and upload handles */
	pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
	CURL *easy;      /* the main thread's handle, reused */
	int tls_verify;
	long connect_timeout, low_speed_time; /* seconds */
	int trace;
	int after_signal; /* a clean-up request: runs although interrupted */
	char *cainfo, *sslcert, *sslkey; /* from cert_dir, or NULL */
	char *user_agent;
};

/* The answer to one request: the final response's status and headers, and
 * its body up to max_body bytes. */
struct ls_reg_response {
	long status;
	char *headers; /* "name\0value\0" pairs, names lowercase */
	size_t hlen, hcap;
	char *body;
	size_t blen, bcap, max_body;
	int too_large;
	char errbuf[CURL_ERROR_SIZE];
};

/* Sets up h (after curl_easy_reset) for a request of method to url: the
 * session's TLS options, timeouts and connection cache, the answer collected
 * into r, the header list hdrs (which the caller frees after the request).
 * The body, if any, is the caller's to set. */
void ls_reg_setup(struct ls_reg_session *s, CURL *h, const char *method, const char *url,
		  struct ls_reg_response *r, struct curl_slist *hdrs);
void ls_reg_response_free(struct ls_reg_response *r);
/* One "trace: METHOD /path: status" line on stderr (the path without its
 * query; never a header, so never a credential). */
void ls_reg_trace(struct ls_reg_session *s, const char *method, const char *url,
		  long status, const char *err);
/* Pushes {status=, headers={name=value}, body=, location=} for r, location
 * (when the answer has one) resolved against url. */
void ls_reg_push_response(lua_State *L, struct ls_reg_response *r, const char *url);
/* Why a transfer failed with rc: the answer's size cap when it was passed
 * (with the status, when one came), else curl's error buffer or its text
 * for rc.  buf (64 bytes will do) holds a composed message. */
const char *ls_reg_why(CURLcode rc, struct ls_reg_response *r, char *buf, size_t len);
/* Pushes the failure nil, ls_reg_why's message, class for a failed perform:
 * class "signal" when interrupted, else "io". */
int ls_reg_fail(lua_State *L, CURLcode rc, struct ls_reg_response *r);
/* The session's headers plus "Authorization: <auth>" when auth is given;
 * NULL when out of memory. */
struct curl_slist *ls_reg_headers(struct curl_slist *list, const char *auth);
/* The share's lock callbacks (CURLSHOPT_LOCKFUNC, UNLOCKFUNC), on s->locks. */
void ls_reg_lock_share(CURL *h, curl_lock_data data, curl_lock_access access, void *arg);
void ls_reg_unlock_share(CURL *h, curl_lock_data data, void *arg);
void ls_reg_session_release(struct ls_reg_session *s);

#endif
