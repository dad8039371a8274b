/* paxscan.c: PAX path and linkpath records checked for NUL bytes as the tar
 * stream passes (see paxscan.h). */
#include <stdlib.h>
#include <string.h>

#include "paxscan.h"

/* PAX data larger than this is not collected (and not checked). */
#define PAX_MAX ((uint64_t)1 << 20)

/* An octal field, or base-256 (GNU) for sizes; -1 if unreadable. */
static int64_t number(const unsigned char *f, size_t n)
{
	uint64_t v = 0;
	size_t i = 0;

	if (f[0] & 0x80) {
		for (i = 1; i < n; i++) {
			if (v >> 55)
				return -1;
			v = v << 8 | f[i];
		}
		return (f[0] & 0x7f) != 0 ? -1 : (int64_t)v;
	}
	while (i < n && f[i] == ' ')
		i++;
	for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
		if (v >> 60)
			return -1;
		v = v << 3 | (uint64_t)(f[i] - '0');
	}
	if (i < n && f[i] != ' ' && f[i] != '\0')
		return -1;
	return (int64_t)v;
}

static int checksum_ok(const unsigned char *h)
{
	int64_t want = number(h + 148, 8);
	uint64_t u = 0;
	int64_t s = 0;

	for (int i = 0; i < 512; i++) {
		unsigned char c = i >= 148 && i < 156 ? ' ' : h[i];

		u += c;
		s += (signed char)c;
	}
	return want >= 0 && (want == (int64_t)u || want == s);
}

/* Looks through collected PAX records: "<len> <key>=<value>\n". */
static void check_records(struct ls_paxscan *s)
{
	const unsigned char *p = s->pax, *end = s->pax + s->pax_len;

	while (p < end) {
		const unsigned char *sp = memchr(p, ' ', (size_t)(end - p)), *eq, *rec_end;
		uint64_t len = 0;

		if (sp == NULL || sp == p)
			return;
		for (const unsigned char *d = p; d < sp; d++) {
			if (*d < '0' || *d > '9' || len > PAX_MAX)
				return;
			len = len * 10 + (uint64_t)(*d - '0');
		}
		if (len <= (uint64_t)(sp - p) + 1 || len > (uint64_t)(end - p))
			return;
		rec_end = p + len - 1; /* the '\n' */
		eq = memchr(sp + 1, '=', (size_t)(rec_end - sp - 1));
		if (eq != NULL) {
			size_t klen = (size_t)(eq - sp - 1);

			if (((klen == 4 && memcmp(sp + 1, "path", 4) == 0) ||
			     (klen == 8 && memcmp(sp + 1, "linkpath", 8) == 0)) &&
			    memchr(eq + 1, '\0', (size_t)(rec_end - eq - 1)) != NULL)
				s->nul_path = 1;
		}
		p += len;
	}
}

/* A complete 512-byte block in s->hdr. */
static void header(struct ls_paxscan *s)
{
	const unsigned char *h = s->hdr;
	int64_t size;
	int i;

	if (s->ext) { /* old GNU sparse: extension blocks until one says stop */
		s->ext = h[504] != 0;
		if (!s->ext)
			s->skip = s->after_ext;
		return;
	}
	for (i = 0; i < 512 && h[i] == 0; i++)
		;
	if (i == 512)
		return; /* an end-of-archive block */
	size = number(h + 124, 12);
	if (!checksum_ok(h) || size < 0) {
		s->stopped = 1;
		return;
	}
	s->skip = ((uint64_t)size + 511) & ~(uint64_t)511;
	if (h[156] == 'S' && h[482] != 0) {
		s->ext = 1;
		s->after_ext = s->skip;
		s->skip = 0;
	}
	if ((h[156] == 'x' || h[156] == 'g') && (uint64_t)size <= PAX_MAX && size > 0) {
		s->pax = malloc((size_t)size);
		s->pax_size = (uint64_t)size;
		s->pax_len = 0;
		if (s->pax == NULL)
			s->stopped = 1;
	}
}

void ls_paxscan_feed(struct ls_paxscan *s, const unsigned char *p, size_t len)
{
	while (len > 0 && !s->stopped) {
		if (s->skip > 0) {
			size_t k = s->skip < len ? (size_t)s->skip : len;

			if (s->pax != NULL && s->pax_len < s->pax_size) {
				size_t want = (size_t)(s->pax_size - s->pax_len);

				memcpy(s->pax + s->pax_len, p, want < k ? want : k);
				s->pax_len += want < k ? want : k;
			}
			s->skip -= k;
			p += k;
			len -= k;
			if (s->skip == 0 && s->pax != NULL) {
				check_records(s);
				free(s->pax);
				s->pax = NULL;
			}
			continue;
		}
		size_t k = 512 - s->got < len ? 512 - s->got : len;

		memcpy(s->hdr + s->got, p, k);
		s->got += k;
		p += k;
		len -= k;
		if (s->got == 512) {
			s->got = 0;
			header(s);
		}
	}
}

void ls_paxscan_free(struct ls_paxscan *s)
{
	free(s->pax);
	s->pax = NULL;
}
