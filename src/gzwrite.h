/* gzwrite.h: the block-parallel gzip file writer behind gzip.writer().
 *
 * Input is cut into blocks of the engine's size; worker threads raw-deflate
 * each block (with the previous 32 KiB as dictionary, for the engines that
 * take one), a writer thread appends them in order to ONE gzip member, so
 * the bytes depend only on engine, level and library version.
 */
#ifndef LS_GZWRITE_H
#define LS_GZWRITE_H

#include <stddef.h>
#include <stdint.h>

#include "deflate.h"

struct ls_gzwrite;
struct ls_sink;

struct ls_gzwrite_result {
	uint64_t in_size, out_size;
	char in_sha256[65], out_sha256[65];
};

/* Creates path (exclusively, 0644) and starts the threads.  NULL on failure
 * with the message in err; the class is always LS_EIO. */
struct ls_gzwrite *ls_gzwrite_open(const char *path, const struct ls_deflate_engine *eng,
				   int level, int threads, char *err, size_t errlen);
/* Compresses len more bytes.  0, or -1: see ls_gzwrite_error/class.  A
 * failure is sticky: every later call fails the same way. */
int ls_gzwrite_write(struct ls_gzwrite *gz, const void *buf, size_t len);
/* Writes the last block and trailer, stops the threads, closes the file.
 * 0 with *r filled, or -1.  Call at most once. */
int ls_gzwrite_finish(struct ls_gzwrite *gz, struct ls_gzwrite_result *r);
/* Also writes every byte of the gzip file, in order, to sinks[0..n), from
 * the writer thread; a sink that fails fails the writer with its message.
 * Call before the first write; the sinks must outlive the writer. */
void ls_gzwrite_tee(struct ls_gzwrite *gz, struct ls_sink **sinks, int n);
/* Before the first write: start the file's writeback every
 * LS_WRITEBACK_CHUNK bytes (ls_writeback). */
void ls_gzwrite_writeback(struct ls_gzwrite *gz, int on);
const char *ls_gzwrite_error(struct ls_gzwrite *gz);
const char *ls_gzwrite_class(struct ls_gzwrite *gz);
/* Stops the threads (abandoning unwritten data), closes the file if still
 * open and frees gz; the partial file is left for the caller to remove. */
void ls_gzwrite_free(struct ls_gzwrite *gz);

#endif
