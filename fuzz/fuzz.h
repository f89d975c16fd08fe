/* kaal fuzz targets: shared checks. Each target is a libFuzzer entry point
 * (LLVMFuzzerTestOneInput) built by bin/fuzz with address and undefined
 * sanitizers; a broken invariant calls fuzz_fail, which aborts so libFuzzer
 * saves the input as a crash. */
#ifndef KAAL_FUZZ_H
#define KAAL_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cron.h"
#include "tz.h"

#define FUZZ_CHECK(cond, ...)                                          \
    do {                                                               \
        if (!(cond)) {                                                 \
            fprintf(stderr, "fuzz invariant broken (%s:%d): ", __FILE__, \
                    __LINE__);                                         \
            fprintf(stderr, __VA_ARGS__);                              \
            fprintf(stderr, "\n");                                     \
            abort();                                                   \
        }                                                              \
    } while (0)

/* A parse error: a message, an offset inside the input (or -1), and text
 * that stays valid UTF-8 when the input was (it quotes the input). */
static inline void fuzz_check_error(const kaal_error *err, const uint8_t *in, size_t n)
{
    size_t len = strnlen(err->message, sizeof err->message);
    FUZZ_CHECK(len > 0 && len < sizeof err->message, "error message empty or unterminated");
    FUZZ_CHECK(err->offset >= -1 && err->offset <= (long)n, "error offset %d outside input of %zu",
               err->offset, n);
    if (kaal_utf8_chars((const char *)in, n) >= 0) {
        FUZZ_CHECK(kaal_utf8_chars(err->message, len) >= 0,
                   "message of UTF-8 input is not UTF-8: %s", err->message);
    }
}

/* Instants every zone and expression is probed at: the epoch, a leap day,
 * both 2024 DST changes in Europe and the US, the 2038 boundary, a footer
 * year far out, and both ends of the supported range. */
static const int64_t FUZZ_INSTANTS[] = {
    0,
    951782400,           /* 2000-02-29 */
    1710054000,          /* 2024-03-10T07:00Z */
    1711846800,          /* 2024-03-31T01:00Z */
    1730595600,          /* 2024-11-03T01:00Z */
    2147483647,          /* 2038-01-19 */
    16725225600,         /* 2500-01-01 */
    -62135596800LL + 5,  /* 0001-01-01 */
    253402300799LL - 5,  /* 9999-12-31 */
};
#define FUZZ_N_INSTANTS (sizeof FUZZ_INSTANTS / sizeof FUZZ_INSTANTS[0])

/* The zone's own answers agree with each other around instant t: the span
 * holding t holds its offset, and every instant local_to_utc gives for a
 * wall time maps back to that wall time. `strict`: also t is among the
 * instants of its own wall time (true when offset changes are days apart,
 * as in every real zone; a fuzzed zone with changes seconds apart can give
 * one wall time more than the two instants local_to_utc reports). */
static inline void fuzz_check_zone_at(const kaal_tz *tz, int64_t t, int strict)
{
    kaal_tz_span span;
    int64_t out[2], local;
    int32_t off = kaal_tz_offset_at(tz, t);
    int n, i;

    kaal_tz_span_at(tz, t, &span);
    FUZZ_CHECK(span.start <= t && t < span.end, "span [%lld, %lld) misses %lld",
               (long long)span.start, (long long)span.end, (long long)t);
    FUZZ_CHECK(span.off == off, "span offset %d, offset_at %d at %lld", span.off, off,
               (long long)t);
    local = t + off;
    n = kaal_tz_local_to_utc(tz, local, out);
    FUZZ_CHECK(n >= (strict ? 1 : 0) && n <= 2, "wall time of an instant has %d instants", n);
    for (i = 0; i < n; i++) {
        FUZZ_CHECK(out[i] + kaal_tz_offset_at(tz, out[i]) == local,
                   "instant %lld does not show wall time %lld", (long long)out[i],
                   (long long)local);
    }
    if (strict) {
        FUZZ_CHECK(out[0] == t || (n == 2 && out[1] == t), "instant %lld lost in its wall time",
                   (long long)t);
    }
}

/* next/prev/match agree: next is after `from` and a fire time, nothing fires
 * in between (prev of next is at or before from, next of that prev is next),
 * and the same the other way round. Up to `steps` fire times each way. */
static inline void fuzz_check_cron(const kaal_cron *c, const kaal_tz *tz, int64_t from, int steps)
{
    kaal_error err;
    int64_t t = from, n, p, back;
    int i;

    for (i = 0; i < steps; i++) {
        if (kaal_cron_next(c, tz, t, &n, &err) != KAAL_OK) break;
        FUZZ_CHECK(n > t, "next %lld not after %lld", (long long)n, (long long)t);
        FUZZ_CHECK(kaal_cron_match(c, tz, n), "next %lld does not match", (long long)n);
        if (kaal_cron_prev(c, tz, n, &back, &err) == KAAL_OK) {
            FUZZ_CHECK(back <= t, "prev of next %lld is %lld, after %lld", (long long)n,
                       (long long)back, (long long)t);
        }
        t = n;
    }
    t = from;
    for (i = 0; i < steps; i++) {
        if (kaal_cron_prev(c, tz, t, &p, &err) != KAAL_OK) break;
        FUZZ_CHECK(p < t, "prev %lld not before %lld", (long long)p, (long long)t);
        FUZZ_CHECK(kaal_cron_match(c, tz, p), "prev %lld does not match", (long long)p);
        if (kaal_cron_next(c, tz, p, &back, &err) == KAAL_OK) {
            FUZZ_CHECK(back >= t, "next of prev %lld is %lld, before %lld",
                       (long long)p, (long long)back, (long long)t);
        }
        t = p;
    }
}

#endif
