/* gzwrite.c: the block-parallel gzip writer (the pigz way, one member).
 *
 * Three stages overlap: the caller copies input into a ring of block slots
 * and hashes it; worker threads compress the slots; a writer thread writes
 * them in order and hashes the output.  The ring bounds memory: the caller
 * waits when every slot is in flight.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zlib.h>

#include "digest.h"
#include "gzwrite.h"
#include "sink.h"

#define BLOCK (128 * 1024)
#define DICT (32 * 1024)
#define OUT_CAP (BLOCK + BLOCK / 8 + 8192) /* covers a block's worst case */
#define WAIT_NS (100 * 1000 * 1000)        /* how often waits look at ls_interrupted */

enum slot_state { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_DONE };

struct slot {
	unsigned char *in; /* DICT bytes of history, then up to BLOCK of data */
	size_t dict_len, len;
	int last;
	enum slot_state state;
	uint32_t crc;
	struct ls_buf out;
};

struct worker {
	struct ls_gzwrite *gz;
	void *engine;
	pthread_t tid;
	int started;
};

struct ls_gzwrite {
	pthread_mutex_t mu;
	pthread_cond_t work_cv; /* workers: a slot is ready, or stop */
	pthread_cond_t done_cv; /* writer: the next slot in order is compressed, or stop */
	pthread_cond_t free_cv; /* caller: a slot was written, the end was written, or failure */
	struct slot *slots;
	int nslots;
	uint64_t filled;  /* slots handed to workers: the next one's sequence number */
	uint64_t taken;   /* the next sequence number a worker takes */
	uint64_t written; /* the next sequence number the writer writes */
	int stop, finished;
	atomic_int failed; /* set once, under mu, with errmsg and errclass */
	const char *errclass;
	char errmsg[512];

	const struct ls_deflate_engine *eng;
	struct worker *workers;
	int nworkers;
	pthread_t writer;
	int writer_started, joined;
	int fd;
	unsigned char xfl;
	char *path;

	/* caller thread only */
	struct slot *cur;
	EVP_MD_CTX *in_md;
	uint64_t in_size;

	/* writer thread only, read by the caller after joining it */
	EVP_MD_CTX *out_md;
	uint64_t out_size;
};

/* Records the first failure; later ones are consequences.  Caller holds mu. */
static void vfail_locked(struct ls_gzwrite *gz, const char *class, const char *fmt, va_list ap)
{
	if (atomic_load(&gz->failed))
		return;
	vsnprintf(gz->errmsg, sizeof(gz->errmsg), fmt, ap);
	gz->errclass = class;
	atomic_store(&gz->failed, 1);
	/* The caller may be waiting for a slot that will now never come free. */
	pthread_cond_broadcast(&gz->free_cv);
}

static void fail_locked(struct ls_gzwrite *gz, const char *class, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail_locked(gz, class, fmt, ap);
	va_end(ap);
}

static void fail(struct ls_gzwrite *gz, const char *class, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&gz->mu);
	va_start(ap, fmt);
	vfail_locked(gz, class, fmt, ap);
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

