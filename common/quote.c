/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* quote: bytes as a terminal or log shows them (quote.h). */
#include "quote.h"

size_t quote_byte(char *out, unsigned char ch)
{
        static const char hex[] = "0123456789abcdef";

        if (ch >= 0x20 && ch < 0x7f) {
                out[0] = (char)ch;
                out[1] = '\0';
                return 1;
        }
        out[0] = '\\';
        out[1] = 'x';
        out[2] = hex[ch >> 4];
        out[3] = hex[ch & 0xf];
        out[4] = '\0';
        return 4;
}
