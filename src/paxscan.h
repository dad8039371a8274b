/* paxscan.h: a watch on the tar stream as a reader's input passes, for what
 * libarchive does not tell: a PAX header whose path or linkpath holds a NUL
 * byte (libarchive cuts the name there, so "a\0b" would read as "a").
 *
 * A tar reader feeds it the decompressed stream (reader.c's two-handle
 * input).  It follows tar headers and skips entry data by their sizes; on
 * input that is not a plain tar (a header it cannot read) it stops watching,
 * so it never rejects what it does not understand. */
#ifndef LS_PAXSCAN_H
#define LS_PAXSCAN_H

#include <stddef.h>
#include <stdint.h>

struct ls_paxscan {
	int stopped;		/* not a tar it can follow: watch no more */
	int nul_path;		/* a PAX path or linkpath held a NUL byte */
	int ext;		/* old GNU sparse extension headers follow */
	uint64_t after_ext;	/* then this much data */
	unsigned char hdr[512];
	size_t got;		/* bytes of hdr filled */
	uint64_t skip;		/* data bytes (padded) left to pass over */
	uint64_t pax_size;	/* size of the PAX data being collected */
	unsigned char *pax;	/* its bytes, while skip runs over them */
	size_t pax_len;
};

/* Watches len more bytes of the stream. */
void ls_paxscan_feed(struct ls_paxscan *s, const unsigned char *p, size_t len);
void ls_paxscan_free(struct ls_paxscan *s);

#endif
