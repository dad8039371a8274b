/* reader.c: the stream under an archive reader: libarchive's input (a file,
 * memory, or the parent's current entry teed to sinks), the entry's data
 * as chunks, and failures kept with their class until Lua sees them. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* <archive.h> may be src/archive.h (under -Isrc), which passes on to libarchive's. */
#include <archive.h>

#include "reader.h"
#include "sink.h"

static const unsigned char zeros[65536];

/* Decompressed bytes any blob may have beyond --max-ratio times its size. */
#define RATIO_SLACK ((int64_t)64 << 10)

static void set_err(struct reader *r, const char *class, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->err, sizeof(r->err), fmt, ap);
	va_end(ap);
	r->err_class = class;
}

const char *ls_reader_known_class(const char *class)
{
	if (class != NULL && strcmp(class, LS_EIO) == 0)
		return LS_EIO;
	if (class != NULL && strcmp(class, LS_ESIGNAL) == 0)
		return LS_ESIGNAL;
#ifdef LS_EUSAGE
	if (class != NULL && strcmp(class, LS_EUSAGE) == 0)
		return LS_EUSAGE;
#endif
	if (class != NULL && strcmp(class, LS_EENTRY) == 0)
		return LS_EENTRY;
	return LS_EARCHIVE;
}

void ls_reader_archive_err(struct reader *r, int rc, const char *prefix)
{
	const char *msg = r->a ? archive_error_string(r->a) : NULL;

	if (r->err_class == NULL)
		set_err(r, LS_EARCHIVE, "%s: %s", prefix,
			msg ? msg : "unknown archive error");
	if (rc == ARCHIVE_FATAL)
		r->broken = 1;
}

/* Moves another reader's or a sink's failure into r (for a callback's caller). */
static void take_err(struct reader *r, struct reader *from)
{
	set_err(r, from->err_class ? from->err_class : LS_EARCHIVE, "%s",
		from->err);
	if (!from->broken)
		from->err_class = NULL;
}

/* A read callback fails: libarchive only passes on "read error", so r keeps the cause. */
static la_ssize_t cb_fail(struct archive *a, struct reader *r, const char *class,
			  const char *fmt, ...)
{
	va_list ap;

	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(r->err, sizeof(r->err), fmt, ap);
		va_end(ap);
		r->err_class = class;
	}
	archive_set_error(a, -1, "%s", r->err);
	return -1;
}

static la_ssize_t fd_read(struct archive *a, void *ud, const void **buf)
{
	struct reader *r = ud;
	ssize_t n;

	do {
		if (ls_interrupted)
			return cb_fail(a, r, LS_ESIGNAL, "interrupted");
		n = read(r->fd, r->buf, READ_BUF_SIZE);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return cb_fail(a, r, LS_EIO, "%s: %s", r->name, strerror(errno));
	r->bytes_in += n;
	*buf = r->buf;
	return n;
}

static la_ssize_t mem_read(struct archive *a, void *ud, const void **buf)
{
	struct reader *r = ud;
	size_t n = r->mem_len - r->mem_pos;

	if (ls_interrupted)
		return cb_fail(a, r, LS_ESIGNAL, "interrupted");
	if (n > READ_BUF_SIZE)
		n = READ_BUF_SIZE;
	*buf = r->mem + r->mem_pos;
	r->mem_pos += n;
	r->bytes_in += n;
	return (la_ssize_t)n;
}

/* The entry's name for messages: a raw reader's one entry is its input. */
static const char *entry_name(struct reader *r)
{
	return r->raw ? r->name : r->path;
}

/* Bytes of a raw nested reader's input after its compressed stream ended:
 * those it read but the decoder did not use, and those never read. */
static int64_t trailing_bytes(struct reader *r)
{
	struct reader *p = r->parent;
	int64_t unread = p->size_set ? p->size - p->taken : 0;

	return (int64_t)r->bytes_in - (int64_t)archive_filter_bytes(r->a, -1) + unread;
}

int ls_reader_view(struct reader *r, const void **p, size_t *n)
{
	const void *b;
	size_t len;
	la_int64_t off;
	int rc;

	for (;;) {
		if (r->blk_off > r->pos && r->parent == NULL) {
			/* A hole in an entry of the archive itself is data it does not
			 * hold, marked sparse or not: never expanded. */
			set_err(r, LS_EARCHIVE, "%s: sparse data (a hole of %lld bytes the archive does not hold)",
				r->path, (long long)(r->blk_off - r->pos));
			return -1;
		}
		if (r->blk_off > r->pos) {
			uint64_t hole = (uint64_t)(r->blk_off - r->pos);

			*p = zeros;
			*n = hole < sizeof(zeros) ? (size_t)hole : sizeof(zeros);
			return 1;
		}
		if (r->blk_len > 0) {
			*p = r->blk;
			*n = r->blk_len;
			return 1;
		}
		if (r->data_eof)
			return 0;
		if (r->broken)
			return -1;
		off = r->pos;
		rc = archive_read_data_block(r->a, &b, &len, &off);
		if (rc == ARCHIVE_EOF && r->err_class != NULL)
			rc = ARCHIVE_FATAL; /* a failed read is never a clean end */
		if (rc == ARCHIVE_EOF && r->raw && r->parent != NULL &&
		    archive_filter_count(r->a) > 1 && trailing_bytes(r) > 0) {
			/* One compression layer and nothing after it, for every kind. */
			set_err(r, LS_EARCHIVE, "%s: trailing garbage after the %s data (%lld bytes)",
				entry_name(r), archive_filter_name(r->a, 0),
				(long long)trailing_bytes(r));
			return -1;
		}
		if (rc == ARCHIVE_EOF) {
			r->data_eof = 1;
			if (off > r->pos) /* the entry ends in a hole */
				r->blk_off = off;
			continue;
		}
		if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
			ls_reader_archive_err(r, rc, r->path);
			return -1;
		}
		if (off < r->pos) {
			set_err(r, LS_EARCHIVE, "%s: data blocks out of order", r->path);
			return -1;
		}
		r->blk = b;
		r->blk_len = len;
		r->blk_off = off;
	}
}

