/* deflate_libdeflate.c: the libdeflate block engine.
 *
 * libdeflate compresses a whole buffer into a complete raw deflate stream
 * whose last block is final, and takes no history, so each block is
 * compressed on its own.  Every block but the last then gets the end a zlib
 * sync flush would give it: the final block's BFINAL bit cleared, the
 * padding bits after its end-of-block code zeroed, and an empty stored block
 * appended, byte-aligned.  Where that last deflate block's header starts and
 * how many padding bits p follow its end-of-block code come from decoding
 * the block with zlib's inflate(Z_BLOCK), which stops at every deflate block
 * boundary; the decoded bytes are compared with the input on the way.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <libdeflate.h>
#include <zlib.h>

#include "deflate.h"

#define LD_BLOCK (1024 * 1024) /* chosen by measurement: bench/results.md */

struct ld_engine {
	struct libdeflate_compressor *c;
	z_stream zs;		/* raw inflate, to find the last block's bits */
	int zs_ready;
	unsigned char *plain;	/* LD_BLOCK: the decoded block */
};

static void ld_close(void *state)
{
	struct ld_engine *e = state;

	if (e == NULL)
		return;
	libdeflate_free_compressor(e->c);
	if (e->zs_ready)
		(void)inflateEnd(&e->zs);
	free(e->plain);
	free(e);
}

static void *ld_open(int level)
{
	struct ld_engine *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return NULL;
	e->c = libdeflate_alloc_compressor(level);
	e->plain = malloc(LD_BLOCK);
	if (e->c == NULL || e->plain == NULL || inflateInit2(&e->zs, -15) != Z_OK) {
		ld_close(e);
		return NULL;
	}
	e->zs_ready = 1;
	return e;
}

/* Decodes the complete raw deflate stream d[0..n), which must inflate to
 * in[0..len): sets *hdr to the bit offset of its last block's header and *pad
 * to the number of padding bits after that block's end-of-block code.
 * 0, or -1 with *why set. */
static int last_block(struct ld_engine *e, const unsigned char *d, size_t n,
		      const unsigned char *in, size_t len, uint64_t *hdr, int *pad,
		      const char **why)
{
	z_stream *zs = &e->zs;
	uint64_t start = 0; /* the block being decoded starts here */

	if (inflateReset(zs) != Z_OK) {
		*why = "inflateReset failed";
		return -1;
	}
	zs->next_in = (unsigned char *)d;
	zs->avail_in = (uInt)n;
	zs->next_out = e->plain;
	zs->avail_out = LD_BLOCK;
	for (;;) {
		int ret = inflate(zs, Z_BLOCK);

		if (ret != Z_OK) {
			*why = "own output does not decode";
			return -1;
		}
		/* Bit 7: stopped at a block boundary, bits 0-2 unused in the last
		 * byte taken; bit 6: the block just ended was the final one. */
		if (zs->data_type & 128) {
			int bits = zs->data_type & 7;
			uint64_t at = (uint64_t)(zs->next_in - d) * 8 - (uint64_t)bits;

			if (!(zs->data_type & 64)) {
				start = at;
				continue;
			}
			if (zs->avail_in != 0 || zs->total_out != len ||
			    memcmp(e->plain, in, len) != 0) {
				*why = "own output decodes to other bytes";
				return -1;
			}
			*hdr = start;
			*pad = bits;
			return 0;
		}
		if (zs->avail_in == 0 || zs->avail_out == 0) {
			*why = "own output does not decode";
			return -1;
		}
	}
}

static int ld_block(void *state, const unsigned char *dict, size_t dict_len,
		    const unsigned char *in, size_t len, int last, struct ls_buf *out,
		    const char **why)
{
	struct ld_engine *e = state;
	size_t bound = libdeflate_deflate_compress_bound(e->c, len), n;
	unsigned char *d;
	uint64_t hdr;
	int pad;

	if (len > LD_BLOCK) {
		*why = "block too large";
		return -1;
	}
	if (ls_buf_reserve(out, bound + 5) != 0) {
		*why = "out of memory";
		return -1;
	}
	d = out->data + out->len;
	n = libdeflate_deflate_compress(e->c, in, len, d, bound);
	if (n == 0) {
		*why = "libdeflate_deflate_compress failed";
		return -1;
	}
	if (!last) {
		if (last_block(e, d, n, in, len, &hdr, &pad, why) != 0)
			return -1;
		d[hdr / 8] &= (unsigned char)~(1u << (hdr % 8)); /* BFINAL = 0 */
		d[n - 1] &= (unsigned char)(0xffu >> pad);	  /* padding = 0 */
		/* An empty stored block: its 3 header bits fit in the padding
		 * when p >= 3, else they start one more byte. */
		if (pad < 3)
			d[n++] = 0;
		memcpy(d + n, "\x00\x00\xff\xff", 4);
		n += 4;
	}
	out->len += n;
	return 0;
}

const struct ls_deflate_engine ls_deflate_libdeflate = {
	.name = "libdeflate",
	.min_level = 1,
	.max_level = 12,
	.default_level = 6,
	.block_size = LD_BLOCK,
	.history = 0,
	.open = ld_open,
	.block = ld_block,
	.close = ld_close,
};
