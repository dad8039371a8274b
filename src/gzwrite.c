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

#define SMALL (16 * 1024) /* a slot's first buffer */
/* The ring holds at least this much input (and two slots per thread, plus
 * two).  With 128 KiB blocks (zlib's), six slots kept the threads waking
 * each other every block: 16 slots cut isal -j 2's system time from ~2.0
 * to ~1.3 s on 1 GB when isal had 128 KiB blocks too, and its wall time by
 * ~12%; 64 slots made zlib -j 1 ~8% slower (its input had left the cache
 * by the time it was compressed).  1 MiB blocks (libdeflate's, isal's)
 * keep 2 * threads + 2 slots. */
#define RING_BYTES (2 * 1024 * 1024)

static void fail(struct ls_gzwrite *gz, const char *class, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&gz->mu);
	va_start(ap, fmt);
	ls_gzpool_vfail_locked(gz, class, fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&gz->mu);
}

/* Kept from one writer to the next: an engine state, for the layers of a
 * single block the caller compresses itself, and one slot's buffers, so a
 * run of many small layers sets up neither for each. */
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static const struct ls_deflate_engine *cache_eng;
static int cache_level;
static void *cache_state;
static struct slot cache_slot;

/* Gives empty slot s the kept buffers, if any. */
static void slot_take(struct slot *s)
{
	pthread_mutex_lock(&cache_mu);
	s->in = cache_slot.in;
	s->in_cap = cache_slot.in_cap;
	s->out = cache_slot.out;
	memset(&cache_slot, 0, sizeof(cache_slot));
	pthread_mutex_unlock(&cache_mu);
}

/* Keeps s's buffers if none are kept, else frees them. */
static void slot_put(struct slot *s)
{
	pthread_mutex_lock(&cache_mu);
	if (cache_slot.in == NULL && s->in != NULL) {
		cache_slot.in = s->in;
		cache_slot.in_cap = s->in_cap;
		cache_slot.out = s->out;
		s->in = NULL;
		s->out.data = NULL;
	}
	pthread_mutex_unlock(&cache_mu);
	free(s->in);
	free(s->out.data);
}

static void *engine_take(const struct ls_deflate_engine *eng, int level)
{
	void *e = NULL;

	pthread_mutex_lock(&cache_mu);
	if (cache_state != NULL && cache_eng == eng && cache_level == level) {
		e = cache_state;
		cache_state = NULL;
	}
	pthread_mutex_unlock(&cache_mu);
	return e != NULL ? e : eng->open(level);
}

static void engine_put(const struct ls_deflate_engine *eng, int level, void *e)
{
	const struct ls_deflate_engine *old_eng;
	void *old;

	pthread_mutex_lock(&cache_mu);
	old_eng = cache_eng;
	old = cache_state;
	cache_eng = eng;
	cache_level = level;
	cache_state = e;
	pthread_mutex_unlock(&cache_mu);
	if (old != NULL)
		old_eng->close(old);
}

/* Caller: makes room for need bytes of data (and the history) in s.  A
 * small layer touches little memory: a slot's buffer starts SMALL and grows
 * to the block size only when data comes.  0, or -1 out of memory. */
static int grow(struct ls_gzwrite *gz, struct slot *s, size_t need)
{
	size_t cap = s->in_cap > gz->dict ? s->in_cap - gz->dict : 0;
	unsigned char *p;

	if (cap >= need)
		return 0;
	while (cap < need)
		cap = cap == 0 ? SMALL : cap * 2 > gz->block ? gz->block : cap * 2;
	p = realloc(s->in, gz->dict + cap);
	if (p == NULL) {
		fail(gz, LS_EIO, "%s: %s", gz->path, strerror(ENOMEM));
		return -1;
	}
	s->in = p;
	s->in_cap = gz->dict + cap;
	return 0;
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
		ls_cond_tick(&gz->free_cv, &gz->mu);
	}
	if (atomic_load(&gz->failed)) {
		pthread_mutex_unlock(&gz->mu);
		return -1;
	}
	s->state = SLOT_FILLING;
	pthread_mutex_unlock(&gz->mu);
	if (s->in == NULL)
		slot_take(s);
	if (s->in == NULL && grow(gz, s, 1) != 0)
		return -1;
	s->len = 0;
	s->last = 0;
	s->dict_len = 0;
	if (seq > 0 && gz->dict > 0) {
		/* The previous slot can't be refilled before this one is handed out. */
		struct slot *prev = &gz->slots[(seq - 1) % (uint64_t)gz->nslots];

		memcpy(s->in, prev->in + gz->block, gz->dict);
		s->dict_len = gz->dict;
	}
	gz->cur = s;
	return 0;
}

