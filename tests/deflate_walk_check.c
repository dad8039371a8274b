/* deflate_walk_check.c: src/deflate_walk.c against zlib's inflate(Z_BLOCK).
 *
 * For raw deflate streams of many shapes (libdeflate levels 0-12 and zlib
 * levels 1-9 over text, zeros, noise and mixes, empty to several MiB), the
 * walker must find the same last-block header offset and padding as zlib;
 * damaged copies (a flipped bit, a cut end) must never read out of bounds
 * and, where zlib rejects them, be rejected too unless zlib's own walk
 * agrees.  Prints "ok N streams" or the first mismatch, exit 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libdeflate.h>
#include <zlib.h>

#include "deflate_walk.h"

static unsigned long long rng_state = 88172645463325252ULL;

static unsigned rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (unsigned)rng_state;
}

/* zlib's answer, as the libdeflate engine first used it.  0 or -1. */
static int zlib_last_block(const unsigned char *d, size_t n, size_t out_len,
			   unsigned char *plain, uint64_t *hdr, int *pad)
{
	z_stream zs;
	uint64_t start = 0;
	int rc = -1;

	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, -15) != Z_OK)
		return -1;
	zs.next_in = (unsigned char *)d;
	zs.avail_in = (uInt)n;
	zs.next_out = plain;
	zs.avail_out = (uInt)out_len + 1;
	for (;;) {
		if (inflate(&zs, Z_BLOCK) != Z_OK)
			break;
		if (zs.data_type & 128) {
			uint64_t at = (uint64_t)(zs.next_in - d) * 8 - (uint64_t)(zs.data_type & 7);

			if (!(zs.data_type & 64)) {
				start = at;
				continue;
			}
			if (zs.avail_in == 0 && zs.total_out == out_len) {
				*hdr = start;
				*pad = zs.data_type & 7;
				rc = 0;
			}
			break;
		}
		if (zs.avail_in == 0 || zs.avail_out == 0)
			break;
	}
	inflateEnd(&zs);
	return rc;
}

static void fill(unsigned char *p, size_t len, int kind)
{
	static const char *words[] = { "layer ", "tar ", "usr/lib/", "gzip ", "\n", "000000" };

	for (size_t i = 0; i < len;) {
		int k = kind == 3 ? (int)(rnd() % 3) : kind;
		size_t run = 1 + rnd() % 4096;

		for (size_t j = 0; j < run && i < len; j++, i++) {
			if (k == 0) {
				const char *w = words[(i / 7 + rnd() % 3) % 6];

				p[i] = (unsigned char)w[i % strlen(w)];
			} else if (k == 1)
				p[i] = 0;
			else
				p[i] = (unsigned char)rnd();
		}
	}
}

int main(void)
{
	static struct ls_walk_tables t;
	size_t sizes[] = { 0, 1, 2, 100, 4096, 65535, 65536, 65537, 300000, 1 << 20, 3 << 20 };
	unsigned char *in = malloc(3 << 20), *plain = malloc((3 << 20) + 1);
	unsigned char *out = malloc((4 << 20)), *bad = malloc(4 << 20);
	int streams = 0, pads[8] = { 0 };

	if (in == NULL || plain == NULL || out == NULL || bad == NULL)
		return 2;
	setvbuf(stdout, NULL, _IONBF, 0); /* a sanitizer's exit flushes nothing */
	for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		for (int kind = 0; kind < 4; kind++) {
			size_t len = sizes[si];

			fill(in, len, kind);
			for (int lib = 0; lib < 2; lib++) {
				for (int level = lib ? 1 : 0; level <= (lib ? 9 : 12); level++) {
					size_t n;
					uint64_t h1 = 0, h2 = 0;
					int p1 = -1, p2 = -1, r1, r2;

					if (len > (1 << 20) && level != 6 && level != 1)
						continue; /* the big ones at two levels: time */
					if (lib == 0) {
						struct libdeflate_compressor *c = libdeflate_alloc_compressor(level);

						n = libdeflate_deflate_compress(c, in, len, out, 4 << 20);
						libdeflate_free_compressor(c);
					} else {
						z_stream zs;

						memset(&zs, 0, sizeof(zs));
						deflateInit2(&zs, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
						zs.next_in = in;
						zs.avail_in = (uInt)len;
						zs.next_out = out;
						zs.avail_out = 4 << 20;
						deflate(&zs, Z_FINISH);
						n = zs.total_out;
						deflateEnd(&zs);
					}
					r1 = ls_deflate_last_block(&t, out, n, len, &h1, &p1);
					r2 = zlib_last_block(out, n, len, plain, &h2, &p2);
					streams++;
					if (r1 != 0 || r2 != 0 || h1 != h2 || p1 != p2) {
						printf("FAIL %s level %d size %zu kind %d: walk %d (%llu, %d), "
						       "zlib %d (%llu, %d)\n", lib ? "zlib" : "libdeflate",
						       level, len, kind, r1, (unsigned long long)h1, p1, r2,
						       (unsigned long long)h2, p2);
						exit(1);
					}
					pads[p1]++;
					/* damaged copies: no crash, and no answer zlib would not give */
					for (int d = 0; d < 8 && n > 0 && len <= 65537; d++) {
						size_t cut = d < 2 ? n - 1 - (rnd() % n) / 2 : n;

						memcpy(bad, out, n);
						if (d >= 2)
							bad[rnd() % n] ^= (unsigned char)(1u << (rnd() % 8));
						r1 = ls_deflate_last_block(&t, bad, cut, len, &h1, &p1);
						r2 = zlib_last_block(bad, cut, len, plain, &h2, &p2);
						if (r1 == 0 && (r2 != 0 || h1 != h2 || p1 != p2) &&
						    !(r2 != 0 && d >= 2)) {
							printf("FAIL damaged %s level %d size %zu: walk accepts "
							       "(%llu, %d), zlib %d\n", lib ? "zlib" : "libdeflate",
							       level, len, (unsigned long long)h1, p1, r2);
							exit(1);
						}
					}
				}
			}
		}
	}
	for (int p = 0; p < 8; p++)
		if (pads[p] == 0) {
			printf("FAIL no stream ended with %d padding bits\n", p);
			exit(1);
		}
	printf("ok %d streams\n", streams);
	free(in);
	free(plain);
	free(out);
	free(bad);
	return 0;
}
