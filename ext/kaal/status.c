#include "status.h"

#include <stdarg.h>
#include <stdio.h>

int kaal_error_set(kaal_error *err, kaal_status code, const char *field, int offset,
                   const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        err->field = field;
        err->offset = offset;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
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
