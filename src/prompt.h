/* prompt.h: the REPL's input, standard input read a line at a time: with
 * libedit on a terminal (line editing, history) when built in, else fgets.
 * A Ctrl-C (ls_prompt_interrupted) or another signal stops a read. */
#ifndef LS_PROMPT_H
#define LS_PROMPT_H

#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <lua.h>

#ifdef LS_HAVE_LIBEDIT
#include <histedit.h>
#endif

/* What ls_prompt_read returns; apart from lua_load's codes, which are >= 0. */
enum { LS_PROMPT_EOF = -2, LS_PROMPT_INTERRUPTED = -1, LS_PROMPT_LINE = 1 };

/* Set by the REPL's SIGINT handler while a line is read: the read stops. */
extern volatile sig_atomic_t ls_prompt_interrupted;

struct ls_prompt {
	int interactive;             /* stdin is a terminal: prompts shown */
	const char *text;            /* the prompt being shown */
#ifdef LS_HAVE_LIBEDIT
	EditLine *el;                /* NULL: fgets */
	History *hist;
	char ahead[MB_LEN_MAX];      /* typed after a Ctrl-C: the next line's */
	size_t ahead_len;
	const char *history_path;    /* kept alive by the caller */
	int history_warned;
#endif
};

/* Sets p up for standard input (p zeroed by the caller).  libedit is used
 * when stdin and stdout are terminals; if it fails, fgets is. */
void ls_prompt_open(struct ls_prompt *p, const char *history_path);
/* Shows prompt (on a terminal) and pushes the next line without its
 * newline: LS_PROMPT_LINE; LS_PROMPT_EOF or LS_PROMPT_INTERRUPTED push
 * nothing. */
int ls_prompt_read(lua_State *L, struct ls_prompt *p, const char *prompt);
/* Adds a statement to the history and saves the history file, if any. */
void ls_prompt_remember(struct ls_prompt *p, const char *statement);
/* Frees libedit's state; may be called again. */
void ls_prompt_close(struct ls_prompt *p);

#endif
