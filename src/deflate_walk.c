/* deflate_walk.c: finds where a raw deflate stream's last block starts and
 * how many padding bits follow it, by decoding every code of every block
 * without writing the decoded bytes (zlib's inflate(Z_BLOCK) tells the same,
 * but writes and keeps a window: tests/deflate_walk_check.c compares them).
 */
#include <endian.h>
#include <stdint.h>
#include <string.h>

#include "deflate_walk.h"

#define LEN_BITS 9 /* an entry: code length << LEN_BITS | symbol; 0: no code */
#define FAST 10	   /* bits of the first lookup */

static const uint16_t len_base[29] = {
	3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
	35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258,
};
static const uint8_t len_extra[29] = {
	0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
	3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
};
static const uint16_t dist_base[30] = {
	1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193,
	257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
};
static const uint8_t dist_extra[30] = {
	0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6,
	7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
};
static const uint8_t cl_order[19] = {
	16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
};

struct walk {
	const unsigned char *d;
	size_t n;
	uint64_t pos, end; /* in bits */
};

/* At least 56 bits from pos on (zeros past the end; callers check pos). */
static inline uint64_t peek(const struct walk *w)
{
	size_t i = (size_t)(w->pos >> 3);
	uint64_t v = 0;

	if (i + 8 <= w->n) {
		memcpy(&v, w->d + i, 8);
		v = le64toh(v);
	} else {
		for (size_t k = 0; i + k < w->n; k++)
			v |= (uint64_t)w->d[i + k] << (8 * k);
	}
	return v >> (w->pos & 7);
}

static inline uint32_t take(struct walk *w, int bits)
{
	uint32_t v = (uint32_t)(peek(w) & ((1u << bits) - 1));

	w->pos += (uint64_t)bits;
	return v;
}

/* A lookup table over *bits bits for the canonical code of lens[0..nsym).
 * 0, or -1 when the code is over-subscribed. */
static int build(uint16_t *table, int *bits, const uint8_t *lens, int nsym)
{
	int count[16] = { 0 }, next[16], max = 0, left = 1;

	for (int s = 0; s < nsym; s++)
		count[lens[s]]++;
	count[0] = 0;
	for (int l = 1; l <= 15; l++) {
		left = (left << 1) - count[l];
		if (left < 0)
			return -1;
		if (count[l] > 0)
			max = l;
	}
	if (max == 0)
		max = 1; /* no code at all: every entry stays empty */
	next[1] = 0;
	for (int l = 2; l <= 15; l++)
		next[l] = (next[l - 1] + count[l - 1]) << 1;
	/* Codes by length, the table doubling in between: a code of length l
	 * fills entry rev(code) of the first 2^l, and each doubling copies
	 * the shorter codes into every entry that starts with them. */
	memset(table, 0, sizeof(uint16_t) << 1);
	for (int l = 1; l <= max; l++) {
		if (l > 1)
			memcpy(table + (1 << (l - 1)), table, sizeof(uint16_t) << (l - 1));
		if (count[l] == 0)
			continue;
		for (int s = 0; s < nsym; s++) {
			int code, rev = 0;

			if (lens[s] != l)
				continue;
			code = next[l]++;
			for (int b = 0; b < l; b++)
				rev |= ((code >> b) & 1) << (l - 1 - b);
			table[rev] = (uint16_t)(l << LEN_BITS | s);
		}
	}
	*bits = max;
	return 0;
}

static inline int decode(struct walk *w, const uint16_t *table, int bits)
{
	uint16_t e = table[peek(w) & ((1u << bits) - 1)];

	if (e == 0)
		return -1;
	w->pos += e >> LEN_BITS;
	return e & ((1 << LEN_BITS) - 1);
}

/* Reads a dynamic block's code lengths into lens (litlen, then distance). */
static int dynamic_lens(struct walk *w, struct ls_walk_tables *t, uint8_t *lens, int *nlit,
			int *ndist)
{
	uint8_t cl[19] = { 0 };
	int hclen, bits, n = 0;

	if (w->pos + 14 > w->end)
		return -1;
	*nlit = (int)take(w, 5) + 257;
	*ndist = (int)take(w, 5) + 1;
	hclen = (int)take(w, 4) + 4;
	if (*nlit > 286 || *ndist > 30 || w->pos + 3 * (uint64_t)hclen > w->end)
		return -1;
	for (int i = 0; i < hclen; i++)
		cl[cl_order[i]] = (uint8_t)take(w, 3);
	if (build(t->lit, &bits, cl, 19) != 0)
		return -1;
	while (n < *nlit + *ndist) {
		int sym, rep, val = 0;

		if (w->pos > w->end || (sym = decode(w, t->lit, bits)) < 0)
			return -1;
		if (sym < 16) {
			lens[n++] = (uint8_t)sym;
			continue;
		}
		if (sym == 16) {
			if (n == 0)
				return -1;
			val = lens[n - 1];
			rep = 3 + (int)take(w, 2);
		} else if (sym == 17) {
			rep = 3 + (int)take(w, 3);
		} else {
			rep = 11 + (int)take(w, 7);
		}
		if (n + rep > *nlit + *ndist)
			return -1;
		memset(lens + n, val, (size_t)rep);
		n += rep;
	}
	return w->pos <= w->end && lens[256] != 0 ? 0 : -1;
}

