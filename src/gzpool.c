/* gzpool.c: the gzip writer's threads.  Workers raw-deflate the ring's
 * ready slots in any order; one writer thread appends them in sequence to
 * the file, between the gzip header and trailer, hashing what it writes.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zlib.h>

#include "digest.h"
#include "gzpool.h"
#include "sink.h"

void ls_gzpool_vfail_locked(struct ls_gzwrite *gz, const char *class, const char *fmt,
			    va_list ap)
{
	if (atomic_load(&gz->failed))
		return;
	vsnprintf(gz->errmsg, sizeof(gz->errmsg), fmt, ap);
	gz->errclass = class;
	atomic_store(&gz->failed, 1);
	/* The caller may be waiting for a slot that will now never come free. */
	pthread_cond_broadcast(&gz->free_cv);
}

void ls_gzpool_fail_locked(struct ls_gzwrite *gz, const char *class, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ls_gzpool_vfail_locked(gz, class, fmt, ap);
	va_end(ap);
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

/* Writer thread: the file, the tee sinks and the output digest.  0 or an
 * errno; -1 when a tee sink failed (already recorded with its message). */
static int emit(struct ls_gzwrite *gz, const unsigned char *buf, size_t len)
{
	int err = write_all(gz->fd, buf, len);
	struct ls_sink *failed;

	if (err != 0)
		return err;
	if (gz->ntee > 0 && ls_sinks_write(gz->tee, gz->ntee, buf, len, &failed) != 0) {
		pthread_mutex_lock(&gz->mu);
		ls_gzpool_fail_locked(gz, failed->ops->class(failed), "%s",
				      failed->ops->error(failed));
		pthread_mutex_unlock(&gz->mu);
		return -1;
	}
	if (len > 0 && !EVP_DigestUpdate(gz->out_md, buf, len))
		return ENOMEM;
	gz->out_size += len;
	if (gz->writeback)
		ls_writeback(gz->fd, &gz->wb_started, gz->out_size);
	return 0;
}

static void put_le32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

int ls_gzpool_header(struct ls_gzwrite *gz)
{
	/* No name, mtime 0, OS 3 (Unix): the same input gives the same bytes. */
	unsigned char head[10] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, gz->xfl, 3 };

	return emit(gz, head, sizeof(head));
}

int ls_gzpool_emit(struct ls_gzwrite *gz, struct slot *s)
{
	int err;

	/* The input digest is taken here, in order, off the reading thread. */
	if (s->len > 0 && !EVP_DigestUpdate(gz->in_md, s->in + gz->dict, s->len))
		return ENOMEM;
	err = emit(gz, s->out.data, s->out.len);
	if (err != 0)
		return err;
	gz->crc = (uint32_t)crc32_combine(gz->crc, s->crc, (z_off_t)s->len);
	gz->isize += (uint32_t)s->len;
	if (s->last) {
		unsigned char trailer[8];

		put_le32(trailer, gz->crc);
		put_le32(trailer + 4, gz->isize);
		err = emit(gz, trailer, sizeof(trailer));
	}
	return err;
}

int ls_gzpool_compress(struct ls_gzwrite *gz, void *e, struct slot *s, const char **why)
{
	s->out.len = 0;
	s->crc = ls_crc32(0, s->in + gz->dict, s->len);
	if (s->len > 0)
		return gz->eng->block(e, s->in + gz->dict - s->dict_len, s->dict_len,
				      s->in + gz->dict, s->len, s->last, &s->out, why);
	/* Only a last block is empty: the 2-byte static final block, not a
	 * Huffman header some engines would spend on nothing. */
	if (ls_buf_reserve(&s->out, 2) != 0) {
		*why = "out of memory";
		return -1;
	}
	s->out.data[0] = 0x03;
	s->out.data[1] = 0x00;
	s->out.len = 2;
	return 0;
}

static void *writer_main(void *arg)
{
	struct ls_gzwrite *gz = arg;
	int err;

	/* Named for profilers (perf --sort comm); a failure only loses the name. */
	(void)pthread_setname_np(pthread_self(), "gz-writer");
	err = ls_gzpool_header(gz);
	pthread_mutex_lock(&gz->mu);
	if (err != 0)
		ls_gzpool_fail_locked(gz, LS_EIO, "%s: %s", gz->path, strerror(err));
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
		if (!skip)
			err = ls_gzpool_emit(gz, s);
		pthread_mutex_lock(&gz->mu);
		if (err != 0)
			ls_gzpool_fail_locked(gz, LS_EIO, "%s: %s", gz->path, strerror(err));
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

	(void)pthread_setname_np(pthread_self(), "gz-worker");
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
			rc = ls_gzpool_compress(gz, w->engine, s, &why);
			pthread_mutex_lock(&gz->mu);
		}
		if (rc != 0)
			ls_gzpool_fail_locked(gz, LS_EIO, "%s: %s compression failed: %s",
					      gz->path, gz->eng->name, why);
		s->state = SLOT_DONE;
		if (seq == gz->written)
			pthread_cond_signal(&gz->done_cv);
	}
	pthread_mutex_unlock(&gz->mu);
	return NULL;
}

void ls_gzpool_stop(struct ls_gzwrite *gz)
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

int ls_gzpool_start(struct ls_gzwrite *gz)
{
	sigset_t all, old;
	int err, started = 0;

	gz->workers = calloc((size_t)gz->nworkers, sizeof(*gz->workers));
	if (gz->workers == NULL)
		return ENOMEM;
	for (int i = 0; i < gz->nworkers; i++) {
		gz->workers[i].gz = gz;
		gz->workers[i].engine = gz->eng->open(gz->level);
		if (gz->workers[i].engine == NULL)
			return ENOMEM;
	}
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
