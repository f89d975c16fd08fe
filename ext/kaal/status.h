/* kaal: status codes and the error struct shared by every pure C module.
 * No ruby.h here: the binding (kaal_ext.c) turns a kaal_error into a Ruby
 * exception in one place (kaal_raise). */
#ifndef KAAL_STATUS_H
#define KAAL_STATUS_H

#include <stddef.h>
#include <stdint.h>

typedef enum kaal_status {
    KAAL_OK = 0,
    KAAL_ESYNTAX,      /* bad cron expression                        -> Kaal::CronSyntaxError */
    KAAL_EZONE,        /* unknown or unreadable time zone           -> Kaal::CronSyntaxError */
    KAAL_ENEVER,       /* cron expression can never fire            -> Kaal::CronSyntaxError */
    KAAL_ERANGE,       /* instant outside the supported range       -> ArgumentError */
    KAAL_ENOMEM,       /* allocation failed                         -> NoMemoryError */
    KAAL_EARG,         /* bad argument to a primitive               -> ArgumentError */
    KAAL_ECONNECT,     /* cannot reach / lost the backend           -> Kaal::ConnectionError */
    KAAL_EBACKEND,     /* backend answered with an error            -> Kaal::BackendError */
    KAAL_EDUPLICATE,   /* unique id already pending                 -> Kaal::DuplicateJobError */
    KAAL_EUNAVAILABLE, /* backend not compiled into this build      -> Kaal::BackendUnavailableError */
    KAAL_ECONFIG,      /* bad connection parameters                 -> Kaal::ConfigurationError */
    KAAL_EINTERRUPTED  /* a blocking wait was interrupted by Ruby   -> (interrupt is re-checked) */
} kaal_status;

/* message: NUL-terminated human text, never containing a password.
 * field: static name of the cron field or config parameter at fault, or NULL.
 * offset: byte offset of the offending token in the input, or -1. */
typedef struct kaal_error {
    kaal_status code;
    const char *field;
    int offset;
    char message[256];
} kaal_error;

/* Fill err (if not NULL) with code and a printf-style message; returns code. */
int kaal_error_set(kaal_error *err, kaal_status code, const char *field, int offset,
                   const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

void kaal_error_clear(kaal_error *err);

/* The longest prefix of s[0, n) of at most max bytes that does not end inside
 * a UTF-8 character (a cut never splits one; bytes that are not UTF-8 are
 * taken as single characters). */
size_t kaal_utf8_clip(const char *s, size_t n, size_t max);

#endif
