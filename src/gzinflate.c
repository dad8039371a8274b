/* gzinflate.c: the multi-member gzip decoder behind gzip.inflater(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef LS_HAVE_ISAL
#include <isa-l/igzip_lib.h>

#include "deflate.h"
#else
#include <zlib.h>
#endif

#include "gzinflate.h"

#define OUT_SIZE (256 * 1024)
#define FEED_MAX ((size_t)1 << 30)

enum phase {
	BETWEEN, /* before the first member, or after one ended */
	MEMBER,  /* inside a member */
};

#ifdef LS_HAVE_ISAL
/* Where the header parser is: RFC 1952 fields in order. */
enum hfield { H_FIXED, H_XLEN, H_EXTRA, H_NAME, H_COMMENT, H_HCRC, H_DONE };

struct gzheader {
	enum hfield field;
	int flags;
	unsigned char buf[10];
	size_t got, need;
	uint32_t crc; /* of the header so far, for FHCRC */
};
#endif

struct ls_gzinflate {
	struct ls_sink **sinks;
	int nsinks;
	int failed;
	struct ls_sink *failed_sink; /* set when a downstream sink failed */
	const char *errclass;
	char errmsg[256];
	enum phase phase;
	int magic; /* bytes of the current member's 1f 8b checked so far */
	uint64_t members, in_size, out_size, padding;
	uint64_t max_out; /* 0: no limit */
	unsigned char head[LS_GZINFLATE_HEAD]; /* the first inflated bytes */
	size_t head_len;
	unsigned char *out;
#ifdef LS_HAVE_ISAL
	struct gzheader h;
	struct inflate_state st;
#else
	z_stream zs;
#endif
};

static int bad(struct ls_gzinflate *z, const char *class, const char *why)
{
	snprintf(z->errmsg, sizeof(z->errmsg), "%s%s",
		 strcmp(class, LS_EARCHIVE) == 0 ? "invalid gzip data: " : "gzip: ", why);
	z->errclass = class;
	z->failed = 1;
	return -1;
}

static int emit(struct ls_gzinflate *z, size_t n)
{
	if (n == 0)
		return 0;
	/* Before the bytes go anywhere: a small blob can inflate a thousandfold. */
	if (z->max_out > 0 && n > z->max_out - z->out_size) {
		snprintf(z->errmsg, sizeof(z->errmsg),
			 "more than %llu bytes of data, the --max-layer-size limit",
			 (unsigned long long)z->max_out);
		z->errclass = LS_EARCHIVE;
		z->failed = 1;
		return -1;
	}
	if (z->head_len < sizeof(z->head)) {
		size_t k = sizeof(z->head) - z->head_len < n ? sizeof(z->head) - z->head_len : n;

		memcpy(z->head + z->head_len, z->out, k);
		z->head_len += k;
	}
	if (ls_sinks_write(z->sinks, z->nsinks, z->out, n, &z->failed_sink) != 0) {
		z->failed = 1;
		return -1;
	}
	z->out_size += n;
	return 0;
}

#ifdef LS_HAVE_ISAL
static const char *isal_why(int ret)
{
	switch (ret) {
	case ISAL_INCORRECT_CHECKSUM:
		return "crc or length check failed";
	default:
		return "invalid deflate data";
	}
}

/* The next header field present after state from, in RFC 1952 order. */
static enum hfield next_field(int flags, enum hfield from)
{
	static const int need[] = { [H_XLEN] = 4, [H_NAME] = 8, [H_COMMENT] = 16, [H_HCRC] = 2 };

	for (int f = from + 1; f < H_DONE; f++)
		if (f != H_EXTRA && (flags & need[f]))
			return (enum hfield)f;
	return H_DONE;
}

/* Parses the member header ourselves: ISA-L's own parser loses the flags
 * and header CRC when a header arrives split over several writes.  Bytes
 * consumed, or -1. */
