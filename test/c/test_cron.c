/* Cron engine tests: parser accept/reject tables, next/previous tables
 * (DST gaps and overlaps in several zones), never-fire expressions, a
 * brute-force oracle around real offset changes (minute by minute, with
 * the C library's zone reader for offsets), random next/previous/match
 * consistency, and a timing printout (not an assertion). */
#define _GNU_SOURCE
#include <time.h>

#include "cron.h"
#include "ktest.h"

static int parse(const char *expr, kaal_cron *c, kaal_error *err)
{
    kaal_error_clear(err);
    return kaal_cron_parse(expr, strlen(expr), c, err);
}

static const kaal_tz *zone(const char *name)
{
    kaal_error err;
    const kaal_tz *tz = kaal_tz_load(name, &err);
    if (!tz) {
        fprintf(stderr, "cannot load %s: %s\n", name, err.message);
        exit(2);
    }
    return tz;
}

static uint64_t bits(const int *v)
{
    uint64_t b = 0;
    for (; *v >= 0; v++)
        b |= (uint64_t)1 << *v;
    return b;
}
#define BITS(...) bits((const int[]){__VA_ARGS__, -1})

/* ------------------------------------------------------------- accept */

static void test_accept(void)
{
    kaal_cron c;
    kaal_error err;
    const struct {
        const char *expr;
        int field; /* 0 sec 1 min 2 hour 3 dom 4 month 5 dow */
        uint64_t want;
    } cases[] = {
        {"* * * * MON-SUN", 5, 0x7f},
        {"* * * * mon-sun", 5, 0x7f},
        {"* * * * SAT-SUN", 5, BITS(0, 6)},
        {"* * * * FRI-7", 5, BITS(0, 5, 6)},
        {"* * * * */2", 5, BITS(0, 2, 4, 6)},
        {"* * * * 1/2", 5, BITS(1, 3, 5)},
        {"* * * * 7", 5, BITS(0)},
        {"* * * * 0,7", 5, BITS(0)},
        {"* * * * *", 5, 0x7f},
        {"* * * * ?", 5, 0x7f},
        {"* * * * 1-5/2", 5, BITS(1, 3, 5)},
        {"* * */10 * *", 3, BITS(1, 11, 21, 31)},
        {"* * 5/10 * *", 3, BITS(5, 15, 25)},
        {"* * ? * *", 3, 0xfffffffeULL},
        {"* * * jan,MAR-may *", 4, BITS(1, 3, 4, 5)},
        {"* * * */3 *", 4, BITS(1, 4, 7, 10)},
        {"* * * 11/1 *", 4, BITS(11, 12)},
        {"0,30 * * * *", 1, BITS(0, 30)},
        {"*/15 * * * *", 1, BITS(0, 15, 30, 45)},
        {"10-20/5 * * * *", 1, BITS(10, 15, 20)},
        {"50/5 * * * *", 1, BITS(50, 55)},
        {"* 9-17 * * *", 2, 0x3fe00},
        {"* */6 * * *", 2, BITS(0, 6, 12, 18)},
        {"*/20 * * * * *", 0, BITS(0, 20, 40)},
        {"* * * * *", 0, BITS(0)},
        {"   0   9 \t * * 1  ", 1, BITS(0)},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t got = 0;
        int rc = parse(cases[i].expr, &c, &err);
        KT_CHECK(rc == KAAL_OK, "\"%s\" rejected: %s", cases[i].expr, err.message);
        if (rc)
            continue;
        switch (cases[i].field) {
        case 0: got = c.seconds; break;
        case 1: got = c.minutes; break;
        case 2: got = c.hours; break;
        case 3: got = c.days; break;
        case 4: got = c.months; break;
        default: got = c.weekdays; break;
        }
        KT_CHECK(got == cases[i].want, "\"%s\": field %d bits %llx, expected %llx",
                 cases[i].expr, cases[i].field, (unsigned long long)got,
                 (unsigned long long)cases[i].want);
    }

    /* extras, flags, zone and macros */
    KT_CHECK(parse("0 0 L,L-3,15W,LW * *", &c, &err) == 0 && c.last_offsets == BITS(0, 3) &&
                 c.near_weekday == BITS(15) && c.last_weekday && c.days == 0,
             "dom extras: %s", err.message);
    KT_CHECK(parse("0 0 * * 5L,fri#3,SUN#1,7#5", &c, &err) == 0 && c.last_dow == BITS(5) &&
                 c.nth_dow[5] == BITS(3) && c.nth_dow[0] == BITS(1, 5) && c.weekdays == 0,
             "dow extras: %s", err.message);
    KT_CHECK(parse("0 9 * * 1", &c, &err) == 0 &&
                 c.flags == (KAAL_CRON_DOM_STAR | KAAL_CRON_FIXED_TIME),
             "flags of 0 9 * * 1: %d", c.flags);
    KT_CHECK(parse("*/5 9 ? * *", &c, &err) == 0 &&
                 c.flags == (KAAL_CRON_DOM_STAR | KAAL_CRON_DOW_STAR),
             "flags of */5 9 ? * *: %d", c.flags);
    KT_CHECK(parse("0 1,2 1 * 1", &c, &err) == 0 && c.flags == KAAL_CRON_FIXED_TIME,
             "flags of 0 1,2 1 * 1: %d", c.flags);
    KT_CHECK(parse("0 0 0 * * *", &c, &err) == 0 && (c.flags & KAAL_CRON_HAS_SECONDS) &&
                 c.zone[0] == 0,
             "6 fields");
    KT_CHECK(parse("0 9 * * 1 Europe/Berlin", &c, &err) == 0 &&
                 strcmp(c.zone, "Europe/Berlin") == 0 && !(c.flags & KAAL_CRON_HAS_SECONDS),
             "zone after 5 fields");
    KT_CHECK(parse("0 0 * * * UTC", &c, &err) == 0 && strcmp(c.zone, "UTC") == 0 &&
                 !(c.flags & KAAL_CRON_HAS_SECONDS),
             "UTC after 5 fields");
    KT_CHECK(parse("0 0 * * * MON", &c, &err) == 0 && c.zone[0] == 0 &&
                 (c.flags & KAAL_CRON_HAS_SECONDS) && c.weekdays == BITS(1),
             "6 fields ending in a weekday name");
    KT_CHECK(parse("0 0 0 * * * Asia/Tokyo", &c, &err) == 0 &&
                 strcmp(c.zone, "Asia/Tokyo") == 0 && (c.flags & KAAL_CRON_HAS_SECONDS),
             "6 fields and a zone");
    KT_CHECK(parse("@daily", &c, &err) == 0 && c.minutes == 1 && c.hours == 1 &&
                 c.weekdays == 0x7f && (c.flags & KAAL_CRON_FIXED_TIME),
             "@daily");
    KT_CHECK(parse("@HOURLY America/New_York", &c, &err) == 0 && c.minutes == 1 &&
                 c.hours == 0xffffff && strcmp(c.zone, "America/New_York") == 0 &&
                 !(c.flags & KAAL_CRON_FIXED_TIME),
             "@hourly with zone");
    KT_CHECK(parse("@weekly", &c, &err) == 0 && c.weekdays == 1 && c.days == 0xfffffffe,
             "@weekly");
    KT_CHECK(parse("@monthly", &c, &err) == 0 && c.days == 2 && c.months == 0x1ffe, "@monthly");
    KT_CHECK(parse("@yearly", &c, &err) == 0 && c.days == 2 && c.months == 2, "@yearly");
    KT_CHECK(parse("@annually", &c, &err) == 0 && c.days == 2 && c.months == 2, "@annually");
    KT_CHECK(parse("@midnight", &c, &err) == 0 && c.hours == 1, "@midnight");
    /* not NUL-terminated: only len bytes count */
    KT_CHECK(kaal_cron_parse("5 * * * *99", 9, &c, &err) == 0 && c.weekdays == 0x7f,
             "length-bounded input");
}

