/* reader.h: the stream under an archive reader, shared by archive.c (the
 * Lua userdata) and reader.c (libarchive input, entry data, tees, errors).
 * Private to those two: the rest of the C knows only archive.h. */
#ifndef LS_READER_H
#define LS_READER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "paxscan.h"
#include "sink.h"

#define READ_BUF_SIZE (1 << 20)

struct archive;

struct reader {
	struct archive *a;
	struct archive *dec;		/* tar: the input, decompressed (raw format) */
	int dec_eof;			/* r->dec has no more data */
	int closed;
	int fd, own_fd;
	const char *name;		/* for I/O messages; kept alive by UV_SOURCE */
	const unsigned char *mem;	/* open_memory input */
	size_t mem_len, mem_pos;
	unsigned char *buf;		/* read(2) buffer */
	_Atomic uint64_t bytes_in;	/* also read by the progress ticker thread */

	struct reader *parent, *child;
	int tee_failed;

	int raw;			/* one entry: the data, decompressed */
	int64_t max_size;		/* cap on an entry's data, 0: none */
	int64_t max_ratio;		/* cap on decompressed / compressed, 0: none */
	struct ls_paxscan scan;		/* the input, watched for NULs in PAX paths */
	char *scratch;			/* for normalizing names */
	size_t scratch_cap;

	int in_entry, at_end, skipped;
	const char *path;		/* kept alive by UV_PATH */
	int64_t size;
	int size_set;
	int64_t taken;			/* bytes of the entry handed out */
	unsigned char *peek;		/* first bytes of the entry, kept for peek */
	size_t peek_cap, peek_len, peek_pos;
	const unsigned char *blk;	/* rest of the last libarchive data block */
	size_t blk_len;
	int64_t blk_off, pos;		/* blk_off > pos: a sparse hole comes first */
	int data_eof;

	const char *err_class;		/* set: err holds the real cause of a failure */
	int broken;			/* libarchive is in a fatal state */
	char err[512];

	int ntees;
	struct ls_sink *tees[];
};

/* Opens r's libarchive handle on its input: the parent's current entry if
 * r->parent is set (teed to r->tees), else r->mem, else r->fd; a tar reader
 * reads it through r->dec, which undoes the compression.  Format detection
 * happens here, so garbage fails here.  0, or -1 with r closed
 * and the failure in r; a nested reader that fails still feeds the whole
 * entry to its tees, if it can. */
int ls_reader_start(struct reader *r, int raw);

/* The entry's next bytes after the peek buffer, not consumed yet: 1, 0 at the
 * end, -1 on failure (recorded in r). */
int ls_reader_view(struct reader *r, const void **p, size_t *n);
/* Consumes k of the bytes ls_reader_view showed. */
void ls_reader_consume(struct reader *r, size_t k);
/* Hands out the entry's next chunk, peeked bytes first; valid until the next
 * call.  1, 0 at the end, -1 on failure (recorded in r). */
int ls_reader_next_chunk(struct reader *r, const void **p, size_t *n);

/* A libarchive call failed with rc: keep the cause a callback recorded, else
 * "<prefix>: <libarchive's message>". */
void ls_reader_archive_err(struct reader *r, int rc, const char *prefix);
/* A sink's class string as one of ours, so the pointer stays valid. */
const char *ls_reader_known_class(const char *class);

/* Idempotent; drain: a nested reader first feeds the rest of its input to
 * its tees.  0, or -1 with the failure in r. */
int ls_reader_close(struct reader *r, int drain);

#endif
