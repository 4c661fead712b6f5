/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* log: the daemon's log lines on stderr, journal-aware, with a level threshold. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "quote.h"

static enum log_level log_threshold = LOG_LEVEL_INFO;
static bool log_journal;

static const char *const log_names[] = {
        [LOG_LEVEL_ERROR] = "error",   [LOG_LEVEL_WARNING] = "warning", [LOG_LEVEL_NOTICE] = "notice",
        [LOG_LEVEL_INFO] = "info",     [LOG_LEVEL_DEBUG] = "debug",
};

/*
 * systemd sets $JOURNAL_STREAM to "DEV:INO" of the stream it connected to stderr; a shell started from such a
 * service inherits the variable with a terminal on stderr, so the prefix goes only where the numbers still match
 * (sd-daemon(3), systemd.exec(5)).
 */
void log_init(void)
{
        const char *js = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;
        int n = 0;

        log_journal = js && sscanf(js, "%llu:%llu%n", &dev, &ino, &n) == 2 && js[n] == '\0' &&
                      fstat(STDERR_FILENO, &st) == 0 && (unsigned long long)st.st_dev == dev &&
                      (unsigned long long)st.st_ino == ino;
}

void log_set_level(enum log_level level)
{
        log_threshold = level;
}

enum log_level log_get_level(void)
{
        return log_threshold;
}

bool log_enabled(enum log_level level)
{
        return level <= log_threshold;
}

int log_level_from_name(const char *name)
{
        if (!name)
                return -EINVAL;
        for (int l = LOG_LEVEL_ERROR; l <= LOG_LEVEL_DEBUG; l++)
                if (strcmp(name, log_names[l]) == 0 || (name[0] == '0' + l && name[1] == '\0'))
                        return l;
        return -EINVAL;
}

/* the longest line log_message() writes, and the piece of a longer one log_stderr_error() escapes at a time */
#define LOG_LINE_MAX 2048

/* Return: whether @s holds a control byte (below 0x20, or 0x7f); the common case, none, costs this one pass. */
static bool log_needs_escape(const char *s)
{
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        return true;
        return false;
}

/* @len bytes of @in, a control byte as "\xHH" (quote_byte()), into @out (4 * @len + 1 bytes). Return: @out. */
static char *log_escape(char *out, const char *in, size_t len)
{
        char *o = out;

        for (size_t i = 0; i < len; i++) {
                unsigned char ch = (unsigned char)in[i];

                if (ch < 0x20 || ch == 0x7f)
                        o += quote_byte(o, ch);
                else
                        *o++ = (char)ch;
        }
        *o = '\0';
        return out;
}

/*
 * Write @prefix, @line and a newline, a control byte of @line escaped: one log call is one line, as a newline in
 * an argument or a file's name would start another, which could carry a forged "<N>" priority for the journal.
 * Other bytes (UTF-8 names among them) are kept. A line of up to LOG_LINE_MAX bytes is one fprintf (one write to
 * the unbuffered stderr), so that lines from the daemon's processes do not interleave. Return: nothing.
 */
static void log_write_line(const char *prefix, const char *line)
{
        char escaped[4 * LOG_LINE_MAX + 1];
        size_t len;

        if (!log_needs_escape(line)) {
                fprintf(stderr, "%s%s\n", prefix, line);
                return;
        }
        len = strlen(line);
        if (len <= LOG_LINE_MAX) {
                fprintf(stderr, "%s%s\n", prefix, log_escape(escaped, line, len));
                return;
        }
        /* longer: an error quoting a long argument, at a start or a check (one process), whole, in pieces */
        flockfile(stderr);
        fputs(prefix, stderr);
        for (size_t off = 0; off < len; off += LOG_LINE_MAX)
                fputs(log_escape(escaped, line + off, len - off < LOG_LINE_MAX ? len - off : LOG_LINE_MAX), stderr);
        fputc('\n', stderr);
        funlockfile(stderr);
}

/*
 * @s (@len bytes) was cut at the line's bound: drop a UTF-8 sequence the cut left incomplete, which would make the
 * whole line invalid UTF-8 (the journal then keeps it as a blob: "[N B blob data]"). Return: nothing.
 */
static void log_cut_utf8(char *s, size_t len)
{
        size_t i = len, need;
        unsigned char lead;

        while (i > 0 && len - i < 3 && ((unsigned char)s[i - 1] & 0xc0) == 0x80)
                i--;
        if (i == 0)
                return;
        lead = (unsigned char)s[i - 1];
        need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
        if (lead >= 0xc0 && len - (i - 1) < need)
                s[i - 1] = '\0';
}

void log_message(enum log_level level, const char *fmt, ...)
{
        char line[LOG_LINE_MAX], prefix[32];
        int saved = errno;
        va_list ap;

        if (!log_enabled(level))
                return;
        va_start(ap, fmt);
        if (vsnprintf(line, sizeof(line), fmt, ap) >= (int)sizeof(line))
                log_cut_utf8(line, sizeof(line) - 1);
        va_end(ap);
        if (log_journal)
                snprintf(prefix, sizeof(prefix), "<%d>", (int)level);
        else
                snprintf(prefix, sizeof(prefix), "iomemd: %s: ", log_names[level]);
        log_write_line(prefix, line);
        errno = saved;
}

void log_stderr_error(const char *fmt, ...)
{
        char *line = NULL, cut[LOG_LINE_MAX];
        int saved = errno;
        va_list ap, aq;

        /* whole, however long the argument it quotes; out of memory, cut rather than lost */
        va_start(ap, fmt);
        va_copy(aq, ap);
        if (vasprintf(&line, fmt, ap) < 0) {
                line = NULL;
                vsnprintf(cut, sizeof(cut), fmt, aq);
        }
        va_end(aq);
        va_end(ap);
        log_write_line(log_journal ? "<3>iomemd: " : "iomemd: ", line ? line : cut);
        free(line);
        errno = saved;
}