/* ------------------------------------------------------------- reject */

static void test_reject(void)
{
    const struct {
        const char *expr;
        int code;
        const char *field;
        int offset;
        const char *msg; /* substring */
    } cases[] = {
        {"61 * * * *", KAAL_ESYNTAX, "minute", 0,
         "minute field: \"61\" is out of range 0-59 in \"61 * * * *\""},
        {"* 24 * * *", KAAL_ESYNTAX, "hour", 2, "\"24\" is out of range 0-23"},
        {"* * 0 * *", KAAL_ESYNTAX, "day of month", 4, "out of range 1-31"},
        {"* * 32 * *", KAAL_ESYNTAX, "day of month", 4, "\"32\""},
        {"* * * 13 *", KAAL_ESYNTAX, "month", 6, "out of range 1-12"},
        {"* * * * 8", KAAL_ESYNTAX, "day of week", 8, "out of range 0-7"},
        {"60 * * * * *", KAAL_ESYNTAX, "second", 0, "second field"},
        {"0 1-70 * * * *", KAAL_ESYNTAX, "minute", 2, "\"1-70\" is out of range"},
        {"5-1 * * * *", KAAL_ESYNTAX, "minute", 0, "\"5-1\" is a descending range"},
        {"* * * DEC-JAN *", KAAL_ESYNTAX, "month", 6, "descending"},
        {"*/0 * * * *", KAAL_ESYNTAX, "minute", 0, "\"*/0\" has a step of 0"},
        {"* * * * 1-5/0", KAAL_ESYNTAX, "day of week", 8, "step of 0"},
        {"*/61 * * * *", KAAL_ESYNTAX, "minute", 0, "step larger"},
        {"*/x * * * *", KAAL_ESYNTAX, "minute", 0, "invalid step"},
        {"1,,2 * * * *", KAAL_ESYNTAX, "minute", 2, "empty list item"},
        {"1, * * * *", KAAL_ESYNTAX, "minute", 2, "empty list item"},
        {",1 * * * *", KAAL_ESYNTAX, "minute", 0, "empty list item"},
        {"0 0 1,5,,7 * *", KAAL_ESYNTAX, "day of month", 8, "empty"},
        {"* * * FOO *", KAAL_ESYNTAX, "month", 6, "\"FOO\" is not a month"},
        {"* * * January *", KAAL_ESYNTAX, "month", 6, "not a month"},
        {"* * * * FUN", KAAL_ESYNTAX, "day of week", 8, "\"FUN\" is not a day of the week"},
        {"* * * * JAN", KAAL_ESYNTAX, "day of week", 8, "not a day of the week"},
        {"MON * * * *", KAAL_ESYNTAX, "minute", 0, "\"MON\" is not a number"},
        {"1x * * * *", KAAL_ESYNTAX, "minute", 0, "\"1x\" is not valid"},
        {"0 0 * * 1 2 3", KAAL_ESYNTAX, "expression", 0, "expected 5 or 6 fields"},
        {"* * * *", KAAL_ESYNTAX, "expression", 0, "got 4"},
        {"* * * * * * * *", KAAL_ESYNTAX, "expression", 0, "got 8"},
        {"* * * * * * * * *", KAAL_ESYNTAX, "expression", 16, "too many fields"},
        {"", KAAL_ESYNTAX, "expression", 0, "empty"},
        {"   ", KAAL_ESYNTAX, "expression", 0, "empty"},
        {"? * * * *", KAAL_ESYNTAX, "minute", 0, "? only in day of month"},
        {"* * * ? *", KAAL_ESYNTAX, "month", 6, "\"?\" is not allowed"},
        {"* * L-31 * *", KAAL_ESYNTAX, "day of month", 4, "\"L-31\" is out of range"},
        {"* * L-x * *", KAAL_ESYNTAX, "day of month", 4, "L-x"},
        {"* * 32W * *", KAAL_ESYNTAX, "day of month", 4, "\"32W\" is out of range"},
        {"* * 0W * *", KAAL_ESYNTAX, "day of month", 4, "0W"},
        {"* * L/2 * *", KAAL_ESYNTAX, "day of month", 4, "cannot take a step"},
        {"* * 1,LW/2 * *", KAAL_ESYNTAX, "day of month", 6, "\"LW/2\" cannot take a step"},
        {"* * * * MON#6", KAAL_ESYNTAX, "day of week", 8, "\"MON#6\""},
        {"* * * * MON#0", KAAL_ESYNTAX, "day of week", 8, "MON#0"},
        {"* * * * 9#1", KAAL_ESYNTAX, "day of week", 8, "9#1"},
        {"* * * * 8L", KAAL_ESYNTAX, "day of week", 8, "8L"},
        {"* * * * L", KAAL_ESYNTAX, "day of week", 8, "\"L\""},
        {"* * 5L * *", KAAL_ESYNTAX, "day of month", 4, "\"5L\""},
        {"@often", KAAL_ESYNTAX, "expression", 0, "unknown macro \"@often\""},
        {"@daily 5", KAAL_ESYNTAX, "expression", 7, "\"5\" is unexpected"},
        {"@daily UTC x", KAAL_ESYNTAX, "expression", 11, "\"x\" is unexpected"},
        {"0 0 * * * L", KAAL_ESYNTAX, "day of week", 10, "\"L\""},
        {"1-2-3 * * * *", KAAL_ESYNTAX, "minute", 0, "1-2-3"},
        {"0 0 30 2 *", KAAL_ENEVER, "expression", 0, "can never fire"},
        {"0 0 31 2 *", KAAL_ENEVER, "expression", 0, "can never fire"},
        {"0 0 30,31 FEB *", KAAL_ENEVER, "expression", 0, "never"},
        {"0 0 31 4,6,9,11 *", KAAL_ENEVER, "expression", 0, "never"},
        {"0 0 */9 * MON#5", KAAL_ENEVER, "expression", 0, "\"0 0 */9 * MON#5\" can never fire"},
        {"0 0 L-30 2 *", KAAL_ENEVER, "expression", 0, "never"},
        {"0 0 30W 2 *", KAAL_ENEVER, "expression", 0, "never"},
        {"0 0 31 */2 MON#5", KAAL_ESYNTAX + 100, NULL, 0, NULL}, /* accepted: OR rule */
        {"0 0 L-29 2 *", KAAL_ENEVER, "expression", 0, "never"},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kaal_cron c;
        kaal_error err;
        int rc = parse(cases[i].expr, &c, &err);
        if (cases[i].code == KAAL_ESYNTAX + 100) {
            KT_CHECK(rc == KAAL_OK, "\"%s\" should parse: %s", cases[i].expr, err.message);
            continue;
        }
        KT_CHECK(rc == cases[i].code, "\"%s\": code %d, expected %d (%s)", cases[i].expr, rc,
                 cases[i].code, err.message);
        KT_CHECK((int)err.code == rc, "\"%s\": err.code %d", cases[i].expr, err.code);
        KT_CHECK(err.field && strcmp(err.field, cases[i].field) == 0,
                 "\"%s\": field %s, expected %s", cases[i].expr, err.field ? err.field : "NULL",
                 cases[i].field);
        KT_CHECK(err.offset == cases[i].offset, "\"%s\": offset %d, expected %d",
                 cases[i].expr, err.offset, cases[i].offset);
        KT_CHECK(strstr(err.message, cases[i].msg) != NULL, "\"%s\": message '%s' lacks '%s'",
                 cases[i].expr, err.message, cases[i].msg);
    }
    /* accepted although rare */
    {
        static const char *const ok[] = {"0 0 29 2 *",     "0 0 * 2 MON#5", "0 0 */29 2 MON",
                                         "0 0 L-27 2 *",   "0 0 29W 2 *",   "0 0 31 * *",
                                         "0 0 29 2 MON#5", "0 0 */30 * MON#5"};
        for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
            kaal_cron c;
            kaal_error err;
            KT_CHECK(parse(ok[i], &c, &err) == KAAL_OK, "\"%s\" rejected: %s", ok[i],
                     err.message);
        }
    }
}

