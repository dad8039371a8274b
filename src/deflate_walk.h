/* deflate_walk.h: the last block of a raw deflate stream, for the
 * libdeflate engine's block joins. */
#ifndef LS_DEFLATE_WALK_H
#define LS_DEFLATE_WALK_H

#include <stddef.h>
#include <stdint.h>

/* Decoding tables (128 KiB), kept by the caller between calls. */
struct ls_walk_tables {
	uint16_t lit[1 << 15], dist[1 << 15];
};

/* Walks the complete raw deflate stream d[0..n), which must decode to
 * out_len bytes and end right after its last (BFINAL) block's padding:
 * sets *hdr to the bit offset of that block's header and *pad to the number
 * of padding bits after its end-of-block code.  Writes no decoded byte.
 * 0, or -1 when d is not such a stream. */
int ls_deflate_last_block(struct ls_walk_tables *t, const unsigned char *d, size_t n,
			  uint64_t out_len, uint64_t *hdr, int *pad);

#endif