/* Caller: hands the slot being filled to the workers, starting them with
 * the first block: a layer of one block never starts a thread. */
static int submit(struct ls_gzwrite *gz, int last)
{
	struct slot *s = gz->cur;

	if (!gz->started) {
		int err;

		gz->started = 1;
		err = ls_gzpool_start(gz);
		if (err != 0) {
			fail(gz, LS_EIO, "%s: cannot start threads: %s", gz->path, strerror(err));
			return -1;
		}
	}
	pthread_mutex_lock(&gz->mu);
	s->last = last;
	s->state = SLOT_READY;
	gz->filled++;
	pthread_cond_signal(&gz->work_cv);
	pthread_mutex_unlock(&gz->mu);
	gz->cur = NULL;
	return 0;
}

void ls_gzwrite_tee(struct ls_gzwrite *gz, struct ls_sink **sinks, int n)
{
	pthread_mutex_lock(&gz->mu);
	gz->tee = sinks;
	gz->ntee = n;
	pthread_mutex_unlock(&gz->mu);
}

void ls_gzwrite_writeback(struct ls_gzwrite *gz, int on)
{
	gz->writeback = on;
}

int ls_gzwrite_write(struct ls_gzwrite *gz, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	if (atomic_load(&gz->failed))
		return -1;
	while (len > 0) {
		struct slot *s;
		size_t n;

		/* A full block is handed out only when more input comes, so a
		 * layer of exactly one block is still compressed without threads. */
		if (gz->cur != NULL && gz->cur->len == gz->block && submit(gz, 0) != 0)
			return -1;
		if (gz->cur == NULL && acquire(gz) != 0)
			return -1;
		s = gz->cur;
		n = gz->block - s->len < len ? gz->block - s->len : len;
		if (grow(gz, s, s->len + n) != 0)
			return -1;
		memcpy(s->in + gz->dict + s->len, p, n);
		s->len += n;
		gz->in_size += n;
		p += n;
		len -= n;
	}
	return 0;
}

