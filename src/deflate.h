/* deflate.h: the raw-deflate block engines behind the parallel gzip writer.
 *
 * An engine compresses one block of input at a time into byte-aligned raw
 * deflate (with the previous block's tail as history, for the engines that
 * take one), so independently compressed blocks concatenate into one valid
 * deflate stream.  The block size is the engine's: the bytes depend on it.
 */
#ifndef LS_DEFLATE_H
#define LS_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

#ifdef LS_HAVE_ISAL
#include <isa-l/crc.h>
#else
#include <libdeflate.h>
#endif

/* A growable output buffer; engines realloc data when cap runs out. */
struct ls_buf {
	unsigned char *data;
	size_t len, cap;
};

struct ls_deflate_engine {
	const char *name;
	int min_level, max_level, default_level;
	/* Input bytes per block, and whether a block takes the previous 32 KiB
	 * as history (dict); both fix the output bytes. */
	size_t block_size;
	int history;
	/* Per-thread state for level, or NULL when out of memory. */
	void *(*open)(int level);
	/* Appends the raw deflate of in[0..len) to out, using dict[0..dict_len)
	 * (at most 32 KiB) as history.  Ends byte-aligned with a sync flush,
	 * or with the final block when last.  0, or -1 with *why set. */
	int (*block)(void *state, const unsigned char *dict, size_t dict_len,
		     const unsigned char *in, size_t len, int last,
		     struct ls_buf *out, const char **why);
	void (*close)(void *state);
};

extern const struct ls_deflate_engine ls_deflate_zlib;
extern const struct ls_deflate_engine ls_deflate_libdeflate;
#ifdef LS_HAVE_ISAL
extern const struct ls_deflate_engine ls_deflate_isal;
#endif

/* Makes room for at least need more bytes in b.  0, or -1 out of memory. */
int ls_buf_reserve(struct ls_buf *b, size_t need);

/* The gzip CRC-32; ISA-L's and libdeflate's folding CRCs are several times
 * faster than zlib's. */
static inline uint32_t ls_crc32(uint32_t crc, const unsigned char *buf, size_t len)
{
#ifdef LS_HAVE_ISAL
	return crc32_gzip_refl(crc, buf, len);
#else
	return libdeflate_crc32(crc, buf, len);
#endif
}

#endif
