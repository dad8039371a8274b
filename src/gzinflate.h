/* gzinflate.h: streaming gzip decoder behind gzip.inflater().
 *
 * Accepts any number of concatenated members (NUL padding between or after
 * them is skipped, as gzip(1) does) and pushes the inflated bytes into
 * downstream sinks.  ISA-L's inflate when built in, else zlib's.
 */
#ifndef LS_GZINFLATE_H
#define LS_GZINFLATE_H

#include <stddef.h>
#include <stdint.h>

#include "sink.h"

#define LS_GZINFLATE_HEAD 512

struct ls_gzinflate;

/* A decoder pushing into sinks[0..nsinks), which must outlive it.  NULL when
 * out of memory. */
struct ls_gzinflate *ls_gzinflate_new(struct ls_sink **sinks, int nsinks);
/* Decodes len more bytes.  0, or -1: see ls_gzinflate_error/class (a failed
 * downstream sink's own message and class, or LS_EARCHIVE for bad data).
 * Failures are sticky. */
int ls_gzinflate_write(struct ls_gzinflate *z, const void *buf, size_t len);
/* Fails the decoder (LS_EARCHIVE) as soon as it would push out more than
 * max_out inflated bytes in all; 0, the default, for no limit. */
void ls_gzinflate_limit(struct ls_gzinflate *z, uint64_t max_out);
/* Checks that the input ended after a complete member.  0 or -1. */
int ls_gzinflate_finish(struct ls_gzinflate *z);
const char *ls_gzinflate_error(struct ls_gzinflate *z);
const char *ls_gzinflate_class(struct ls_gzinflate *z);
void ls_gzinflate_stats(struct ls_gzinflate *z, uint64_t *members, uint64_t *in_size,
			uint64_t *out_size);
/* Zero bytes skipped after members. */
uint64_t ls_gzinflate_padding(struct ls_gzinflate *z);
/* The first LS_GZINFLATE_HEAD inflated bytes (fewer if the data is shorter). */
const unsigned char *ls_gzinflate_head(struct ls_gzinflate *z, size_t *len);
void ls_gzinflate_free(struct ls_gzinflate *z);

#endif
