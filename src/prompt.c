/* prompt.c: the REPL's lines, from libedit on a terminal or from fgets. */
#include <errno.h>
#include <locale.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <wchar.h>

#include <lauxlib.h>

#include "prompt.h"
#include "sink.h"

#define HISTORY_SIZE 1000

volatile sig_atomic_t ls_prompt_interrupted;

/* A signal stops the read: Ctrl-C at the prompt, or one that ends the run. */
static int stopped(void)
{
	return ls_prompt_interrupted || ls_interrupted;
}

#ifdef LS_HAVE_LIBEDIT
static char *edit_prompt(EditLine *el)
{
	struct ls_prompt *p = NULL;

	if (el_get(el, EL_CLIENTDATA, &p) != 0 || p == NULL || p->text == NULL)
		return (char *)"";
	return (char *)p->text;
}

/* libedit's own reader retries a read that a signal interrupted; this one
 * gives up at once, so Ctrl-C at the prompt discards the line. */
static int edit_getc(EditLine *el, wchar_t *wc)
{
	struct ls_prompt *p = NULL;
	char buf[MB_LEN_MAX];
	size_t n = 0, used;
	mbstate_t mbs;
	ssize_t got;

	if (stopped() || el_get(el, EL_CLIENTDATA, &p) != 0 || p == NULL)
		return -1;
	for (;;) {
		if (p->ahead_len > 0) {
			buf[n] = p->ahead[0];
			memmove(p->ahead, p->ahead + 1, --p->ahead_len);
			got = 1;
		} else {
			got = read(STDIN_FILENO, buf + n, 1);
		}
		if (got < 0 && errno == EINTR && !stopped())
			continue;
		if (got <= 0)
			return got < 0 ? -1 : 0;
		n++;
		if (ls_prompt_interrupted) {
			/* The read returned what was typed after the Ctrl-C. */
			memcpy(p->ahead, buf, n);
			p->ahead_len = n;
			return -1;
		}
		memset(&mbs, 0, sizeof mbs);
		used = mbrtowc(wc, buf, n, &mbs);
		if (used == (size_t)-2 && n < sizeof buf)
			continue;
		if (used == (size_t)-1 || used == (size_t)-2)
			*wc = (unsigned char)buf[0]; /* not in the locale's encoding */
		return 1;
	}
}

static void open_editor(struct ls_prompt *p, const char *history_path)
{
	HistEvent ev;
	const char *locale;

	/* libedit decodes what is typed in the locale's character set, and in
	 * "C" drops every non-ASCII byte: without a locale, assume UTF-8. */
	locale = setlocale(LC_CTYPE, "");
	if (locale == NULL || strcmp(locale, "C") == 0 || strcmp(locale, "POSIX") == 0)
		(void)setlocale(LC_CTYPE, "C.UTF-8"); /* unchanged if absent */
	if ((p->hist = history_init()) == NULL ||
	    (p->el = el_init("layersplit", stdin, stdout, stderr)) == NULL ||
	    history(p->hist, &ev, H_SETSIZE, HISTORY_SIZE) < 0 ||
	    history(p->hist, &ev, H_SETUNIQUE, 1) < 0 ||
	    el_set(p->el, EL_CLIENTDATA, p) != 0 ||
	    el_set(p->el, EL_PROMPT, edit_prompt) != 0 ||
	    el_set(p->el, EL_EDITOR, "emacs") != 0 ||
	    el_set(p->el, EL_HIST, history, p->hist) != 0 ||
	    el_set(p->el, EL_GETCFN, edit_getc) != 0) {
		ls_prompt_close(p);
		return;
	}
	/* Both are optional: a missing ~/.editrc or first session's history. */
	(void)el_source(p->el, NULL);
	if (history_path != NULL) {
		p->history_path = history_path;
		(void)history(p->hist, &ev, H_LOAD, history_path);
	}
}

static int read_edit(lua_State *L, struct ls_prompt *p)
{
	int count = 0;
	const char *line = el_gets(p->el, &count);
	size_t len;

	if (line == NULL || count <= 0)
		return count < 0 && stopped() ? LS_PROMPT_INTERRUPTED : LS_PROMPT_EOF;
	len = strlen(line);
	if (len > 0 && line[len - 1] == '\n')
		len--;
	lua_pushlstring(L, line, len);
	return LS_PROMPT_LINE;
}
#endif

void ls_prompt_open(struct ls_prompt *p, const char *history_path)
{
	p->interactive = isatty(STDIN_FILENO);
#ifdef LS_HAVE_LIBEDIT
	if (p->interactive && isatty(STDOUT_FILENO))
		open_editor(p, history_path);
#else
	(void)history_path;
#endif
}

void ls_prompt_close(struct ls_prompt *p)
{
#ifdef LS_HAVE_LIBEDIT
	if (p->el != NULL) {
		el_end(p->el);
		p->el = NULL;
	}
	if (p->hist != NULL) {
		history_end(p->hist);
		p->hist = NULL;
	}
#else
	(void)p;
#endif
}

/* Saved at once: a session that is killed keeps what was typed. */
void ls_prompt_remember(struct ls_prompt *p, const char *statement)
{
#ifdef LS_HAVE_LIBEDIT
	HistEvent ev;

	if (p->hist == NULL || statement[0] == '\0' ||
	    history(p->hist, &ev, H_ENTER, statement) < 0 || p->history_path == NULL)
		return;
	if (history(p->hist, &ev, H_SAVE, p->history_path) < 0 && !p->history_warned) {
		p->history_warned = 1;
		fprintf(stderr, "layersplit: %s: cannot save the history\n",
			p->history_path);
	}
#else
	(void)p;
	(void)statement;
#endif
}

static int read_plain(lua_State *L, struct ls_prompt *p)
{
	luaL_Buffer b;
	size_t total = 0, n;
	int result = LS_PROMPT_LINE, err;
	char *s;

	if (p->interactive) {
		fputs(p->text, stdout);
		fflush(stdout);
	}
	luaL_buffinit(L, &b);
	for (;;) {
		s = luaL_prepbuffer(&b);
		if (fgets(s, LUAL_BUFFERSIZE, stdin) == NULL) {
			if (ferror(stdin)) {
				err = errno;
				clearerr(stdin);
				if (err == EINTR && !stopped())
					continue;
				result = err == EINTR ? LS_PROMPT_INTERRUPTED : LS_PROMPT_EOF;
			} else if (total == 0) {
				result = LS_PROMPT_EOF;
			}
			break;
		}
		n = strlen(s);
		luaL_addsize(&b, n);
		total += n;
		if (n > 0 && s[n - 1] == '\n') {
			luaL_buffsub(&b, 1);
			break;
		}
	}
	luaL_pushresult(&b);
	if (result != LS_PROMPT_LINE)
		lua_pop(L, 1);
	return result;
}

int ls_prompt_read(lua_State *L, struct ls_prompt *p, const char *prompt)
{
	p->text = prompt;
#ifdef LS_HAVE_LIBEDIT
	if (p->el != NULL)
		return read_edit(L, p);
#endif
	return read_plain(L, p);
}