/* ------------------------------------------------------- next / prev */

typedef struct seq_case {
    const char *expr, *zone, *from;
    const char *want[7];
} seq_case;

static const seq_case next_cases[] = {
    {"*/15 * * * *", "UTC", "2026-01-01T00:00:00Z",
     {"2026-01-01T00:15:00+00:00", "2026-01-01T00:30:00+00:00", "2026-01-01T00:45:00+00:00",
      "2026-01-01T01:00:00+00:00"}},
    {"*/15 * * * *", "UTC", "2026-01-01T00:14:59Z", {"2026-01-01T00:15:00+00:00"}},
    {"0 9 * * 1", "UTC", "2026-01-01T00:00:00Z",
     {"2026-01-05T09:00:00+00:00", "2026-01-12T09:00:00+00:00", "2026-01-19T09:00:00+00:00"}},
    {"0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z",
     {"2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"}},
    {"0 0 29 2 *", "UTC", "2096-03-01T00:00:00Z", {"2104-02-29T00:00:00+00:00"}},
    {"0 0 L * *", "UTC", "2026-01-31T00:00:00Z",
     {"2026-02-28T00:00:00+00:00", "2026-03-31T00:00:00+00:00", "2026-04-30T00:00:00+00:00"}},
    {"0 0 L-2 * *", "UTC", "2026-02-01T00:00:00Z",
     {"2026-02-26T00:00:00+00:00", "2026-03-29T00:00:00+00:00"}},
    {"0 0 L-30 * *", "UTC", "2026-01-01T00:00:00Z",
     {"2026-03-01T00:00:00+00:00", "2026-05-01T00:00:00+00:00"}},
    {"5 4 * * SUN#2", "UTC", "2026-01-01T00:00:00Z",
     {"2026-01-11T04:05:00+00:00", "2026-02-08T04:05:00+00:00"}},
    {"0 0 15W * *", "UTC", "2026-08-01T00:00:00Z", {"2026-08-14T00:00:00+00:00"}},
    {"0 0 1W * *", "UTC", "2026-07-31T00:00:00Z", {"2026-08-03T00:00:00+00:00"}},
    {"0 0 LW * *", "UTC", "2026-01-01T00:00:00Z", {"2026-01-30T00:00:00+00:00"}},
    {"0 0 * * 5L", "UTC", "2026-01-01T00:00:00Z",
     {"2026-01-30T00:00:00+00:00", "2026-02-27T00:00:00+00:00"}},
    /* both restricted: either matches */
    {"0 0 1 * 1", "UTC", "2026-01-26T00:00:00Z",
     {"2026-02-01T00:00:00+00:00", "2026-02-02T00:00:00+00:00", "2026-02-09T00:00:00+00:00"}},
    /* dom starts with '*': both must match */
    {"0 0 */10 * 1", "UTC", "2026-01-01T00:00:00Z", {"2026-05-11T00:00:00+00:00"}},
    {"30 * * * * *", "UTC", "2026-01-01T00:00:00Z",
     {"2026-01-01T00:00:30+00:00", "2026-01-01T00:01:30+00:00"}},
    {"0 0 0 1 1 *", "UTC", "2026-01-01T00:00:00Z", {"2027-01-01T00:00:00+00:00"}},
    {"* * * * *", "UTC", "2026-01-01T00:00:59Z", {"2026-01-01T00:01:00+00:00"}},
    {"59 23 31 12 *", "UTC", "2026-12-31T23:59:00Z", {"2027-12-31T23:59:00+00:00"}},
    /* New York: spring forward 2026-03-08 02:00 -> 03:00 */
    {"30 2 * * *", "America/New_York", "2026-03-07T00:00:00-05:00",
     {"2026-03-07T02:30:00-05:00", "2026-03-08T03:30:00-04:00", "2026-03-09T02:30:00-04:00"}},
    {"*/30 2 * * *", "America/New_York", "2026-03-08T00:00:00-05:00",
     {"2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00", "2026-03-09T02:00:00-04:00"}},
    {"0 * * * *", "America/New_York", "2026-03-08T00:30:00-05:00",
     {"2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T04:00:00-04:00"}},
    /* fall back 2026-11-01 02:00 -> 01:00 */
    {"*/15 * * * *", "America/New_York", "2026-11-01T01:40:00-04:00",
     {"2026-11-01T01:45:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T01:15:00-05:00",
      "2026-11-01T01:30:00-05:00", "2026-11-01T01:45:00-05:00", "2026-11-01T02:00:00-05:00"}},
    {"30 1 * * *", "America/New_York", "2026-10-31T12:00:00-04:00",
     {"2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"}},
    {"30 1 * * *", "America/New_York", "2026-11-01T01:30:00-04:00",
     {"2026-11-02T01:30:00-05:00"}},
    {"30 2 * * *", "America/New_York", "2050-03-12T12:00:00-05:00",
     {"2050-03-13T03:30:00-04:00", "2050-03-14T02:30:00-04:00"}},
    /* Pacific/Apia skipped 2011-12-30 */
    {"0 9 * * *", "Pacific/Apia", "2011-12-28T12:00:00-10:00",
     {"2011-12-29T09:00:00-10:00", "2011-12-31T09:00:00+14:00", "2012-01-01T09:00:00+14:00"}},
    {"0 9 30 12 *", "Pacific/Apia", "2011-12-01T00:00:00-10:00",
     {"2011-12-31T09:00:00+14:00", "2012-12-30T09:00:00+14:00"}},
    /* Lord Howe: 30-minute DST */
    {"15 2 * * *", "Australia/Lord_Howe", "2026-10-03T12:00:00+10:30",
     {"2026-10-04T02:45:00+11:00", "2026-10-05T02:15:00+11:00"}},
    {"*/15 * * * *", "Australia/Lord_Howe", "2026-04-05T01:35:00+11:00",
     {"2026-04-05T01:45:00+11:00", "2026-04-05T01:30:00+10:30", "2026-04-05T01:45:00+10:30",
      "2026-04-05T02:00:00+10:30"}},
    {"45 1 * * *", "Australia/Lord_Howe", "2026-04-04T12:00:00+11:00",
     {"2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"}},
    /* Dublin: negative DST in the data */
    {"30 1 * * *", "Europe/Dublin", "2026-03-28T12:00:00+00:00",
     {"2026-03-29T02:30:00+01:00", "2026-03-30T01:30:00+01:00"}},
    {"30 1 * * *", "Europe/Dublin", "2026-10-24T12:00:00+01:00",
     {"2026-10-25T01:30:00+01:00", "2026-10-26T01:30:00+00:00"}},
    {"*/30 * * * *", "Europe/Dublin", "2026-10-25T01:10:00+01:00",
     {"2026-10-25T01:30:00+01:00", "2026-10-25T01:00:00+00:00", "2026-10-25T01:30:00+00:00",
      "2026-10-25T02:00:00+00:00"}},
    /* Chatham: 45-minute offset */
    {"0 3 * * *", "Pacific/Chatham", "2026-09-26T12:00:00+12:45",
     {"2026-09-27T04:00:00+13:45", "2026-09-28T03:00:00+13:45"}},
    {"30 2 * * *", "America/St_Johns", "2026-03-07T12:00:00-03:30",
     {"2026-03-08T03:30:00-02:30", "2026-03-09T02:30:00-02:30"}},
    /* Santiago changes at 24:00 */
    {"0 0 * * *", "America/Santiago", "2026-09-05T12:00:00-04:00",
     {"2026-09-06T01:00:00-03:00", "2026-09-07T00:00:00-03:00"}},
    {"30 23 * * *", "America/Santiago", "2026-04-04T12:00:00-03:00",
     {"2026-04-04T23:30:00-03:00", "2026-04-05T23:30:00-04:00"}},
    {"*/30 23 * * *", "America/Santiago", "2026-04-04T23:10:00-03:00",
     {"2026-04-04T23:30:00-03:00", "2026-04-04T23:00:00-04:00", "2026-04-04T23:30:00-04:00",
      "2026-04-05T23:00:00-04:00"}},
    {"0 9 * * 1 Europe/Berlin", "UTC", "2026-03-01T00:00:00Z", {"2026-03-02T09:00:00+01:00"}},
};

