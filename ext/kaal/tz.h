/* kaal: time zones from the system TZif database (no TZ/tzset/localtime).
 * Owned by the cron/tz module. Instants are Unix seconds (int64). "Local
 * seconds" are the wall clock of the zone counted as if it were UTC
 * (local = t + offset(t)). */
#ifndef KAAL_TZ_H
#define KAAL_TZ_H

#include <stdint.h>

#include "status.h"

typedef struct kaal_tz kaal_tz;

/* Load (once, then cached for the life of the process; thread-safe) the zone
 * `name` from $TZDIR or /usr/share/zoneinfo. "UTC", "Etc/UTC" always work.
 * Rejects names with "..", a leading '/', or characters outside [A-Za-z0-9_+-/].
 * Returns NULL and fills err (KAAL_EZONE) when unknown. */
const kaal_tz *kaal_tz_load(const char *name, kaal_error *err);
const kaal_tz *kaal_tz_utc(void);
const char *kaal_tz_name(const kaal_tz *tz);

/* UTC offset in seconds in force at instant t. */
int32_t kaal_tz_offset_at(const kaal_tz *tz, int64_t t);

/* Instants whose wall clock is `local`. Returns how many (0, 1 or 2), earlier
 * first in out[]. On 0 (a DST gap) out[0] is set to local - (offset in force
 * before the gap): the instant the DST-gap rule fires at. */
int kaal_tz_local_to_utc(const kaal_tz *tz, int64_t local, int64_t out[2]);

/* A maximal run of instants [start, end) with one UTC offset `off`;
 * `prev_off` is the offset in force just before `start` (== off for the
 * first span). start is KAAL_TZ_MIN_INSTANT for the first span and end is
 * KAAL_TZ_MAX_INSTANT for the last one (both far outside years 1..9999, and
 * safe to add a day's worth of seconds to). Used by the cron engine to walk
 * offset changes instead of minutes. */
#define KAAL_TZ_MIN_INSTANT (-((int64_t)1 << 50))
#define KAAL_TZ_MAX_INSTANT ((int64_t)1 << 50)

typedef struct kaal_tz_span {
    int64_t start;
    int64_t end;
    int32_t off;
    int32_t prev_off;
} kaal_tz_span;

/* The span containing instant t (t within KAAL_TZ_MIN/MAX_INSTANT). */
void kaal_tz_span_at(const kaal_tz *tz, int64_t t, kaal_tz_span *out);

#endif