/* Frees the blocks and engines: all that is big.  Threads must be joined. */
static void release(struct ls_gzwrite *gz)
{
	if (gz->slots != NULL) {
		for (int i = 0; i < gz->nslots; i++)
			slot_put(&gz->slots[i]);
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

/* A layer of one block, or none, before any thread started: the caller
 * compresses and writes it itself, the same bytes the threads would: the
 * last block holds the last byte, or is empty when the input ends with a
 * full block. */
static void finish_inline(struct ls_gzwrite *gz)
{
	struct slot none = { 0 }, *slots[2];
	const char *why = "out of memory";
	void *e = NULL;
	int n = 0, err, rc = 0;

	if (gz->cur != NULL && gz->cur->len > 0)
		slots[n++] = gz->cur;
	if (n == 0 || gz->cur->len == gz->block)
		slots[n++] = &none;
	for (int i = 0; i < n; i++)
		slots[i]->last = i == n - 1;
	if (slots[0]->len > 0 && (e = engine_take(gz->eng, gz->level)) == NULL) {
		fail(gz, LS_EIO, "%s: %s compression failed: %s", gz->path, gz->eng->name, why);
		return;
	}
	err = ls_gzpool_header(gz);
	for (int i = 0; i < n && err == 0 && rc == 0; i++) {
		rc = ls_gzpool_compress(gz, e, slots[i], &why);
		if (rc == 0)
			err = ls_gzpool_emit(gz, slots[i]);
	}
	if (rc != 0)
		fail(gz, LS_EIO, "%s: %s compression failed: %s", gz->path, gz->eng->name, why);
	else if (err != 0)
		fail(gz, LS_EIO, "%s: %s", gz->path, strerror(err));
	else
		gz->finished = 1;
	if (e != NULL)
		engine_put(gz->eng, gz->level, e);
	free(none.out.data);
}

int ls_gzwrite_finish(struct ls_gzwrite *gz, struct ls_gzwrite_result *r)
{
	int ok;

	if (!atomic_load(&gz->failed) && !gz->started) {
		finish_inline(gz);
	} else if (!atomic_load(&gz->failed)) {
		/* A full block is not the last: an empty one follows it. */
		if (gz->cur != NULL && gz->cur->len == gz->block && submit(gz, 0) == 0)
			(void)acquire(gz);
		if (gz->cur != NULL)
			(void)submit(gz, 1);
	}
	pthread_mutex_lock(&gz->mu);
	for (;;) {
		if (ls_interrupted)
			ls_gzpool_fail_locked(gz, LS_ESIGNAL, "%s: interrupted", gz->path);
		if (gz->finished || atomic_load(&gz->failed))
			break;
		ls_cond_tick(&gz->free_cv, &gz->mu);
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

/* Allocates the ring's slot table and the digests; the slots' buffers come
 * when first used, the workers when the second block does.  0, or -1 out
 * of memory. */
static int setup(struct ls_gzwrite *gz, int level, int threads)
{
	gz->level = level;
	gz->block = gz->eng->block_size;
	gz->dict = gz->eng->history ? DICT : 0;
	gz->nworkers = threads;
	gz->nslots = 2 * threads + 2;
	if ((size_t)gz->nslots * gz->block < RING_BYTES)
		gz->nslots = (int)(RING_BYTES / gz->block);
	gz->slots = calloc((size_t)gz->nslots, sizeof(*gz->slots));
	gz->in_md = EVP_MD_CTX_new();
	gz->out_md = EVP_MD_CTX_new();
	if (gz->slots == NULL || gz->in_md == NULL || gz->out_md == NULL)
		return -1;
	if (!EVP_DigestInit_ex(gz->in_md, EVP_sha256(), NULL) ||
	    !EVP_DigestInit_ex(gz->out_md, EVP_sha256(), NULL))
		return -1;
	return 0;
}

struct ls_gzwrite *ls_gzwrite_open(const char *path, const struct ls_deflate_engine *eng,
				   int level, int threads, char *err, size_t errlen)
{
	struct ls_gzwrite *gz = calloc(1, sizeof(*gz));
	int rc;

	if (gz == NULL || (gz->path = strdup(path)) == NULL) {
		free(gz);
		snprintf(err, errlen, "%s: %s", path, strerror(ENOMEM));
		return NULL;
	}
	gz->eng = eng;
	gz->fd = -1;
	/* gzip(1)'s convention for zlib, libdeflate's own for libdeflate:
	 * 2 = slowest, 4 = fastest. */
	if (eng == &ls_deflate_zlib)
		gz->xfl = level == 9 ? 2 : level == 1 ? 4 : 0;
	else if (eng == &ls_deflate_libdeflate)
		gz->xfl = level >= 8 ? 2 : level < 2 ? 4 : 0;
	if ((rc = pthread_mutex_init(&gz->mu, NULL)) == 0 &&
	    (rc = pthread_cond_init(&gz->work_cv, NULL)) == 0 &&
	    (rc = pthread_cond_init(&gz->done_cv, NULL)) == 0)
		rc = ls_cond_init(&gz->free_cv); /* its waits time out: see ls_cond_tick */
	if (rc != 0) {
		/* glibc's default mutexes and condvars own nothing to destroy. */
		snprintf(err, errlen, "%s: %s", path, strerror(rc));
		free(gz->path);
		free(gz);
		return NULL;
	}
	if (setup(gz, level, threads) != 0) {
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
	return gz;
}