void ls_reader_consume(struct reader *r, size_t k)
{
	if (r->blk_off == r->pos) {
		r->blk += k;
		r->blk_len -= k;
		r->blk_off += k;
	}
	r->pos += k;
}

int ls_reader_next_chunk(struct reader *r, const void **p, size_t *n)
{
	int rc;

	if (r->peek_pos < r->peek_len) {
		*p = r->peek + r->peek_pos;
		*n = r->peek_len - r->peek_pos;
		r->peek_pos = r->peek_len;
		r->taken += *n;
		return 1;
	}
	rc = ls_reader_view(r, p, n);
	if (rc == 1) {
		ls_reader_consume(r, *n);
		r->taken += *n;
		if (r->max_size > 0 && r->taken > r->max_size) {
			set_err(r, LS_EARCHIVE, "%s: more than %lld bytes of data, the "
				"--max-layer-size limit", entry_name(r), (long long)r->max_size);
			return -1;
		}
		/* A blob being decompressed: its expansion so far, with a little
		 * room for tiny blobs. */
		if (r->max_ratio > 0 && r->raw && r->parent != NULL &&
		    r->taken > RATIO_SLACK && (r->taken - RATIO_SLACK) / r->max_ratio >
						   (int64_t)r->bytes_in) {
			set_err(r, LS_EARCHIVE, "%s: expands more than %lld times its "
				"compressed size, the --max-ratio limit", entry_name(r),
				(long long)r->max_ratio);
			return -1;
		}
	}
	return rc;
}

static int write_tees(struct reader *r, const void *p, size_t n)
{
	struct ls_sink *failed;

	if (ls_sinks_write(r->tees, r->ntees, p, n, &failed) == 0)
		return 0;
	r->tee_failed = 1;
	set_err(r, ls_reader_known_class(failed->ops->class(failed)), "%s",
		failed->ops->error(failed));
	return -1;
}

/* Input of a nested libarchive: the parent's entry data, teed on its way. */
static la_ssize_t nested_read(struct archive *a, void *ud, const void **buf)
{
	struct reader *r = ud;
	const void *p;
	size_t n;
	int rc;

	if (ls_interrupted)
		return cb_fail(a, r, LS_ESIGNAL, "interrupted");
	if (r->parent == NULL)
		return cb_fail(a, r, LS_EIO, "the outer reader was closed");
	rc = ls_reader_next_chunk(r->parent, &p, &n);
	if (rc == 0)
		return 0;
	if (rc < 0) {
		take_err(r, r->parent);
		return cb_fail(a, r, NULL, NULL);
	}
	if (write_tees(r, p, n) != 0)
		return cb_fail(a, r, NULL, NULL);
	r->bytes_in += n;
	*buf = p;
	return (la_ssize_t)n;
}

/* Feeds what the nested libarchive did not read through the tees. */
static int drain_parent(struct reader *r)
{
	const void *p;
	size_t n;
	int rc;

	while ((rc = ls_reader_next_chunk(r->parent, &p, &n)) > 0) {
		if (ls_interrupted) {
			set_err(r, LS_ESIGNAL, "interrupted");
			return -1;
		}
		if (write_tees(r, p, n) != 0)
			return -1;
	}
	if (rc < 0) {
		take_err(r, r->parent);
		return -1;
	}
	return 0;
}

int ls_reader_close(struct reader *r, int drain)
{
	int rc = 0;

	if (r->closed)
		return 0;
	r->closed = 1;
	if (r->child != NULL)
		ls_reader_close(r->child, 0);
	if (r->a != NULL)
		archive_read_free(r->a);
	r->a = NULL;
	if (r->dec != NULL)
		archive_read_free(r->dec);
	r->dec = NULL;
	if (r->parent != NULL) {
		if (drain && r->tee_failed)
			rc = -1; /* the tees cannot see the whole entry any more */
		else if (drain)
			rc = drain_parent(r);
		r->parent->child = NULL;
		r->parent = NULL;
	}
	if (r->own_fd && r->fd >= 0)
		(void)close(r->fd); /* only read from: nothing can be lost */
	r->fd = -1;
	free(r->buf);
	r->buf = NULL;
	free(r->peek);
	r->peek = NULL;
	free(r->scratch);
	r->scratch = NULL;
	ls_paxscan_free(&r->scan);
	return rc;
}

