/* deflate_zlib.c: the zlib block engine (and the buffer helper all engines share). */
#include <limits.h>
#include <stdlib.h>

#include <zlib.h>

#include "deflate.h"

int ls_buf_reserve(struct ls_buf *b, size_t need)
{
	size_t cap = b->cap ? b->cap : 4096;
	unsigned char *p;

	if (b->cap - b->len >= need)
		return 0;
	while (cap - b->len < need)
		cap *= 2;
	p = realloc(b->data, cap);
	if (p == NULL)
		return -1;
	b->data = p;
	b->cap = cap;
	return 0;
}

static void *zlib_open(int level)
{
	z_stream *zs = calloc(1, sizeof(*zs));

	if (zs == NULL)
		return NULL;
	/* Raw deflate (-15): the gzip header and trailer are written around
	 * all blocks by the writer, not per block. */
	if (deflateInit2(zs, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
		free(zs);
		return NULL;
	}
	return zs;
}

static int zlib_block(void *state, const unsigned char *dict, size_t dict_len,
		      const unsigned char *in, size_t len, int last,
		      struct ls_buf *out, const char **why)
{
	z_stream *zs = state;
	int flush = last ? Z_FINISH : Z_SYNC_FLUSH;
	int ret;

	if (deflateReset(zs) != Z_OK) {
		*why = "deflateReset failed";
		return -1;
	}
	if (dict_len > 0 && deflateSetDictionary(zs, dict, (uInt)dict_len) != Z_OK) {
		*why = "deflateSetDictionary failed";
		return -1;
	}
	zs->next_in = (unsigned char *)in;
	zs->avail_in = (uInt)len;
	for (;;) {
		/* A sync flush adds 5 bytes per call; the bound covers a stored block. */
		if (ls_buf_reserve(out, deflateBound(zs, zs->avail_in) + 64) != 0) {
			*why = "out of memory";
			return -1;
		}
		zs->next_out = out->data + out->len;
		zs->avail_out = out->cap - out->len > UINT_MAX ? UINT_MAX : (uInt)(out->cap - out->len);
		ret = deflate(zs, flush);
		out->len = (size_t)(zs->next_out - out->data);
		if (ret == Z_STREAM_END)
			return 0;
		if (ret != Z_OK && !(ret == Z_BUF_ERROR && zs->avail_out == 0)) {
			*why = zs->msg ? zs->msg : "deflate failed";
			return -1;
		}
		/* A flush is complete once deflate leaves output space unused. */
		if (!last && zs->avail_in == 0 && zs->avail_out > 0)
			return 0;
	}
}

static void zlib_close(void *state)
{
	z_stream *zs = state;

	if (zs == NULL)
		return;
	/* Z_DATA_ERROR here only means a block was abandoned midway. */
	(void)deflateEnd(zs);
	free(zs);
}

const struct ls_deflate_engine ls_deflate_zlib = {
	.name = "zlib",
	.min_level = 1,
	.max_level = 9,
	.default_level = 6,
	.block_size = 128 * 1024,
	.history = 1,
	.open = zlib_open,
	.block = zlib_block,
	.close = zlib_close,
};
