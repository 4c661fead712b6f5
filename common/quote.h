/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* quote: bytes from elsewhere (a region name, a config value, a daemon's message) as a terminal or log shows them. */
#pragma once

#include <stddef.h>

/* What quote_byte() writes at most, with its NUL: "\xHH". */
#define QUOTE_BYTE_MAX 5

/*
 * quote_byte() - byte @ch as text that cannot act on a terminal: printable ASCII (0x20 to 0x7e) as itself, every
 * other byte (a control character, an escape sequence's ESC, a byte of a non-ASCII or broken UTF-8 character,
 * among them the C1 controls such as 0x9b, CSI) as "\xHH" (lower-case hex). Valid region names are printable
 * ASCII, so they show unchanged.
 * @out: QUOTE_BYTE_MAX bytes, NUL-terminated.
 * Return: the length written (1 or 4).
 */
size_t quote_byte(char *out, unsigned char ch);