static const seq_case prev_cases[] = {
    {"*/15 * * * *", "UTC", "2026-01-01T00:15:00Z",
     {"2026-01-01T00:00:00+00:00", "2025-12-31T23:45:00+00:00"}},
    {"0 0 29 2 *", "UTC", "2028-02-29T00:00:00Z", {"2024-02-29T00:00:00+00:00"}},
    {"0 0 L * *", "UTC", "2026-03-01T00:00:00Z",
     {"2026-02-28T00:00:00+00:00", "2026-01-31T00:00:00+00:00"}},
    {"5 4 * * SUN#2", "UTC", "2026-02-08T04:05:00Z", {"2026-01-11T04:05:00+00:00"}},
    {"30 2 * * *", "America/New_York", "2026-03-09T00:00:00-04:00",
     {"2026-03-08T03:30:00-04:00", "2026-03-07T02:30:00-05:00"}},
    {"*/15 * * * *", "America/New_York", "2026-11-01T01:10:00-05:00",
     {"2026-11-01T01:00:00-05:00", "2026-11-01T01:45:00-04:00", "2026-11-01T01:30:00-04:00"}},
    {"30 1 * * *", "America/New_York", "2026-11-02T00:00:00-05:00",
     {"2026-11-01T01:30:00-04:00", "2026-10-31T01:30:00-04:00"}},
    {"0 9 * * *", "Pacific/Apia", "2012-01-01T00:00:00+14:00",
     {"2011-12-31T09:00:00+14:00", "2011-12-29T09:00:00-10:00"}},
    {"45 1 * * *", "Australia/Lord_Howe", "2026-04-06T00:00:00+10:30",
     {"2026-04-05T01:45:00+11:00", "2026-04-04T01:45:00+11:00"}},
    {"0 3 * * *", "Pacific/Chatham", "2026-09-28T00:00:00+13:45",
     {"2026-09-27T04:00:00+13:45", "2026-09-26T03:00:00+12:45"}},
};