/* write(2) all of buf, through partial writes and EINTR.  0 or an errno. */
static int write_all(int fd, const unsigned char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (n == 0)
			return EIO; /* a write that makes no progress would loop */
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Writer thread: the file and the output digest.  0 or an errno. */
static int emit(struct ls_gzwrite *gz, const unsigned char *buf, size_t len)
{
	int err = write_all(gz->fd, buf, len);

	if (err != 0)
		return err;
	if (len > 0 && !EVP_DigestUpdate(gz->out_md, buf, len))
		return ENOMEM;
	gz->out_size += len;
	return 0;
}

static void put_le32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static void *writer_main(void *arg)
{
	struct ls_gzwrite *gz = arg;
	/* No name, mtime 0, OS 3 (Unix): the same input gives the same bytes. */
	unsigned char head[10] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, gz->xfl, 3 };
	uint32_t crc = 0, isize = 0;
	int err = emit(gz, head, sizeof(head));

	pthread_mutex_lock(&gz->mu);
	if (err != 0)
		fail_locked(gz, LS_EIO, "%s: %s", gz->path, strerror(err));
	while (!gz->stop) {
		struct slot *s = &gz->slots[gz->written % (uint64_t)gz->nslots];
		int skip, last;

		if (s->state != SLOT_DONE) {
			pthread_cond_wait(&gz->done_cv, &gz->mu);
			continue;
		}
		skip = atomic_load(&gz->failed);
		last = s->last;
		pthread_mutex_unlock(&gz->mu);
		if (!skip) {
			err = emit(gz, s->out.data, s->out.len);
			crc = (uint32_t)crc32_combine(crc, s->crc, (z_off_t)s->len);
			isize += (uint32_t)s->len;
			if (err == 0 && last) {
				unsigned char trailer[8];

				put_le32(trailer, crc);
				put_le32(trailer + 4, isize);
				err = emit(gz, trailer, sizeof(trailer));
			}
		}
		pthread_mutex_lock(&gz->mu);
		if (err != 0)
			fail_locked(gz, LS_EIO, "%s: %s", gz->path, strerror(err));
		s->state = SLOT_FREE;
		gz->written++;
		if (last)
			gz->finished = 1;
		pthread_cond_signal(&gz->free_cv);
		if (last)
			break;
	}
	pthread_mutex_unlock(&gz->mu);
	return NULL;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct ls_gzwrite *gz = w->gz;

	pthread_mutex_lock(&gz->mu);
	while (!gz->stop) {
		struct slot *s;
		uint64_t seq;
		const char *why = NULL;
		int rc = 0;

		if (gz->taken == gz->filled) {
			pthread_cond_wait(&gz->work_cv, &gz->mu);
			continue;
		}
		seq = gz->taken++;
		s = &gz->slots[seq % (uint64_t)gz->nslots];
		/* A failed writer drops blocks: don't spend CPU on them. */
		if (!atomic_load(&gz->failed)) {
			pthread_mutex_unlock(&gz->mu);
			s->out.len = 0;
			s->crc = ls_crc32(0, s->in + DICT, s->len);
			if (s->len == 0) {
				/* Only a last block is empty: the 2-byte static final block,
				 * not a Huffman header some engines would spend on nothing. */
				s->out.data[0] = 0x03;
				s->out.data[1] = 0x00;
				s->out.len = 2;
			} else {
				rc = gz->eng->block(w->engine, s->in + DICT - s->dict_len,
						    s->dict_len, s->in + DICT, s->len, s->last,
						    &s->out, &why);
			}
			pthread_mutex_lock(&gz->mu);
		}
		if (rc != 0)
			fail_locked(gz, LS_EIO, "%s: %s compression failed: %s", gz->path,
				    gz->eng->name, why);
		s->state = SLOT_DONE;
		if (seq == gz->written)
			pthread_cond_signal(&gz->done_cv);
	}
	pthread_mutex_unlock(&gz->mu);
	return NULL;
}

/* Caller: waits for the next slot in the ring and starts filling it. */
static int acquire(struct ls_gzwrite *gz)
{
	uint64_t seq = gz->filled;
	struct slot *s = &gz->slots[seq % (uint64_t)gz->nslots];

	pthread_mutex_lock(&gz->mu);
	for (;;) {
		if (ls_interrupted)
			fail_locked(gz, LS_ESIGNAL, "%s: interrupted", gz->path);
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

/* Stops and joins every thread; unwritten blocks are abandoned. */
static void stop_threads(struct ls_gzwrite *gz)
{
	if (gz->joined)
		return;
	pthread_mutex_lock(&gz->mu);
	gz->stop = 1;
	pthread_cond_broadcast(&gz->work_cv);
	pthread_cond_broadcast(&gz->done_cv);
	pthread_mutex_unlock(&gz->mu);
	for (int i = 0; gz->workers != NULL && i < gz->nworkers; i++)
		if (gz->workers[i].started)
			pthread_join(gz->workers[i].tid, NULL);
	if (gz->writer_started)
		pthread_join(gz->writer, NULL);
	gz->joined = 1;
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
			fail_locked(gz, LS_ESIGNAL, "%s: interrupted", gz->path);
		if (gz->finished || atomic_load(&gz->failed))
			break;
		timed_wait(gz, &gz->free_cv);
	}
	pthread_mutex_unlock(&gz->mu);
	stop_threads(gz);
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
	stop_threads(gz);
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

/* Starts the writer and the workers with every signal blocked, so signals
 * reach the main thread only.  0, or an errno when no worker could start. */
static int start_threads(struct ls_gzwrite *gz)
{
	sigset_t all, old;
	int err, started = 0;

	sigfillset(&all);
	err = pthread_sigmask(SIG_BLOCK, &all, &old);
	if (err != 0)
		return err;
	err = pthread_create(&gz->writer, NULL, writer_main, gz);
	if (err == 0) {
		gz->writer_started = 1;
		for (int i = 0; i < gz->nworkers; i++) {
			err = pthread_create(&gz->workers[i].tid, NULL, worker_main, &gz->workers[i]);
			if (err != 0)
				break;
			gz->workers[i].started = 1;
			started++;
		}
		/* Fewer workers only cost speed: the bytes don't depend on them. */
		if (started > 0)
			err = 0;
	}
	/* Restoring the caller's own mask can't fail with a valid how. */
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	return err;
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
	rc = start_threads(gz);
	if (rc != 0) {
		snprintf(err, errlen, "%s: cannot start threads: %s", path, strerror(rc));
		ls_gzwrite_free(gz);
		/* The file is ours (O_EXCL) and empty: don't leave it behind. */
		(void)unlink(path);
		return NULL;
	}
	return gz;
}
