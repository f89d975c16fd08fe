/* kaal C unit tests: a tiny check/report layer and ISO 8601 helpers.
 * Each test_*.c includes this once and ends main() with KT_DONE(). */
#ifndef KAAL_KTEST_H
#define KAAL_KTEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "civil.h"

static int kt_checks, kt_failures;

#define KT_CHECK(cond, ...)                                                                  \
    do {                                                                                     \
        kt_checks++;                                                                         \
        if (!(cond)) {                                                                       \
            kt_failures++;                                                                   \
            if (kt_failures <= 60) {                                                         \
                fprintf(stderr, "%s:%d: FAILED: ", __FILE__, __LINE__);                      \
                fprintf(stderr, __VA_ARGS__);                                                \
                fputc('\n', stderr);                                                         \
            }                                                                                \
        }                                                                                    \
    } while (0)

#define KT_DONE()                                                                            \
    do {                                                                                     \
        printf("%s: %d checks, %d failures\n", __FILE__, kt_checks, kt_failures);            \
        return kt_failures ? 1 : 0;                                                          \
    } while (0)

/* "2026-03-08T03:30:00-04:00" / "...Z" / "2026-03-08T03:30:00" (UTC) -> Unix seconds.
 * Aborts on a malformed literal (a bug in the test table). */
static inline int64_t kt_iso(const char *s)
{
    int y, mo, d, H, M, S, n = 0, oh = 0, om = 0;
    char sign = 0;
    int64_t t;
    if (sscanf(s, "%d-%d-%dT%d:%d:%d%n", &y, &mo, &d, &H, &M, &S, &n) != 6) {
        fprintf(stderr, "bad ISO literal %s\n", s);
        abort();
    }
    t = kaal_days_from_civil(y, mo, d) * KAAL_DAY + H * 3600 + M * 60 + S;
    s += n;
    if (*s == '+' || *s == '-') {
        sign = *s;
        if (sscanf(s + 1, "%d:%d", &oh, &om) != 2) {
            fprintf(stderr, "bad ISO offset %s\n", s);
            abort();
        }
        t -= (sign == '-' ? -1 : 1) * (oh * 3600 + om * 60);
    }
    return t;
}

/* Unix seconds + offset -> "YYYY-MM-DDTHH:MM:SS+HH:MM" in buf (>= 40 bytes). */
static inline const char *kt_fmt(char *buf, int64_t t, int32_t off)
{
    int64_t w = t + off, days = kaal_floor_div(w, KAAL_DAY), y;
    int sod = (int)(w - days * KAAL_DAY), m, d, a = off < 0 ? -off : off;
    kaal_civil_from_days(days, &y, &m, &d);
    snprintf(buf, 40, "%04lld-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", (long long)y, m % 100,
             d % 100, sod / 3600 % 100, sod / 60 % 60, sod % 60, off < 0 ? '-' : '+',
             a / 3600 % 100, a / 60 % 60);
    return buf;
}

#endif