static void run_seq(const seq_case *cases, size_t n, int forward)
{
    size_t i;
    for (i = 0; i < n; i++) {
        kaal_cron c;
        kaal_error err;
        const kaal_tz *tz;
        int64_t t;
        int k;
        if (parse(cases[i].expr, &c, &err) != KAAL_OK) {
            KT_CHECK(0, "\"%s\" rejected: %s", cases[i].expr, err.message);
            continue;
        }
        tz = zone(c.zone[0] ? c.zone : cases[i].zone);
        t = kt_iso(cases[i].from);
        for (k = 0; k < 7 && cases[i].want[k]; k++) {
            int64_t got = 0;
            char a[40], b[40];
            int rc = forward ? kaal_cron_next(&c, tz, t, &got, &err)
                             : kaal_cron_prev(&c, tz, t, &got, &err);
            KT_CHECK(rc == KAAL_OK, "%s \"%s\" %s from %s: %s", forward ? "next" : "prev",
                     cases[i].expr, cases[i].zone, kt_fmt(a, t, kaal_tz_offset_at(tz, t)),
                     err.message);
            if (rc)
                break;
            kt_fmt(b, got, kaal_tz_offset_at(tz, got));
            KT_CHECK(strcmp(b, cases[i].want[k]) == 0, "%s \"%s\" %s from %s: got %s, want %s",
                     forward ? "next" : "prev", cases[i].expr, cases[i].zone,
                     kt_fmt(a, t, kaal_tz_offset_at(tz, t)), b, cases[i].want[k]);
            KT_CHECK(kaal_cron_match(&c, tz, got), "match(\"%s\", %s) is false", cases[i].expr,
                     b);
            t = got;
        }
    }
}

