/* deflate_isal.c: the ISA-L (igzip) block engine, built only with LS_HAVE_ISAL. */
#ifdef LS_HAVE_ISAL
#include <limits.h>
#include <stdlib.h>

#include <isa-l/igzip_lib.h>

#include "deflate.h"

struct isal_engine {
	struct isal_zstream zs;
	unsigned char *level_buf;
	uint32_t level_buf_size;
	uint32_t level;
};

/* Tokens (literals and matches) ISA-L gathers before it ends a deflate
 * block, which its level buffer holds: 8K against its default of 64K, so
 * more Huffman tables, each fitted to less data.  bench/results.md, 1 GB,
 * 1 MiB input blocks, level 2: 1.047x skopeo's bytes with 8K tokens and
 * 1.050x with 16K, which took about 9% less CPU.  The bytes depend on it,
 * so it is fixed. */
#define ISAL_TOKENS (8 * 1024)

static void *isal_open(int level)
{
	static const uint32_t sizes[] = {
		ISAL_DEF_LVL0_REQ,
		ISAL_DEF_LVL1_REQ + ISAL_DEF_LVL1_TOKEN_SIZE * ISAL_TOKENS,
		ISAL_DEF_LVL2_REQ + ISAL_DEF_LVL2_TOKEN_SIZE * ISAL_TOKENS,
		ISAL_DEF_LVL3_REQ + ISAL_DEF_LVL3_TOKEN_SIZE * ISAL_TOKENS,
	};
	struct isal_engine *e;

	if (level < ISAL_DEF_MIN_LEVEL || level > ISAL_DEF_MAX_LEVEL)
		return NULL;
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	e->level = (uint32_t)level;
	e->level_buf_size = sizes[level];
	if (e->level_buf_size > 0) {
		e->level_buf = malloc(e->level_buf_size);
		if (e->level_buf == NULL) {
			free(e);
			return NULL;
		}
	}
	isal_deflate_init(&e->zs);
	return e;
}

static int isal_block(void *state, const unsigned char *dict, size_t dict_len,
		      const unsigned char *in, size_t len, int last,
		      struct ls_buf *out, const char **why);
static void isal_close(void *state);

/* ISA-L picks its CPU-specific functions on first use, racily: a block
 * compressed here, on the thread that opens the state before any worker
 * starts, settles them for this level. */
static void *isal_open_warm(int level)
{
	static const unsigned char probe[256];
	struct isal_engine *e = isal_open(level);
	struct ls_buf out = { 0 };
	const char *why;
	int rc;

	if (e == NULL)
		return NULL;
	(void)crc32_gzip_refl(0, probe, sizeof(probe));
	rc = isal_block(e, probe, sizeof(probe), probe, sizeof(probe), 1, &out, &why);
	free(out.data);
	if (rc != 0) {
		isal_close(e);
		return NULL;
	}
	return e;
}

static int isal_block(void *state, const unsigned char *dict, size_t dict_len,
		      const unsigned char *in, size_t len, int last,
		      struct ls_buf *out, const char **why)
{
	struct isal_engine *e = state;
	struct isal_zstream *zs = &e->zs;
	int ret, stalls = 0;

	/* A reset stream has no history, so every block's bytes depend only
	 * on its input and dictionary, whichever thread compresses it. */
	isal_deflate_reset(zs);
	zs->level = e->level;
	zs->level_buf = e->level_buf;
	zs->level_buf_size = e->level_buf_size;
	zs->gzip_flag = IGZIP_DEFLATE;
	zs->end_of_stream = last ? 1 : 0;
	zs->flush = last ? NO_FLUSH : SYNC_FLUSH;
	if (dict_len > 0) {
		ret = isal_deflate_set_dict(zs, (uint8_t *)dict, (uint32_t)dict_len);
		if (ret != COMP_OK) {
			*why = "isal_deflate_set_dict failed";
			return -1;
		}
	}
	zs->next_in = (uint8_t *)in;
	zs->avail_in = (uint32_t)len;
	for (;;) {
		uint32_t in_before = zs->avail_in;
		size_t out_before = out->len;

		/* Stored blocks bound the output near the input size. */
		if (ls_buf_reserve(out, (size_t)zs->avail_in + zs->avail_in / 16 + 1024) != 0) {
			*why = "out of memory";
			return -1;
		}
		zs->next_out = out->data + out->len;
		zs->avail_out = out->cap - out->len > UINT32_MAX ? UINT32_MAX
								   : (uint32_t)(out->cap - out->len);
		ret = isal_deflate(zs);
		out->len = (size_t)(zs->next_out - out->data);
		if (ret != COMP_OK) {
			*why = ret == ISAL_INVALID_LEVEL_BUF ? "isal_deflate: level buffer too small"
							     : "isal_deflate failed";
			return -1;
		}
		if (last ? zs->internal_state.state == ZSTATE_END
			 : zs->avail_in == 0 && zs->internal_state.state == ZSTATE_NEW_HDR)
			return 0;
		/* Output space was left yet nothing moved, again: the stream is stuck. */
		if (zs->avail_out > 0 && zs->avail_in == in_before && out->len == out_before &&
		    ++stalls > 8) {
			*why = "isal_deflate made no progress";
			return -1;
		}
	}
}

static void isal_close(void *state)
{
	struct isal_engine *e = state;

	if (e == NULL)
		return;
	free(e->level_buf);
	free(e);
}

const struct ls_deflate_engine ls_deflate_isal = {
	.name = "isal",
	.min_level = ISAL_DEF_MIN_LEVEL,
	.max_level = ISAL_DEF_MAX_LEVEL,
	/* make bench, 1 GB, 2 CPUs (bench/results.md): level 2 writes 1.047x
	 * skopeo's bytes at 3.1-3.4x its speed; level 3 1.031x at about 25% more
	 * CPU.  1 MiB blocks, against 128 KiB: a fifth less CPU (the 32 KiB
	 * dictionary hashed an eighth as often, 8x fewer hand-offs between
	 * threads) for 0.4% more bytes at the same token count. */
	.default_level = 2,
	.block_size = 1024 * 1024,
	.history = 1,
	.open = isal_open_warm,
	.block = isal_block,
	.close = isal_close,
};
#else
/* ISO C wants a translation unit to declare something. */
typedef int ls_deflate_isal_unused;
#endif