/* The compressions image archives use, each built into libarchive; not
 * filter_all, which would run external programs on hostile input. */
static int enable_filters(struct archive *a)
{
	int (*const filters[])(struct archive *) = {
		archive_read_support_filter_gzip, archive_read_support_filter_zstd,
		archive_read_support_filter_xz, archive_read_support_filter_bzip2,
		archive_read_support_filter_lzma, archive_read_support_filter_lz4,
	};

	for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++)
		if (filters[i](a) != ARCHIVE_OK)
			return ARCHIVE_FATAL;
	return ARCHIVE_OK;
}

/* A tar reader reads through two libarchive handles: r->dec undoes any
 * compression (the filters and the raw format, on the file, memory or parent
 * callback), and r->a reads the tar with no filters from r->dec's data blocks,
 * handed on without a copy.  So the PAX watch sees the tar itself, whatever
 * compression is around it. */
static la_ssize_t dec_read(struct archive *a, void *ud, const void **buf)
{
	struct reader *r = ud;
	la_int64_t off;
	size_t len = 0;
	int rc = ARCHIVE_OK;

	while (!r->dec_eof && len == 0) {
		rc = archive_read_data_block(r->dec, buf, &len, &off);
		if (rc == ARCHIVE_EOF)
			r->dec_eof = 1;
		else if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN)
			break;
	}
	if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN && rc != ARCHIVE_EOF) {
		const char *msg = archive_error_string(r->dec);

		if (r->err_class != NULL) /* the input's own failure, kept by its callback */
			return cb_fail(a, r, NULL, NULL);
		return cb_fail(a, r, LS_EARCHIVE, "%s: %s", r->in_entry ? r->path : r->name,
			       msg ? msg : "unknown archive error");
	}
	if (r->dec_eof)
		return 0;
	ls_paxscan_feed(&r->scan, *buf, len);
	return (la_ssize_t)len;
}

/* A new libarchive handle in *h: the filters, "empty", and raw or tar. */
static int new_handle(struct reader *r, struct archive **h, int filters, int raw)
{
	int rc;

	*h = archive_read_new();
	if (*h == NULL) {
		set_err(r, LS_EIO, "%s", strerror(ENOMEM));
		return ARCHIVE_FATAL;
	}
	rc = filters ? enable_filters(*h) : ARCHIVE_OK;
	if (rc == ARCHIVE_OK)
		rc = archive_read_support_format_empty(*h);
	if (rc == ARCHIVE_OK)
		rc = raw ? archive_read_support_format_raw(*h)
			 : archive_read_support_format_tar(*h);
	return rc;
}

/* ls_reader_start failed on handle h: keep the cause, close r. */
static int start_failed(struct reader *r, struct archive *h)
{
	const char *msg = h != NULL ? archive_error_string(h) : NULL;

	if (r->err_class == NULL)
		set_err(r, LS_EARCHIVE, "%s: %s", r->name, msg ? msg : "unknown archive error");
	r->broken = 1;
	ls_reader_close(r, 1);
	return -1;
}

int ls_reader_start(struct reader *r, int raw)
{
	archive_read_callback *cb = r->parent != NULL ? nested_read
				    : r->mem != NULL ? mem_read : fd_read;
	struct archive **filtered = raw ? &r->a : &r->dec;
	struct archive_entry *e;
	int rc;

	rc = new_handle(r, filtered, 1, 1);
	if (rc == ARCHIVE_OK)
		rc = archive_read_open(*filtered, r, NULL, cb, NULL);
	if (rc == ARCHIVE_OK && !raw) {
		rc = archive_read_next_header(r->dec, &e);
		if (rc == ARCHIVE_EOF) /* an empty input: "empty" took it */
			r->dec_eof = 1;
		if (rc == ARCHIVE_EOF || rc == ARCHIVE_WARN)
			rc = ARCHIVE_OK;
	}
	if (rc != ARCHIVE_OK || r->err_class != NULL)
		return start_failed(r, *filtered);
	r->raw = raw;
	/* A blob inside an archive: one compression layer at most, never
	 * gzip inside zstd and the like (the filters besides "none"). */
	if (r->parent != NULL && archive_filter_count(*filtered) > 2) {
		set_err(r, LS_EARCHIVE, "%s: nested compression (%s inside %s)", r->name,
			archive_filter_name(*filtered, 0),
			archive_filter_name(*filtered, archive_filter_count(*filtered) - 2));
		ls_reader_close(r, 1);
		return -1;
	}
	if (!raw) {
		rc = new_handle(r, &r->a, 0, 0);
		if (rc == ARCHIVE_OK)
			rc = archive_read_open(r->a, r, NULL, dec_read, NULL);
		if (rc != ARCHIVE_OK || r->err_class != NULL)
			return start_failed(r, r->a);
	}
	return 0;
}