static void test_ranges(void)
{
    kaal_cron c;
    kaal_error err;
    int64_t out;
    parse("0 0 1 1 *", &c, &err);
    KT_CHECK(kaal_cron_next(&c, kaal_tz_utc(), kt_iso("9999-06-01T00:00:00Z"), &out, &err) ==
                 KAAL_ERANGE,
             "next past 9999 is a range error");
    KT_CHECK(kaal_cron_prev(&c, kaal_tz_utc(), kt_iso("0001-01-01T00:00:00Z"), &out, &err) ==
                 KAAL_ERANGE,
             "prev before year 1 is a range error");
    KT_CHECK(kaal_cron_next(&c, kaal_tz_utc(), INT64_MAX, &out, &err) == KAAL_ERANGE,
             "next from INT64_MAX");
    KT_CHECK(kaal_cron_prev(&c, kaal_tz_utc(), INT64_MIN, &out, &err) == KAAL_ERANGE,
             "prev from INT64_MIN");
    KT_CHECK(!kaal_cron_match(&c, kaal_tz_utc(), INT64_MIN), "match INT64_MIN");
    KT_CHECK(kaal_cron_next(&c, zone("America/New_York"), kt_iso("9990-06-01T00:00:00Z"), &out,
                            &err) == KAAL_OK &&
                 out == kt_iso("9991-01-01T00:00:00-05:00"),
             "far future in a DST zone");
    KT_CHECK(kaal_cron_prev(&c, zone("America/New_York"), kt_iso("1900-06-01T00:00:00Z"), &out,
                            &err) == KAAL_OK &&
                 out == kt_iso("1900-01-01T00:00:00-05:00"),
             "before 1970: %lld", (long long)out);
    KT_CHECK(kaal_cron_prev(&c, zone("America/New_York"), kt_iso("1850-06-01T00:00:00Z"), &out,
                            &err) == KAAL_OK &&
                 out == kt_iso("1850-01-01T00:00:00Z") + 17762,
             "before 1970 (LMT era): %lld", (long long)out);
}

/* ------------------------------------------------ brute-force oracle */

/* Independent matcher on a wall clock time (no masks, no jumps). */
static int wall_matches(const kaal_cron *c, int64_t w)
{
    int64_t days = kaal_floor_div(w, KAAL_DAY), y;
    int sod = (int)(w - days * KAAL_DAY), m, d, len, wd, dom = 0, dow = 0, n;
    kaal_civil_from_days(days, &y, &m, &d);
    if (!(c->seconds >> (sod % 60) & 1) || !(c->minutes >> (sod / 60 % 60) & 1) ||
        !(c->hours >> (sod / 3600) & 1) || !(c->months >> m & 1))
        return 0;
    len = kaal_days_in_month(y, m);
    wd = kaal_weekday(days);
    dom = (c->days >> d) & 1;
    for (n = 0; n <= 30; n++)
        if ((c->last_offsets >> n & 1) && d == len - n)
            dom = 1;
    for (n = 1; n <= 31; n++) {
        int target, nwd;
        if (!(c->near_weekday >> n & 1) || n > len)
            continue;
        nwd = kaal_weekday(days - d + n);
        target = n;
        if (nwd == 6)
            target = n > 1 ? n - 1 : n + 2;
        if (nwd == 0)
            target = n < len ? n + 1 : n - 2;
        if (target == d)
            dom = 1;
    }
    if (c->last_weekday) {
        int t = len;
        while (kaal_weekday(days - d + t) == 0 || kaal_weekday(days - d + t) == 6)
            t--;
        if (t == d)
            dom = 1;
    }
    dow = (c->weekdays >> wd) & 1;
    if (c->nth_dow[wd] >> ((d - 1) / 7 + 1) & 1)
        dow = 1;
    if ((c->last_dow >> wd & 1) && d + 7 > len)
        dow = 1;
    if (!(c->flags & (KAAL_CRON_DOM_STAR | KAAL_CRON_DOW_STAR)))
        return dom || dow;
    return dom && dow;
}

static int32_t libc_off(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    return (int32_t)tm.tm_gmtoff;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t rs = 0x2545f4914f6cdd1dULL;
static uint64_t rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}
#define PICK(arr) (arr[rnd() % (sizeof arr / sizeof arr[0])])

static void random_expr(char *buf, size_t size, int rich)
{
    static const char *const sec[] = {"0", "*/20", "30", "*", "15,45", "59"};
    static const char *const min[] = {"*", "*/15", "0", "30", "0,30", "5-10", "*/7", "45", "59",
                                      "*/20"};
    static const char *const hour[] = {"*", "1", "2", "0-3", "*/2", "1,2,3", "22-23", "0",
                                       "*", "23", "3"};
    static const char *const dom[] = {"*", "*", "*", "1-15", "L", "15W", "*/3", "?", "LW",
                                      "L-1", "1,15", "31"};
    static const char *const mon[] = {"*", "*", "*", "3-4,10-11", "*/2", "1,12"};
    static const char *const dow[] = {"*", "*", "*", "SUN", "MON-FRI", "0#1", "6L", "?",
                                      "SAT,SUN", "1#2", "5L"};
    if (rich == 2 || (rich && rnd() % 3 == 0))
        snprintf(buf, size, "%s %s %s %s %s %s", PICK(sec), PICK(min), PICK(hour), PICK(dom),
                 PICK(mon), PICK(dow));
    else
        snprintf(buf, size, "%s %s %s %s %s", PICK(min), PICK(hour), PICK(dom), PICK(mon),
                 PICK(dow));
}

