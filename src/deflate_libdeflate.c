/* deflate_libdeflate.c: the libdeflate block engine.
 *
 * libdeflate compresses a whole buffer into a complete raw deflate stream
 * whose last block is final, and takes no history, so each block is
 * compressed on its own.  Every block but the last then gets the end a zlib
 * sync flush would give it: the final block's BFINAL bit cleared, the
 * padding bits after its end-of-block code zeroed, and an empty stored block
 * appended, byte-aligned.  Where that last deflate block's header starts and
 * how many padding bits p follow its end-of-block code come from walking the
 * block's deflate codes (deflate_walk.c: zlib's inflate(Z_BLOCK) says the
 * same, at about twice the cost, as it writes the decoded bytes).
 */
#include <stdlib.h>
#include <string.h>

#include <libdeflate.h>

#include "deflate.h"
#include "deflate_walk.h"

#define LD_BLOCK (1024 * 1024) /* chosen by measurement: bench/results.md */

struct ld_engine {
	struct libdeflate_compressor *c;
	struct ls_walk_tables walk; /* to find the last block's bits */
};

static void ld_close(void *state)
{
	struct ld_engine *e = state;

	if (e == NULL)
		return;
	libdeflate_free_compressor(e->c);
	free(e);
}

static void *ld_open(int level)
{
	struct ld_engine *e = malloc(sizeof(*e));

	if (e == NULL)
		return NULL;
	e->c = libdeflate_alloc_compressor(level);
	if (e->c == NULL) {
		free(e);
		return NULL;
	}
	return e;
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
		if (ls_deflate_last_block(&e->walk, d, n, len, &hdr, &pad) != 0) {
			*why = "own output does not decode";
			return -1;
		}
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