static long header(struct ls_gzinflate *z, const unsigned char *in, size_t len)
{
	struct gzheader *h = &z->h;
	size_t i = 0;

	while (i < len && h->field != H_DONE) {
		unsigned char c = in[i++];

		if (h->field != H_HCRC)
			h->crc = ls_crc32(h->crc, &c, 1);
		switch (h->field) {
		case H_FIXED:
			h->buf[h->got++] = c;
			if (h->got < 10)
				break;
			if (h->buf[2] != 8)
				return bad(z, LS_EARCHIVE, "unknown compression method");
			if (h->buf[3] & 0xe0)
				return bad(z, LS_EARCHIVE, "unknown header flags set");
			h->flags = h->buf[3];
			h->got = 0;
			h->field = next_field(h->flags, H_FIXED);
			break;
		case H_XLEN:
			h->buf[h->got++] = c;
			if (h->got < 2)
				break;
			h->need = (size_t)h->buf[0] | (size_t)h->buf[1] << 8;
			h->got = 0;
			h->field = h->need > 0 ? H_EXTRA : next_field(h->flags, H_EXTRA);
			break;
		case H_EXTRA:
			if (--h->need == 0)
				h->field = next_field(h->flags, H_EXTRA);
			break;
		case H_NAME:
		case H_COMMENT:
			if (c == 0)
				h->field = next_field(h->flags, h->field);
			break;
		case H_HCRC:
			h->buf[h->got++] = c;
			if (h->got < 2)
				break;
			if (((unsigned)h->buf[0] | (unsigned)h->buf[1] << 8) != (h->crc & 0xffff))
				return bad(z, LS_EARCHIVE, "header crc mismatch");
			h->field = H_DONE;
			break;
		case H_DONE:
			break;
		}
	}
	return (long)i;
}

static void start_member(struct ls_gzinflate *z)
{
	memset(&z->h, 0, sizeof(z->h));
	isal_inflate_init(&z->st);
	/* Raw deflate, then ISA-L checks the CRC and ISIZE that follow it. */
	z->st.crc_flag = ISAL_GZIP_NO_HDR_VER;
}

/* Feeds in[0..len) to the current member: bytes consumed, or -1. */
static long feed(struct ls_gzinflate *z, const unsigned char *in, size_t len)
{
	struct inflate_state *st = &z->st;
	long skip = 0;

	if (z->h.field != H_DONE) {
		skip = header(z, in, len);
		if (skip < 0)
			return -1;
		if (z->h.field != H_DONE)
			return skip;
		in += skip;
		len -= (size_t)skip;
	}
	st->next_in = (uint8_t *)in;
	st->avail_in = (uint32_t)len;
	for (;;) {
		uint32_t in_before = st->avail_in;
		int ret;

		if (ls_interrupted)
			return bad(z, LS_ESIGNAL, "interrupted");
		st->next_out = z->out;
		st->avail_out = OUT_SIZE;
		ret = isal_inflate(st);
		if (emit(z, (size_t)(st->next_out - z->out)) != 0)
			return -1;
		if (ret < 0)
			return bad(z, LS_EARCHIVE, isal_why(ret));
		if (st->block_state == ISAL_BLOCK_FINISH) {
			z->members++;
			z->phase = BETWEEN;
			break;
		}
		if (st->avail_out > 0) {
			if (st->avail_in == 0)
				break;
			/* Input and output space left, yet nothing moved. */
			if (st->avail_in == in_before && st->next_out == z->out)
				return bad(z, LS_EARCHIVE, "decoder stalled");
		}
	}
	return skip + (long)(len - st->avail_in);
}
#else
static void start_member(struct ls_gzinflate *z)
{
	/* Only fails on a stream inflateInit2 did not set up, which new() checks. */
	(void)inflateReset(&z->zs);
}

/* Feeds in[0..len) to the current member: bytes consumed, or -1. */
static long feed(struct ls_gzinflate *z, const unsigned char *in, size_t len)
{
	z_stream *zs = &z->zs;

	zs->next_in = (unsigned char *)in;
	zs->avail_in = (uInt)len;
	for (;;) {
		int ret;

		if (ls_interrupted)
			return bad(z, LS_ESIGNAL, "interrupted");
		zs->next_out = z->out;
		zs->avail_out = OUT_SIZE;
		ret = inflate(zs, Z_NO_FLUSH);
		if (emit(z, (size_t)(zs->next_out - z->out)) != 0)
			return -1;
		if (ret == Z_STREAM_END) {
			z->members++;
			z->phase = BETWEEN;
			break;
		}
		if (ret == Z_MEM_ERROR)
			return bad(z, LS_EIO, "out of memory");
		if (ret == Z_BUF_ERROR && zs->avail_in == 0)
			break;
		if (ret != Z_OK)
			return bad(z, LS_EARCHIVE, zs->msg ? zs->msg : "invalid deflate data");
		if (zs->avail_out > 0 && zs->avail_in == 0)
			break;
	}
	return (long)(len - zs->avail_in);
}
#endif

