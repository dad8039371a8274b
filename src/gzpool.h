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
#include "sink.h"

#define DICT (32 * 1024)

enum slot_state { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_DONE };

struct slot {
	unsigned char *in; /* gz->dict bytes of history, then up to gz->block of
			    * data; grown as data comes, up to in_cap */
	size_t in_cap;
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
	int level;
	size_t block, dict; /* the engine's block size; DICT or 0 (no history) */
	struct worker *workers;
	int nworkers;
	pthread_t writer;
	int started;	/* the threads were started (at the second block) */
	int writer_started, joined;
	int fd;
	struct ls_sink **tee; /* also given the file's bytes, by the writer thread */
	int ntee;
	unsigned char xfl;
	char *path;

	/* caller thread only */
	struct slot *cur;
	uint64_t in_size;

	/* the writer thread's, or the caller's when no thread was started (a
	 * layer of one block); read by the caller after joining the writer */
	EVP_MD_CTX *in_md, *out_md;
	uint64_t out_size;
	int writeback;        /* start the file's writeback as it grows */
	uint64_t wb_started;  /* bytes already handed to writeback */
	uint32_t crc, isize;
};

/* Records the first failure and wakes the caller; later ones are
 * consequences.  Caller holds mu. */
void ls_gzpool_vfail_locked(struct ls_gzwrite *gz, const char *class, const char *fmt,
			    va_list ap);
void ls_gzpool_fail_locked(struct ls_gzwrite *gz, const char *class, const char *fmt, ...);
/* Raw-deflates slot s with engine state e (CRC-32 included).  0, or -1
 * with *why set. */
int ls_gzpool_compress(struct ls_gzwrite *gz, void *e, struct slot *s, const char **why);
/* Writes the gzip header: no name, mtime 0.  0 or an errno. */
int ls_gzpool_header(struct ls_gzwrite *gz);
/* Writes compressed slot s to the file, hashing its input and output, and
 * the trailer after the last one.  0 or an errno. */
int ls_gzpool_emit(struct ls_gzwrite *gz, struct slot *s);
/* Starts the writer and the workers with every signal blocked, so signals
 * reach the main thread only.  0, or an errno when no worker could start. */
int ls_gzpool_start(struct ls_gzwrite *gz);
/* Stops and joins every thread; unwritten blocks are abandoned.  Idempotent. */
void ls_gzpool_stop(struct ls_gzwrite *gz);

#endif
