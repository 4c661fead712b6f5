/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* parse: sizes, modes and seal names as people write them (CLI, config file, libiomem). */
#pragma once

#include <stddef.h>
#include <stdint.h>

/*
 * parse_u64() - a plain decimal number: digits only, no sign or space.
 * @endp: NULL = nothing may follow; else receives where the digits end.
 * Return: 0 with *np; -EINVAL; -ERANGE on overflow.
 */
int parse_u64(const char *s, uint64_t *np, char **endp);

/*
 * parse_size() - "4096", "4K", "64G", "1T" (powers of 1024; "KiB" and "KB"
 * spellings accepted). No sign, no space, no empty string.
 * Return: 0 with *sizep; -EINVAL; -ERANGE on overflow.
 */
int parse_size(const char *s, uint64_t *sizep);

/*
 * parse_size_format() - @size in the largest K/M/G/T unit that divides it
 * exactly ("64G", "4K", "1000"), the form parse_size() reads back.
 * Return: @buf.
 */
const char *parse_size_format(uint64_t size, char *buf, size_t bufsize);

/* Return: 0 with *modep; -EINVAL unless @s is octal 0..0777 with no sign or space. */
int parse_mode(const char *s, uint32_t *modep);

/*
 * parse_seals() - seal bits (PROTO_SEAL_*) from a list such as "shrink,grow"
 * or "seal write" (names case-insensitive; "future_write" accepted; "" = 0).
 * *sealsp is only written on success.
 * Return: 0; -EINVAL for NULL or an unknown name.
 */
int parse_seals(const char *text, uint32_t *sealsp);

/* Return: the name of one seal bit ("shrink"...), or NULL for a bit without one. */
const char *parse_seal_name(uint32_t bit);

/* The seal names as a list for messages: "seal, shrink, grow, write, future-write". */
#define PARSE_SEAL_NAMES "seal, shrink, grow, write, future-write"
