/* gzwrite.c: the block-parallel gzip writer (the pigz way, one member).
 *
 * Three stages overlap: the caller copies input into a ring of block slots
 * and hashes it; worker threads compress the slots; a writer thread writes
 * them in order and hashes the output.  The ring bounds memory: the caller
 * waits when every slot is in flight.  This file is the caller's side and
 * the set-up and tear-down; the threads are in gzpool.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "digest.h"
#include "gzpool.h"
#include "gzwrite.h"
#include "sink.h"

#define WAIT_NS (100 * 1000 * 1000) /* how often waits look at ls_interrupted */

static void fail(struct ls_gzwrite *gz, const char *class, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&gz->mu);
	va_start(ap, fmt);
	ls_gzpool_vfail_locked(gz, class, fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&gz->mu);
}

/* Waits on cv for at most WAIT_NS, so the caller notices signals. */
static void timed_wait(struct ls_gzwrite *gz, pthread_cond_t *cv)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
		pthread_cond_wait(cv, &gz->mu);
		return;
	}
	ts.tv_nsec += WAIT_NS;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	/* ETIMEDOUT is the point of the timeout; the caller rechecks anyway. */
	(void)pthread_cond_timedwait(cv, &gz->mu, &ts);
}

/* Caller: waits for the next slot in the ring and starts filling it. */
static int acquire(struct ls_gzwrite *gz)
{
	uint64_t seq = gz->filled;
	struct slot *s = &gz->slots[seq % (uint64_t)gz->nslots];

	pthread_mutex_lock(&gz->mu);
	for (;;) {
		if (ls_interrupted)
			ls_gzpool_fail_locked(gz, LS_ESIGNAL, "%s: interrupted", gz->path);
		if (atomic_load(&gz->failed) || s->state == SLOT_FREE)
			break;
		timed_wait(gz, &gz->free_cv);
	}
	if (atomic_load(&gz->failed)) {
		pthread_mutex_unlock(&gz->mu);
		return -1;
	}
	s->state = SLOT_FILLING;
	pthread_mutex_unlock(&gz->mu);
	s->len = 0;
	s->last = 0;
	s->dict_len = 0;
	if (seq > 0) {
		/* The previous slot can't be refilled before this one is handed out. */
		struct slot *prev = &gz->slots[(seq - 1) % (uint64_t)gz->nslots];

		memcpy(s->in, prev->in + DICT + BLOCK - DICT, DICT);
		s->dict_len = DICT;
	}
	gz->cur = s;
	return 0;
}

/* Caller: hands the slot being filled to the workers. */
static void submit(struct ls_gzwrite *gz, int last)
{
	struct slot *s = gz->cur;

	pthread_mutex_lock(&gz->mu);
	s->last = last;
	s->state = SLOT_READY;
	gz->filled++;
	pthread_cond_signal(&gz->work_cv);
	pthread_mutex_unlock(&gz->mu);
	gz->cur = NULL;
}

int ls_gzwrite_write(struct ls_gzwrite *gz, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	if (atomic_load(&gz->failed))
		return -1;
	while (len > 0) {
		struct slot *s;
		size_t n;

		if (gz->cur == NULL && acquire(gz) != 0)
			return -1;
		s = gz->cur;
		n = BLOCK - s->len < len ? BLOCK - s->len : len;
		memcpy(s->in + DICT + s->len, p, n);
		/* Hash the piece just copied while it is still in cache. */
		if (!EVP_DigestUpdate(gz->in_md, p, n)) {
			fail(gz, LS_EIO, "%s: sha256: EVP_DigestUpdate failed", gz->path);
			return -1;
		}
		s->len += n;
		gz->in_size += n;
		p += n;
		len -= n;
		if (s->len == BLOCK)
			submit(gz, 0);
	}
	return 0;
}

/* Frees the blocks and engines: all that is big.  Threads must be joined. */
static void release(struct ls_gzwrite *gz)
{
	if (gz->slots != NULL) {
		for (int i = 0; i < gz->nslots; i++) {
			free(gz->slots[i].in);
			free(gz->slots[i].out.data);
		}
		free(gz->slots);
		gz->slots = NULL;
	}
	if (gz->workers != NULL) {
		for (int i = 0; i < gz->nworkers; i++)
			gz->eng->close(gz->workers[i].engine);
		free(gz->workers);
		gz->workers = NULL;
	}
	EVP_MD_CTX_free(gz->in_md);
	EVP_MD_CTX_free(gz->out_md);
	gz->in_md = gz->out_md = NULL;
}