/* Walks a Huffman block's codes up to its end-of-block code.  One load
 * gives at least 57 bits, and a literal/length code with its extra bits and
 * a distance code with its extra bits take at most 48: codes are taken from
 * the loaded bits while 48 remain. */
static int codes(struct walk *w, const struct ls_walk_tables *t, int lbits, int dbits,
		 uint64_t *out)
{
	/* The table's first 2^FAST entries hold every code of up to FAST bits
	 * (and some longer ones, looked up again in full): looked up first,
	 * they stay in the L1 cache. */
	const uint64_t lmask = (1u << lbits) - 1, dmask = (1u << dbits) - 1;
	const uint64_t lfast = lbits > FAST ? (1u << FAST) - 1 : lmask;
	const uint64_t dfast = dbits > FAST ? (1u << FAST) - 1 : dmask;
	uint64_t pos = w->pos, done = *out;

	for (;;) {
		uint64_t v;
		int avail;

		if (pos > w->end)
			return -1;
		w->pos = pos;
		v = peek(w);
		avail = 64 - (int)(pos & 7);
		while (avail >= 48) {
			uint16_t e = t->lit[v & lfast];
			int l, sym, eb;
			uint64_t len, dist;

			if ((e >> LEN_BITS) > FAST || e == 0)
				e = t->lit[v & lmask];
			if (e == 0)
				return -1;
			l = e >> LEN_BITS;
			sym = e & ((1 << LEN_BITS) - 1);
			v >>= l;
			pos += (uint64_t)l;
			avail -= l;
			if (sym < 256) {
				done++;
				continue;
			}
			if (sym == 256) {
				w->pos = pos;
				*out = done;
				return pos <= w->end ? 0 : -1;
			}
			if ((sym -= 257) >= 29)
				return -1;
			eb = len_extra[sym];
			len = len_base[sym] + (v & ((1u << eb) - 1));
			v >>= eb;
			e = t->dist[v & dfast];
			if ((e >> LEN_BITS) > FAST || e == 0)
				e = t->dist[v & dmask];
			l = e >> LEN_BITS;
			sym = e & ((1 << LEN_BITS) - 1);
			if (e == 0 || sym >= 30)
				return -1;
			v >>= l;
			dist = dist_base[sym] + (v & ((1u << dist_extra[sym]) - 1));
			v >>= dist_extra[sym];
			l += eb + dist_extra[sym];
			pos += (uint64_t)l;
			avail -= l;
			if (dist > done)
				return -1;
			done += len;
		}
	}
}

static int huffman(struct walk *w, struct ls_walk_tables *t, int dynamic, uint64_t *out)
{
	uint8_t lens[288 + 30];
	int nlit = 288, ndist = 30, lbits, dbits;

	if (dynamic) {
		if (dynamic_lens(w, t, lens, &nlit, &ndist) != 0)
			return -1;
	} else {
		/* RFC 1951 3.2.6; symbols 286, 287 and distances 30, 31 are
		 * rejected when met */
		memset(lens, 8, 144);
		memset(lens + 144, 9, 112);
		memset(lens + 256, 7, 24);
		memset(lens + 280, 8, 8);
		memset(lens + 288, 5, 30);
	}
	if (build(t->lit, &lbits, lens, nlit) != 0 || build(t->dist, &dbits, lens + nlit, ndist) != 0)
		return -1;
	return codes(w, t, lbits, dbits, out);
}

int ls_deflate_last_block(struct ls_walk_tables *t, const unsigned char *d, size_t n,
			  uint64_t out_len, uint64_t *hdr, int *pad)
{
	struct walk w = { d, n, 0, (uint64_t)n * 8 };
	uint64_t out = 0;

	for (;;) {
		uint64_t start = w.pos;
		uint32_t head;

		if (w.pos + 3 > w.end)
			return -1;
		head = take(&w, 3);
		if ((head >> 1) == 0) {
			uint64_t at;
			uint32_t len, nlen;

			w.pos = (w.pos + 7) & ~(uint64_t)7;
			if (w.pos + 32 > w.end)
				return -1;
			at = w.pos >> 3;
			len = d[at] | (uint32_t)d[at + 1] << 8;
			nlen = d[at + 2] | (uint32_t)d[at + 3] << 8;
			if ((len ^ 0xffff) != nlen || w.pos + 32 + (uint64_t)len * 8 > w.end)
				return -1;
			w.pos += 32 + (uint64_t)len * 8;
			out += len;
		} else if ((head >> 1) == 3 || huffman(&w, t, (head >> 1) == 2, &out) != 0) {
			return -1;
		}
		if (head & 1) {
			int p = (int)((8 - (w.pos & 7)) & 7);

			/* The stream must end right after the last block's padding. */
			if (w.pos + (uint64_t)p != w.end || out != out_len)
				return -1;
			*hdr = start;
			*pad = p;
			return 0;
		}
	}
}
