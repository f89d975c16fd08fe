#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

size_t kaal_utf8_clip(const char *s, size_t n, size_t max)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i, need;
    if (n <= max) return n;
    if (max == 0) return 0;
    /* Only bytes before the cut are read: find the lead byte of the last
     * character kept and leave it out when its sequence runs past the cut. */
    i = max - 1;
    while (i > 0 && max - i < 4 && (u[i] & 0xC0) == 0x80)
        i--;
    if (u[i] < 0xC0 || u[i] > 0xF7) return max; /* ASCII, or not a lead byte */
    need = (u[i] & 0xE0) == 0xC0 ? 2 : (u[i] & 0xF0) == 0xE0 ? 3 : 4;
    return i + need > max ? i : max;
}

int kaal_error_set(kaal_error *err, kaal_status code, const char *field, int offset,
                   const char *fmt, ...)
{
    if (err) {
        va_list ap;
        int full;
        err->code = code;
        err->field = field;
        err->offset = offset;
        va_start(ap, fmt);
        full = vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        if (full < 0) {
            err->message[0] = '\0';
        } else if ((size_t)full >= sizeof err->message) {
            /* Cut short: drop a character the cut split in two. */
            size_t kept = strlen(err->message);
            err->message[kaal_utf8_clip(err->message, (size_t)full, kept)] = '\0';
        }
    }
    return (int)code;
}

void kaal_error_clear(kaal_error *err)
{
    if (err) {
        err->code = KAAL_OK;
        err->field = NULL;
        err->offset = -1;
        err->message[0] = '\0';
    }
}