struct ls_gzinflate *ls_gzinflate_new(struct ls_sink **sinks, int nsinks)
{
	struct ls_gzinflate *z = calloc(1, sizeof(*z));

	if (z == NULL)
		return NULL;
	z->sinks = sinks;
	z->nsinks = nsinks;
	z->phase = BETWEEN;
	z->out = malloc(OUT_SIZE);
	if (z->out == NULL) {
		free(z);
		return NULL;
	}
#ifndef LS_HAVE_ISAL
	/* 15 + 16: a 32 KiB window, gzip wrapper only. */
	if (inflateInit2(&z->zs, 15 + 16) != Z_OK) {
		free(z->out);
		free(z);
		return NULL;
	}
#endif
	return z;
}

int ls_gzinflate_write(struct ls_gzinflate *z, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	if (z->failed)
		return -1;
	z->in_size += len;
	while (len > 0) {
		long used;

		if (z->phase == BETWEEN) {
			/* Zero padding after a member is tolerated, as gzip(1) does. */
			while (z->members > 0 && len > 0 && *p == 0) {
				p++;
				len--;
				z->padding++;
			}
			if (len == 0)
				break;
			start_member(z);
			z->magic = 0;
			z->phase = MEMBER;
		}
		/* Check the magic ourselves: one message for both decoders. */
		for (size_t i = 0; z->magic < 2 && i < len; i++, z->magic++) {
			if (p[i] != (z->magic == 0 ? 0x1f : 0x8b))
				return bad(z, LS_EARCHIVE, z->members == 0
							       ? "not in gzip format"
							       : "trailing garbage after gzip data");
		}
		/* The decoders count input in 32 bits. */
		used = feed(z, p, len > FEED_MAX ? FEED_MAX : len);
		if (used < 0)
			return -1;
		p += used;
		len -= (size_t)used;
	}
	return 0;
}

int ls_gzinflate_finish(struct ls_gzinflate *z)
{
	if (z->failed)
		return -1;
	/* The decoder may hold a complete trailer it has not yet checked. */
	if (z->phase == MEMBER && feed(z, NULL, 0) < 0)
		return -1;
	if (z->phase == MEMBER)
		return bad(z, LS_EARCHIVE, "unexpected end of data");
	if (z->members == 0)
		return bad(z, LS_EARCHIVE, z->in_size == 0 ? "empty input" : "not in gzip format");
	return 0;
}

const char *ls_gzinflate_error(struct ls_gzinflate *z)
{
	if (z->failed_sink != NULL)
		return z->failed_sink->ops->error(z->failed_sink);
	return z->failed ? z->errmsg : "no error";
}

const char *ls_gzinflate_class(struct ls_gzinflate *z)
{
	if (z->failed_sink != NULL)
		return z->failed_sink->ops->class(z->failed_sink);
	return z->failed ? z->errclass : LS_EARCHIVE;
}

void ls_gzinflate_stats(struct ls_gzinflate *z, uint64_t *members, uint64_t *in_size,
			uint64_t *out_size)
{
	*members = z->members;
	*in_size = z->in_size;
	*out_size = z->out_size;
}

void ls_gzinflate_limit(struct ls_gzinflate *z, uint64_t max_out)
{
	z->max_out = max_out;
}

uint64_t ls_gzinflate_padding(struct ls_gzinflate *z)
{
	return z->padding;
}

const unsigned char *ls_gzinflate_head(struct ls_gzinflate *z, size_t *len)
{
	*len = z->head_len;
	return z->head;
}

void ls_gzinflate_free(struct ls_gzinflate *z)
{
	if (z == NULL)
		return;
#ifndef LS_HAVE_ISAL
	/* Z_DATA_ERROR here only means the stream was abandoned midway. */
	(void)inflateEnd(&z->zs);
#endif
	free(z->out);
	free(z);
}
