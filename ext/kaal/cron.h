/* kaal: cron expressions as bitsets; next/previous by jumping field by field.
 * Pure C99, no allocation: a parsed expression is a fixed-size struct. The
 * dialect and the DST rules are described in docs/cron.md. Decisions taken
 * here:
 *  - Trailing zone: with 7 tokens the last one is the zone; with 6 tokens the
 *    last one is a zone when it starts with a letter and either has a '/'
 *    followed by a letter or is not a valid day-of-week field ("0 0 * * * MON"
 *    is six fields, "0 0 * * * UTC" is five fields plus a zone). The zone is
 *    only stored here; kaal_tz_load reports an unknown one.
 *  - Steps run 1..field size (1-60 for minutes, 1-24 hours, 1-31 days, 1-12
 *    months, 1-8 weekdays); larger or 0 is a syntax error. `SUN-SUN` is
 *    Sunday only; a numeric range ending in 0 is descending (write 7 or SUN).
 *  - The DST-gap rule applies to every missing wall time, whole skipped days
 *    included: `0 9 30 12 *` in Pacific/Apia fires 2011-12-31T09:00+14:00
 *    (wall 2011-12-30 09:00 taken with the offset before the jump).
 *  - Messages name the field and quote the whole list item at fault; offset
 *    is the byte offset of that item in the input. */
#ifndef KAAL_CRON_H
#define KAAL_CRON_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "tz.h"

enum {
    KAAL_CRON_HAS_SECONDS = 1 << 0, /* 6-field form */
    KAAL_CRON_DOM_STAR = 1 << 1,    /* day of month starts with '*' or '?' */
    KAAL_CRON_DOW_STAR = 1 << 2,    /* day of week starts with '*' or '?' */
    KAAL_CRON_FIXED_TIME = 1 << 3   /* minute and hour both fixed: fire once in a DST overlap */
};

typedef struct kaal_cron {
    uint64_t seconds;       /* bits 0..59 */
    uint64_t minutes;       /* bits 0..59 */
    uint32_t hours;         /* bits 0..23 */
    uint32_t days;          /* bits 1..31: plain day-of-month values */
    uint32_t last_offsets;  /* bit n: L-n (bit 0 is plain L) */
    uint32_t near_weekday;  /* bit n: nW */
    uint16_t months;        /* bits 1..12 */
    uint8_t weekdays;       /* bits 0..6, Sunday = 0: plain day-of-week values */
    uint8_t last_dow;       /* bit d: dL, last weekday d of the month */
    uint8_t nth_dow[7];     /* nth_dow[d] bit k (1..5): d#k */
    uint8_t last_weekday;   /* LW */
    uint8_t flags;          /* KAAL_CRON_* */
    char zone[64];          /* trailing IANA zone name, "" when absent */
} kaal_cron;

/* Parse expr (len bytes, need not be NUL-terminated). On error fills err with
 * KAAL_ESYNTAX (field = "second"/"minute"/"hour"/"day of month"/"month"/
 * "day of week"/"expression", offset = token offset, message naming the token)
 * or KAAL_ENEVER for an expression that can never fire. The trailing zone name
 * is stored, not loaded: the caller loads it with kaal_tz_load. */
int kaal_cron_parse(const char *expr, size_t len, kaal_cron *out, kaal_error *err);

/* First fire time strictly after `from` (Unix seconds) in zone tz.
 * KAAL_ERANGE past year 9999. */
int kaal_cron_next(const kaal_cron *c, const kaal_tz *tz, int64_t from, int64_t *out,
                   kaal_error *err);

/* Last fire time strictly before `from`. KAAL_ERANGE before year 1. */
int kaal_cron_prev(const kaal_cron *c, const kaal_tz *tz, int64_t from, int64_t *out,
                   kaal_error *err);

/* 1 when t is a fire time of c in tz (the same instants next/prev produce). */
int kaal_cron_match(const kaal_cron *c, const kaal_tz *tz, int64_t t);

#endif