static int digest_hex(EVP_MD_CTX *md, char hex[LS_SHA256_HEXLEN + 1])
{
	unsigned char buf[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	if (!EVP_DigestFinal_ex(md, buf, &len) || len != LS_SHA256_LEN)
		return -1;
	ls_sha256_hex(buf, hex);
	return 0;
}

int ls_gzwrite_finish(struct ls_gzwrite *gz, struct ls_gzwrite_result *r)
{
	int ok;

	if (!atomic_load(&gz->failed) && (gz->cur != NULL || acquire(gz) == 0))
		submit(gz, 1);
	pthread_mutex_lock(&gz->mu);
	for (;;) {
		if (ls_interrupted)
			ls_gzpool_fail_locked(gz, LS_ESIGNAL, "%s: interrupted", gz->path);
		if (gz->finished || atomic_load(&gz->failed))
			break;
		timed_wait(gz, &gz->free_cv);
	}
	pthread_mutex_unlock(&gz->mu);
	ls_gzpool_stop(gz);
	if (gz->fd >= 0) {
		/* NFS and quotas report write errors only at close. */
		if (close(gz->fd) != 0)
			fail(gz, LS_EIO, "%s: %s", gz->path, strerror(errno));
		gz->fd = -1;
	}
	ok = !atomic_load(&gz->failed);
	if (ok) {
		r->in_size = gz->in_size;
		r->out_size = gz->out_size;
		if (digest_hex(gz->in_md, r->in_sha256) != 0 ||
		    digest_hex(gz->out_md, r->out_sha256) != 0) {
			fail(gz, LS_EIO, "%s: sha256: EVP_DigestFinal_ex failed", gz->path);
			ok = 0;
		}
	}
	release(gz);
	return ok ? 0 : -1;
}

const char *ls_gzwrite_error(struct ls_gzwrite *gz)
{
	return atomic_load(&gz->failed) ? gz->errmsg : "no error";
}

const char *ls_gzwrite_class(struct ls_gzwrite *gz)
{
	return atomic_load(&gz->failed) ? gz->errclass : LS_EIO;
}

void ls_gzwrite_free(struct ls_gzwrite *gz)
{
	if (gz == NULL)
		return;
	ls_gzpool_stop(gz);
	/* Nothing to report from an abandoned file's close. */
	if (gz->fd >= 0)
		(void)close(gz->fd);
	release(gz);
	pthread_cond_destroy(&gz->work_cv);
	pthread_cond_destroy(&gz->done_cv);
	pthread_cond_destroy(&gz->free_cv);
	pthread_mutex_destroy(&gz->mu);
	free(gz->path);
	free(gz);
}

/* Allocates everything but the threads.  0, or -1 out of memory. */
static int setup(struct ls_gzwrite *gz, int level, int threads)
{
	gz->nworkers = threads;
	gz->nslots = 2 * threads + 2;
	gz->slots = calloc((size_t)gz->nslots, sizeof(*gz->slots));
	gz->workers = calloc((size_t)threads, sizeof(*gz->workers));
	gz->in_md = EVP_MD_CTX_new();
	gz->out_md = EVP_MD_CTX_new();
	if (gz->slots == NULL || gz->workers == NULL || gz->in_md == NULL || gz->out_md == NULL)
		return -1;
	if (!EVP_DigestInit_ex(gz->in_md, EVP_sha256(), NULL) ||
	    !EVP_DigestInit_ex(gz->out_md, EVP_sha256(), NULL))
		return -1;
	for (int i = 0; i < gz->nslots; i++) {
		struct slot *s = &gz->slots[i];

		s->in = malloc(DICT + BLOCK);
		s->out.data = malloc(OUT_CAP);
		if (s->in == NULL || s->out.data == NULL)
			return -1;
		s->out.cap = OUT_CAP;
	}
	for (int i = 0; i < threads; i++) {
		gz->workers[i].gz = gz;
		gz->workers[i].engine = gz->eng->open(level);
		if (gz->workers[i].engine == NULL)
			return -1;
	}
	return 0;
}

/* ISA-L picks its CPU-specific functions on first use, racily: a block
 * compressed here, before the threads exist, settles them.  0 or -1. */
static int warm_up(struct ls_gzwrite *gz)
{
	static const unsigned char probe[256];
	struct ls_buf *out = &gz->slots[0].out;
	const char *why;
	int rc;

	(void)ls_crc32(0, probe, sizeof(probe));
	rc = gz->eng->block(gz->workers[0].engine, probe, sizeof(probe), probe, sizeof(probe), 1,
			    out, &why);
	out->len = 0;
	return rc;
}

struct ls_gzwrite *ls_gzwrite_open(const char *path, const struct ls_deflate_engine *eng,
				   int level, int threads, char *err, size_t errlen)
{
	struct ls_gzwrite *gz = calloc(1, sizeof(*gz));
	pthread_condattr_t ca;
	int rc;

	if (gz == NULL || (gz->path = strdup(path)) == NULL) {
		free(gz);
		snprintf(err, errlen, "%s: %s", path, strerror(ENOMEM));
		return NULL;
	}
	gz->eng = eng;
	gz->fd = -1;
	/* gzip(1)'s convention for zlib: 2 = slowest, 4 = fastest. */
	gz->xfl = eng == &ls_deflate_zlib ? (level == 9 ? 2 : level == 1 ? 4 : 0) : 0;
	/* Waits time out on the monotonic clock: a clock step can't stall them. */
	rc = pthread_condattr_init(&ca);
	if (rc == 0) {
		if ((rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC)) == 0 &&
		    (rc = pthread_mutex_init(&gz->mu, NULL)) == 0 &&
		    (rc = pthread_cond_init(&gz->work_cv, NULL)) == 0 &&
		    (rc = pthread_cond_init(&gz->done_cv, NULL)) == 0)
			rc = pthread_cond_init(&gz->free_cv, &ca);
		(void)pthread_condattr_destroy(&ca);
	}
	if (rc != 0) {
		/* glibc's default mutexes and condvars own nothing to destroy. */
		snprintf(err, errlen, "%s: %s", path, strerror(rc));
		free(gz->path);
		free(gz);
		return NULL;
	}
	if (setup(gz, level, threads) != 0 || warm_up(gz) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(ENOMEM));
		ls_gzwrite_free(gz);
		return NULL;
	}
	gz->fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
	if (gz->fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		ls_gzwrite_free(gz);
		return NULL;
	}
	rc = ls_gzpool_start(gz);
	if (rc != 0) {
		snprintf(err, errlen, "%s: cannot start threads: %s", path, strerror(rc));
		ls_gzwrite_free(gz);
		/* The file is ours (O_EXCL) and empty: don't leave it behind. */
		(void)unlink(path);
		return NULL;
	}
	return gz;
}
