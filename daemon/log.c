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

void log_message(enum log_level level, const char *fmt, ...)
{
        char line[2048];
        int saved = errno;
        va_list ap;

        if (!log_enabled(level))
                return;
        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        /* one fprintf per line so lines from a single process do not interleave */
        if (log_journal)
                fprintf(stderr, "<%d>%s\n", (int)level, line);
        else
                fprintf(stderr, "iomemd: %s: %s\n", log_names[level], line);
        errno = saved;
}

void log_stderr_error(const char *fmt, ...)
{
        int saved = errno;
        va_list ap;

        /* whole, however long the argument it quotes (no line buffer to cut it) */
        flockfile(stderr);
        fputs(log_journal ? "<3>iomemd: " : "iomemd: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        funlockfile(stderr);
        errno = saved;
}
