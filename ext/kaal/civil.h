/* kaal: proleptic Gregorian calendar arithmetic shared by cron.c and tz.c.
 * Days are counted from 1970-01-01 (day 0); weekday 0 is Sunday. Header
 * only (static inline), plain C99. */
#ifndef KAAL_CIVIL_H
#define KAAL_CIVIL_H

#include <stdint.h>

#define KAAL_DAY 86400
/* Seconds in a 400-year Gregorian cycle (146097 days): the calendar,
 * weekdays included, repeats after it. */
#define KAAL_CYCLE_SECONDS ((int64_t)146097 * KAAL_DAY)

static inline int kaal_is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static inline int kaal_days_in_month(int64_t y, int m)
{
    static const unsigned char len[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 ? 28 + kaal_is_leap(y) : len[m];
}

/* Days since 1970-01-01 of y-m-d (m 1..12, d may run past the month). */
static inline int64_t kaal_days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static inline void kaal_civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp;
    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* 0 = Sunday. */
static inline int kaal_weekday(int64_t days)
{
    int64_t w = (days + 4) % 7;
    return (int)(w < 0 ? w + 7 : w);
}

static inline int64_t kaal_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

#endif