static int oracle_windows, oracle_fires;

/* Compare kaal with a minute-by-minute walk of [a, b) (offsets from libc). */
/* Compare kaal with a step-by-step walk of [a, b) (offsets from libc):
 * step 60 with 5-field expressions, step 1 with 6-field ones. */
static void oracle_window(const char *zname, const kaal_tz *tz, int64_t a, int64_t b, int nexpr,
                          int step)
{
    int nmin = (int)((b - a) / step), i, e;
    int32_t *off = malloc(sizeof *off * (size_t)(nmin + 1));
    int64_t *want = malloc(sizeof *want * (size_t)(nmin * 3 + 8));
    int64_t *got = malloc(sizeof *got * (size_t)(nmin * 3 + 8));
    for (i = 0; i <= nmin; i++)
        off[i] = libc_off(a + step * (int64_t)i - step); /* off[i] is at step i-1 */
    for (e = 0; e < nexpr; e++) {
        char expr[80];
        kaal_cron c;
        kaal_error err;
        int nw = 0, ng = 0, fixed, k;
        int64_t t;
        random_expr(expr, sizeof expr, step == 1 ? 2 : 0);
        if (parse(expr, &c, &err) != KAAL_OK)
            continue;
        fixed = (c.flags & KAAL_CRON_FIXED_TIME) != 0;
        for (i = 1; i <= nmin; i++) {
            int64_t ti = a + step * (int64_t)(i - 1), w = ti + off[i];
            int32_t prev = off[i - 1];
            if (wall_matches(&c, w)) {
                int seen = 0;
                if (fixed) { /* did this wall time already show, earlier? */
                    int32_t o;
                    for (o = off[i] + 900; o <= off[i] + 26 * 3600 && !seen; o += 900)
                        if (libc_off(w - o) == o)
                            seen = 1;
                }
                if (!seen)
                    want[nw++] = ti;
            }
            if (off[i] > prev) { /* a gap opens at ti: walls [ti+prev, ti+off) are missing */
                int64_t g;
                for (g = ti + prev; g < ti + off[i]; g += step)
                    if (wall_matches(&c, g))
                        want[nw++] = g - prev;
            }
        }
        qsort(want, (size_t)nw, sizeof *want, cmp64);
        for (i = 0, k = 0; i < nw; i++)
            if (want[i] < b && (k == 0 || want[i] != want[k - 1]))
                want[k++] = want[i];
        nw = k;
        /* kaal forward */
        for (t = a - 1; ng < nmin * 3;) {
            int64_t r;
            if (kaal_cron_next(&c, tz, t, &r, &err) != KAAL_OK || r >= b)
                break;
            got[ng++] = r;
            t = r;
        }
        KT_CHECK(ng == nw, "%s \"%s\" window %lld: kaal %d fires, oracle %d", zname, expr,
                 (long long)a, ng, nw);
        for (i = 0; i < ng && i < nw; i++) {
            char x[40], y[40];
            if (got[i] != want[i]) {
                KT_CHECK(0, "%s \"%s\": fire %d kaal %s oracle %s", zname, expr, i,
                         kt_fmt(x, got[i], kaal_tz_offset_at(tz, got[i])),
                         kt_fmt(y, want[i], kaal_tz_offset_at(tz, want[i])));
                break;
            }
        }
        /* kaal backward from b over the same fires */
        for (t = b, k = nw - 1; k >= 0; k--) {
            int64_t r;
            if (kaal_cron_prev(&c, tz, t, &r, &err) != KAAL_OK || r != want[k]) {
                KT_CHECK(0, "%s \"%s\": prev from %lld gave %lld, oracle %lld", zname, expr,
                         (long long)t, (long long)r, (long long)want[k]);
                break;
            }
            t = r;
        }
        /* match agrees near the change in the middle of the window */
        for (i = nmin / 2 - 150, k = 0; i < nmin / 2 + 150; i++) {
            int64_t ti = a + step * (int64_t)i;
            int in = 0;
            while (k < nw && want[k] < ti)
                k++;
            in = k < nw && want[k] == ti;
            if (kaal_cron_match(&c, tz, ti) != in) {
                KT_CHECK(0, "%s \"%s\": match(%lld) = %d, oracle %d", zname, expr,
                         (long long)ti, !in, in);
                break;
            }
        }
        oracle_fires += nw;
    }
    oracle_windows++;
    free(off);
    free(want);
    free(got);
}

static void test_oracle(void)
{
    static const char *const zones[] = {
        "America/New_York", "Europe/Dublin",     "Australia/Lord_Howe", "Pacific/Chatham",
        "Pacific/Apia",     "America/St_Johns",  "America/Santiago",    "Africa/Casablanca",
        "America/Nuuk",     "Europe/London",     "Asia/Tehran",         "Australia/Sydney",
        "America/Havana",   "Antarctica/Troll", "Asia/Gaza"};
    size_t z;
    char tzenv[80];
    for (z = 0; z < sizeof zones / sizeof zones[0]; z++) {
        const kaal_tz *tz = zone(zones[z]);
        int64_t lo = kt_iso("1975-01-01T00:00:00Z"), hi = kt_iso("2099-01-01T00:00:00Z");
        int64_t changes[600];
        int n = 0, w;
        kaal_tz_span sp;
        snprintf(tzenv, sizeof tzenv, ":%s", zones[z]);
        setenv("TZ", tzenv, 1);
        tzset();
        for (kaal_tz_span_at(tz, lo, &sp); sp.end < hi && n < 600; kaal_tz_span_at(tz, sp.end, &sp))
            changes[n++] = sp.end;
        if (n == 0)
            continue;
        for (w = 0; w < 5; w++) {
            int64_t at = changes[rnd() % (uint64_t)n];
            if (strcmp(zones[z], "Pacific/Apia") == 0 && w == 0)
                at = kt_iso("2011-12-30T00:00:00-10:00");
            at -= at % 60;
            oracle_window(zones[z], tz, at - 26 * 3600, at + 26 * 3600, 12, 60);
            if (w < 2)
                oracle_window(zones[z], tz, at - 5400, at + 5400, 3, 1);
        }
    }
    setenv("TZ", "UTC", 1);
    tzset();
    printf("test_cron: oracle compared %d windows, %d fire times\n", oracle_windows,
           oracle_fires);
}

