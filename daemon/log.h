/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* log: the daemon's log lines on stderr, journal-aware, with a level threshold. */
#pragma once

#include <stdbool.h>

/* syslog priorities, as sd-daemon(3) prefixes use them */
enum log_level {
        LOG_LEVEL_ERROR = 3,
        LOG_LEVEL_WARNING = 4,
        LOG_LEVEL_NOTICE = 5,
        LOG_LEVEL_INFO = 6,
        LOG_LEVEL_DEBUG = 7,
};

/*
 * log_init() - pick the line format: "<N>" prefixes when stderr is the journal
 * ($JOURNAL_STREAM names stderr's device and inode), "iomemd: <level>: " otherwise.
 * Return: nothing.
 */
void log_init(void);

/* log_set_level() - drop messages less important than @level. Return: nothing. */
void log_set_level(enum log_level level);

/* Return: the current threshold. */
enum log_level log_get_level(void);

/* Return: true if a message at @level would be written. */
bool log_enabled(enum log_level level);

/* Return: the level for "error".."debug" or "3".."7", or -EINVAL. */
int log_level_from_name(const char *name);

/*
 * log_message() - write one line at @level (a newline is added); errno is preserved.
 * Return: nothing.
 */
void log_message(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_message(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warning(...) log_message(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_notice(...) log_message(LOG_LEVEL_NOTICE, __VA_ARGS__)
/* info and debug lines sit on hot paths: their arguments (strerror...) are only evaluated if written */
#define log_info(...)                                              \
        do {                                                       \
                if (log_enabled(LOG_LEVEL_INFO))                   \
                        log_message(LOG_LEVEL_INFO, __VA_ARGS__);  \
        } while (0)
#define log_debug(...)                                             \
        do {                                                       \
                if (log_enabled(LOG_LEVEL_DEBUG))                  \
                        log_message(LOG_LEVEL_DEBUG, __VA_ARGS__); \
        } while (0)

/*
 * log_stderr_error() - write "iomemd: <text>" (a newline is added) for whoever ran the command: a usage or
 * configuration error of a start or of --check-config, at err priority ("<3>" first) when stderr is the journal
 * (systemd's ExecReload=), bare on a terminal. Not subject to the threshold; errno is preserved.
 * Return: nothing.
 */
void log_stderr_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
