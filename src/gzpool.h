/* gzpool.h: private to gzwrite.c and gzpool.c: the writer's shared state,
 * the block ring, and the compressing and writing threads that drain it.
 */
#ifndef LS_GZPOOL_H
#define LS_GZPOOL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "deflate.h"
#include "gzwrite.h"

#define BLOCK (128 * 1024)
#define DICT (32 * 1024)
#define OUT_CAP (BLOCK + BLOCK / 8 + 8192) /* covers a block's worst case */

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

/* Records the first failure and wakes the caller; later ones are
 * consequences.  Caller holds mu. */
void ls_gzpool_vfail_locked(struct ls_gzwrite *gz, const char *class, const char *fmt,
			    va_list ap);
void ls_gzpool_fail_locked(struct ls_gzwrite *gz, const char *class, const char *fmt, ...);
/* Starts the writer and the workers with every signal blocked, so signals
 * reach the main thread only.  0, or an errno when no worker could start. */
int ls_gzpool_start(struct ls_gzwrite *gz);
/* Stops and joins every thread; unwritten blocks are abandoned.  Idempotent. */
void ls_gzpool_stop(struct ls_gzwrite *gz);

#endif