/* ------------------------------------------------ random consistency */

static void test_consistency(void)
{
    static const char *const zones[] = {"UTC",           "America/New_York", "Europe/Dublin",
                                        "Pacific/Apia",  "Australia/Lord_Howe",
                                        "Pacific/Chatham", "Africa/Casablanca",
                                        "America/Santiago", "Asia/Kolkata", "America/Nuuk"};
    int i, done = 0;
    for (i = 0; i < 4000; i++) {
        char expr[80], a[40], b[40];
        kaal_cron c;
        kaal_error err;
        const kaal_tz *tz = zone(PICK(zones));
        int64_t from = kt_iso("1970-01-01T00:00:00Z") +
                       (int64_t)(rnd() % (uint64_t)(kt_iso("2100-01-01T00:00:00Z"))), n, p, x;
        random_expr(expr, sizeof expr, 1);
        if (parse(expr, &c, &err) != KAAL_OK)
            continue;
        done++;
        if (kaal_cron_next(&c, tz, from, &n, &err) != KAAL_OK) {
            KT_CHECK(0, "next \"%s\" %s from %lld: %s", expr, kaal_tz_name(tz), (long long)from,
                     err.message);
            continue;
        }
        KT_CHECK(n > from, "next not after from");
        KT_CHECK(kaal_cron_match(&c, tz, n), "\"%s\" %s: match(next=%s) false", expr,
                 kaal_tz_name(tz), kt_fmt(a, n, kaal_tz_offset_at(tz, n)));
        KT_CHECK(kaal_cron_prev(&c, tz, n + 1, &x, &err) == KAAL_OK && x == n,
                 "\"%s\" %s: prev(next+1) %s != next %s", expr, kaal_tz_name(tz),
                 kt_fmt(a, x, kaal_tz_offset_at(tz, x)), kt_fmt(b, n, kaal_tz_offset_at(tz, n)));
        KT_CHECK(kaal_cron_prev(&c, tz, n, &p, &err) == KAAL_OK && p <= from,
                 "\"%s\" %s from %lld: a fire %s between from and next %s", expr,
                 kaal_tz_name(tz), (long long)from, kt_fmt(a, p, kaal_tz_offset_at(tz, p)),
                 kt_fmt(b, n, kaal_tz_offset_at(tz, n)));
        KT_CHECK(kaal_cron_next(&c, tz, p, &x, &err) == KAAL_OK && x == n,
                 "\"%s\" %s: next(prev(next)) != next", expr, kaal_tz_name(tz));
        KT_CHECK(kaal_cron_match(&c, tz, p), "\"%s\": match(prev) false", expr);
        KT_CHECK(!kaal_cron_match(&c, tz, from + (n - from) / 2) || from + (n - from) / 2 == n,
                 "\"%s\": match between two fires", expr);
    }
    KT_CHECK(done > 3000, "only %d random expressions parsed", done);
}

/* -------------------------------------------------------------- timing */

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void print_timings(void)
{
    static const struct {
        const char *expr, *zone;
    } cases[] = {{"*/15 * * * *", "UTC"},       {"0 9 * * 1", "UTC"},
                 {"0 0 29 2 *", "UTC"},         {"30 2 * * *", "America/New_York"},
                 {"0 0 L * *", "UTC"},          {"5 4 * * SUN#2", "UTC"},
                 {"*/15 * * * *", "Europe/Berlin"}};
    size_t i;
    int k, iters = 20000;
    printf("test_cron timings (sanitized -O1 build; see benchmarks for real numbers):\n");
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kaal_cron c;
        kaal_error err;
        const kaal_tz *tz = zone(cases[i].zone);
        int64_t t = kt_iso("2026-01-01T00:00:00Z"), sink = 0;
        double t0, t1, t2;
        t0 = now_ns();
        for (k = 0; k < iters; k++)
            sink += kaal_cron_parse(cases[i].expr, strlen(cases[i].expr), &c, &err);
        t1 = now_ns();
        for (k = 0; k < iters; k++) {
            int64_t r;
            kaal_cron_next(&c, tz, t + k * 7919, &r, &err);
            sink += r;
        }
        t2 = now_ns();
        printf("  %-16s %-18s parse %7.0f ns  next %7.0f ns  (%lld)\n", cases[i].expr,
               cases[i].zone, (t1 - t0) / iters, (t2 - t1) / iters, (long long)(sink & 1));
    }
}

int main(void)
{
    setenv("TZ", "UTC", 1);
    test_accept();
    test_reject();
    run_seq(next_cases, sizeof next_cases / sizeof next_cases[0], 1);
    run_seq(prev_cases, sizeof prev_cases / sizeof prev_cases[0], 0);
    test_ranges();
    test_oracle();
    test_consistency();
    print_timings();
    KT_DONE();
}
