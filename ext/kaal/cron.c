/* kaal: cron expressions (the dialect and DST rules: docs/cron.md).
 *
 * Parsing fills fixed-size bitsets. Searching works in two layers:
 *   - next_local/prev_local find the nearest matching *wall clock* time by
 *     jumping field by field (month, day, hour, minute, second) with
 *     ctz/clz on the bitsets; a whole month's matching days are one 32-bit
 *     mask computed from the month length and the weekday of the 1st.
 *   - kaal_cron_next/prev walk the zone's constant-offset spans
 *     (kaal_tz_span_at) around `from` and map wall times to instants,
 *     applying the DST gap rule (a missing wall time fires at
 *     wall - offset_before) and the overlap rule (fixed minute+hour fire
 *     once, at the earlier instant; others at every matching instant).
 * Nothing here allocates. */
#include "cron.h"

#include <stdio.h>
#include <string.h>

#include "civil.h"

/* ---------------------------------------------------------------- limits */

#define YEAR_MIN 1
#define YEAR_MAX 9999
#define NONE_HI KAAL_TZ_MAX_INSTANT
#define NONE_LO KAAL_TZ_MIN_INSTANT
/* 0001-01-01T00:00:00 and 9999-12-31T23:59:59 as local seconds. */
#define WALL_MIN ((int64_t)-62135596800LL)
#define WALL_MAX ((int64_t)253402300799LL)
/* `from` must stay within these (a little slack for offsets). */
#define FROM_MIN (WALL_MIN - 2 * KAAL_DAY)
#define FROM_MAX (WALL_MAX + 2 * KAAL_DAY)

/* ------------------------------------------------------------ bit helpers */

static inline int ctz64(uint64_t x) { return __builtin_ctzll(x); }
static inline int clz64(uint64_t x) { return __builtin_clzll(x); }

/* Lowest set bit >= from, or -1. */
static inline int next_bit(uint64_t mask, int from)
{
    if (from > 63)
        return -1;
    if (from < 0)
        from = 0;
    mask &= ~(uint64_t)0 << from;
    return mask ? ctz64(mask) : -1;
}

/* Highest set bit <= from, or -1. */
static inline int prev_bit(uint64_t mask, int from)
{
    if (from < 0)
        return -1;
    if (from < 63)
        mask &= ((uint64_t)2 << from) - 1;
    return mask ? 63 - clz64(mask) : -1;
}

/* --------------------------------------------------------------- day mask */

/* Bits 1..len set. */
static inline uint32_t month_bits(int len) { return (uint32_t)(((uint64_t)1 << (len + 1)) - 2); }

/* Matching days (bits 1..31) of the month with `len` days whose 1st is
 * weekday wd1. */
static uint32_t day_mask_for(const kaal_cron *c, int len, int wd1)
{
    uint32_t all = month_bits(len);
    uint32_t dom = c->days & all, dow;
    uint32_t bits;
    int wdl = (wd1 + len - 1) % 7; /* weekday of the last day */
    int d;

    for (bits = c->last_offsets; bits; bits &= bits - 1) {
        int n = __builtin_ctz(bits);
        if (len - n >= 1)
            dom |= (uint32_t)1 << (len - n);
    }
    for (bits = c->near_weekday; bits; bits &= bits - 1) {
        int n = __builtin_ctz(bits), wd, day = n;
        if (n > len)
            continue;
        wd = (wd1 + n - 1) % 7;
        if (wd == 6)
            day = n == 1 ? 3 : n - 1;
        else if (wd == 0)
            day = n == len ? n - 2 : n + 1;
        dom |= (uint32_t)1 << day;
    }
    if (c->last_weekday) {
        int day = len;
        if (wdl == 6)
            day = len - 1;
        else if (wdl == 0)
            day = len - 2;
        dom |= (uint32_t)1 << day;
    }

    /* Plain weekdays: rotate so bit i is weekday (wd1 + i) % 7, i.e. day i+1,
     * then repeat every 7 days. */
    if (c->weekdays) {
        uint32_t w = c->weekdays & 0x7f;
        uint32_t r = ((w >> wd1) | (w << (7 - wd1))) & 0x7f;
        dow = (r | r << 7 | r << 14 | r << 21 | r << 28) << 1;
        dow &= all;
    } else {
        dow = 0;
    }
    for (d = 0; d < 7; d++) {
        int first = 1 + (d - wd1 + 7) % 7;
        if (c->nth_dow[d]) {
            for (bits = c->nth_dow[d]; bits; bits &= bits - 1) {
                int k = __builtin_ctz(bits);
                int day = first + 7 * (k - 1);
                if (k >= 1 && day <= len)
                    dow |= (uint32_t)1 << day;
            }
        }
        if (c->last_dow & (1u << d))
            dow |= (uint32_t)1 << (len - (wdl - d + 7) % 7);
    }

    if (!(c->flags & (KAAL_CRON_DOM_STAR | KAAL_CRON_DOW_STAR)))
        return dom | dow;
    return dom & dow;
}

/* ----------------------------------------------------------------- search */

typedef struct search {
    const kaal_cron *c;
    int64_t mask_key; /* y * 16 + m of the cached mask, or -1 */
    uint32_t mask;
    int next_memo, prev_memo;
    int64_t next_q, next_r; /* next_local(w) == next_r for w in [next_q, next_r] */
    int64_t prev_q, prev_r; /* prev_local(w) == prev_r for w in [prev_r, prev_q] */
} search;

static void search_init(search *s, const kaal_cron *c)
{
    s->c = c;
    s->mask_key = -1;
    s->mask = 0;
    s->next_memo = s->prev_memo = 0;
    s->next_q = s->next_r = s->prev_q = s->prev_r = 0;
}

static uint32_t month_mask(search *s, int64_t y, int m)
{
    int64_t key = y * 16 + m;
    if (key != s->mask_key) {
        int64_t first = kaal_days_from_civil(y, m, 1);
        s->mask = day_mask_for(s->c, kaal_days_in_month(y, m), kaal_weekday(first));
        s->mask_key = key;
    }
    return s->mask;
}

static inline int64_t wall_of(int64_t y, int m, int d, int H, int M, int S)
{
    return kaal_days_from_civil(y, m, d) * KAAL_DAY + H * 3600 + M * 60 + S;
}

static void split(int64_t w, int64_t *y, int *m, int *d, int *H, int *M, int *S)
{
    int64_t days = kaal_floor_div(w, KAAL_DAY);
    int sod = (int)(w - days * KAAL_DAY);
    kaal_civil_from_days(days, y, m, d);
    *H = sod / 3600;
    *M = sod / 60 % 60;
    *S = sod % 60;
}

/* Smallest matching wall time >= w, or NONE_HI (none through year 9999). */
static int64_t next_local(search *s, int64_t w)
{
    const kaal_cron *c = s->c;
    int64_t y, r = NONE_HI;
    int m, d, H, M, S;

    if (s->next_memo && w >= s->next_q && w <= s->next_r)
        return s->next_r;
    if (w > WALL_MAX)
        goto done;
    if (w < WALL_MIN)
        w = WALL_MIN;
    split(w, &y, &m, &d, &H, &M, &S);
    for (;;) {
        uint32_t dm;
        int m2 = next_bit(c->months, m);
        if (m2 < 0) {
            if (++y > YEAR_MAX)
                goto done;
            m = 1, d = 1, H = M = S = 0;
            continue;
        }
        if (m2 != m)
            m = m2, d = 1, H = M = S = 0;
        dm = month_mask(s, y, m);
        for (;;) {
            int d2 = next_bit(dm, d), H2, M2, S2;
            if (d2 < 0)
                break;
            if (d2 != d)
                d = d2, H = M = S = 0;
            H2 = next_bit(c->hours, H);
            if (H2 < 0) {
                d++, H = M = S = 0;
                continue;
            }
            if (H2 != H)
                H = H2, M = S = 0;
            M2 = next_bit(c->minutes, M);
            if (M2 < 0) {
                H++, M = S = 0;
                continue;
            }
            if (M2 != M)
                M = M2, S = 0;
            S2 = next_bit(c->seconds, S);
            if (S2 < 0) {
                M++, S = 0;
                continue;
            }
            r = wall_of(y, m, d, H, M, S2);
            goto done;
        }
        if (++m > 12) {
            m = 1;
            if (++y > YEAR_MAX)
                goto done;
        }
        d = 1, H = M = S = 0;
    }
done:
    s->next_memo = 1;
    s->next_q = w;
    s->next_r = r;
    return r;
}

/* Largest matching wall time <= w, or NONE_LO (none since year 1). */
static int64_t prev_local(search *s, int64_t w)
{
    const kaal_cron *c = s->c;
    int64_t y, r = NONE_LO;
    int m, d, H, M, S;

    if (s->prev_memo && w <= s->prev_q && w >= s->prev_r)
        return s->prev_r;
    if (w < WALL_MIN)
        goto done;
    if (w > WALL_MAX)
        w = WALL_MAX;
    split(w, &y, &m, &d, &H, &M, &S);
    for (;;) {
        uint32_t dm;
        int m2 = prev_bit(c->months, m);
        if (m2 < 0) {
            if (--y < YEAR_MIN)
                goto done;
            m = 12, d = 31, H = 23, M = S = 59;
            continue;
        }
        if (m2 != m)
            m = m2, d = 31, H = 23, M = S = 59;
        dm = month_mask(s, y, m);
        for (;;) {
            int d2 = prev_bit(dm, d), H2, M2, S2;
            if (d2 < 0)
                break;
            if (d2 != d)
                d = d2, H = 23, M = S = 59;
            H2 = prev_bit(c->hours, H);
            if (H2 < 0) {
                d--, H = 23, M = S = 59;
                continue;
            }
            if (H2 != H)
                H = H2, M = S = 59;
            M2 = prev_bit(c->minutes, M);
            if (M2 < 0) {
                H--, M = S = 59;
                continue;
            }
            if (M2 != M)
                M = M2, S = 59;
            S2 = prev_bit(c->seconds, S);
            if (S2 < 0) {
                M--, S = 59;
                continue;
            }
            r = wall_of(y, m, d, H, M, S2);
            goto done;
        }
        if (--m < 1) {
            m = 12;
            if (--y < YEAR_MIN)
                goto done;
        }
        d = 31, H = 23, M = S = 59;
    }
done:
    s->prev_memo = 1;
    s->prev_q = w;
    s->prev_r = r;
    return r;
}

static int range_error(kaal_error *err)
{
    return kaal_error_set(err, KAAL_ERANGE, "time", -1,
                          "no fire time within years 1-9999 in that direction");
}

int kaal_cron_next(const kaal_cron *c, const kaal_tz *tz, int64_t from, int64_t *out,
                   kaal_error *err)
{
    search se;
    kaal_tz_span sp;
    int64_t t0, best = NONE_HI;
    int fixed = (c->flags & KAAL_CRON_FIXED_TIME) != 0;

    if (from < FROM_MIN || from > FROM_MAX)
        return range_error(err);
    search_init(&se, c);
    t0 = from + 1;
    kaal_tz_span_at(tz, t0, &sp);
    for (;;) {
        int64_t lo, wlo, whi, r;
        int has_start = sp.start > KAAL_TZ_MIN_INSTANT;
        /* DST gap at the start of the span: missing walls fire at
         * wall - prev_off, i.e. within [start, start + gap). */
        if (has_start && sp.off > sp.prev_off) {
            wlo = sp.start + sp.prev_off;
            if (t0 + sp.prev_off > wlo)
                wlo = t0 + sp.prev_off;
            whi = sp.start + sp.off - 1;
            if (wlo <= whi) {
                r = next_local(&se, wlo);
                if (r <= whi && r - sp.prev_off < best)
                    best = r - sp.prev_off;
            }
        }
        lo = t0 > sp.start ? t0 : sp.start;
        wlo = lo + sp.off;
        /* Overlap, second pass: fixed times already fired the first time. */
        if (fixed && has_start && sp.prev_off > sp.off && wlo < sp.start + sp.prev_off)
            wlo = sp.start + sp.prev_off;
        whi = sp.end - 1 + sp.off;
        if (wlo <= whi) {
            r = next_local(&se, wlo);
            if (r != NONE_HI && r <= whi && r - sp.off < best)
                best = r - sp.off;
        }
        if (sp.end >= KAAL_TZ_MAX_INSTANT || best <= sp.end || sp.end > FROM_MAX)
            break;
        kaal_tz_span_at(tz, sp.end, &sp);
    }
    if (best == NONE_HI)
        return range_error(err);
    *out = best;
    return KAAL_OK;
}

int kaal_cron_prev(const kaal_cron *c, const kaal_tz *tz, int64_t from, int64_t *out,
                   kaal_error *err)
{
    search se;
    kaal_tz_span sp, pv;
    int64_t t0, best = NONE_LO;
    int fixed = (c->flags & KAAL_CRON_FIXED_TIME) != 0;

    if (from < FROM_MIN || from > FROM_MAX)
        return range_error(err);
    search_init(&se, c);
    t0 = from - 1;
    kaal_tz_span_at(tz, t0, &sp);
    for (;;) {
        int64_t hi, wlo, whi, r, ub;
        int has_start = sp.start > KAAL_TZ_MIN_INSTANT;
        hi = t0 < sp.end - 1 ? t0 : sp.end - 1;
        whi = hi + sp.off;
        wlo = sp.start + sp.off;
        if (fixed && has_start && sp.prev_off > sp.off)
            wlo = sp.start + sp.prev_off;
        if (wlo <= whi) {
            r = prev_local(&se, whi);
            if (r != NONE_LO && r >= wlo && r - sp.off > best)
                best = r - sp.off;
        }
        if (has_start && sp.off > sp.prev_off) {
            wlo = sp.start + sp.prev_off;
            whi = sp.start + sp.off - 1;
            if (t0 + sp.prev_off < whi)
                whi = t0 + sp.prev_off;
            if (wlo <= whi) {
                r = prev_local(&se, whi);
                if (r != NONE_LO && r >= wlo && r - sp.prev_off > best)
                    best = r - sp.prev_off;
            }
        }
        if (!has_start || sp.start < FROM_MIN)
            break;
        kaal_tz_span_at(tz, sp.start - 1, &pv);
        /* Candidates of earlier spans are below pv.end, except gap fires
         * that can run past a span shorter than its gap. */
        ub = pv.end - 1;
        if (pv.start > KAAL_TZ_MIN_INSTANT && pv.off > pv.prev_off &&
            pv.start + (pv.off - pv.prev_off) - 1 > ub)
            ub = pv.start + (pv.off - pv.prev_off) - 1;
        if (best != NONE_LO && best >= ub)
            break;
        sp = pv;
    }
    if (best == NONE_LO)
        return range_error(err);
    *out = best;
    return KAAL_OK;
}

int kaal_cron_match(const kaal_cron *c, const kaal_tz *tz, int64_t t)
{
    int64_t r;
    if (t - 1 < FROM_MIN || t - 1 > FROM_MAX)
        return 0;
    return kaal_cron_next(c, tz, t - 1, &r, NULL) == KAAL_OK && r == t;
}

/* ================================================================= parser */

enum { F_SEC, F_MIN, F_HOUR, F_DOM, F_MON, F_DOW, F_COUNT };

static const char *const field_names[F_COUNT] = {"second", "minute", "hour",
                                                 "day of month", "month", "day of week"};
static const int field_lo[F_COUNT] = {0, 0, 0, 1, 1, 0};
static const int field_hi[F_COUNT] = {59, 59, 23, 31, 12, 7};
/* Top of `*` and `a/s`: day of week runs over 0-6. */
static const int field_top[F_COUNT] = {59, 59, 23, 31, 12, 6};

static const char month_names[12][4] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                        "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
static const char day_names[7][4] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

typedef struct parser {
    const char *expr;
    size_t len;
    kaal_error *err;
} parser;

static int perr(parser *p, int field, const char *tok, size_t toklen, const char *what)
{
    int off = (int)(tok - p->expr);
    int elen = (int)kaal_utf8_clip(p->expr, p->len, 100);
    int tlen = (int)kaal_utf8_clip(tok, toklen, 40);
    if (toklen == 0)
        return kaal_error_set(p->err, KAAL_ESYNTAX, field_names[field], off,
                              "%s field: empty list item at offset %d in \"%.*s%s\"",
                              field_names[field], off, elen, p->expr, p->len > 100 ? "..." : "");
    return kaal_error_set(p->err, KAAL_ESYNTAX, field_names[field], off,
                          "%s field: \"%.*s\" %s in \"%.*s%s\"", field_names[field], tlen, tok,
                          what, elen, p->expr, p->len > 100 ? "..." : "");
}

static int upper(int ch) { return ch >= 'a' && ch <= 'z' ? ch - 32 : ch; }
static int is_digit(int ch) { return ch >= '0' && ch <= '9'; }
static int is_alpha(int ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'); }

/* A value at [s, e): digits, or a month/weekday name in those fields.
 * Returns 1 and sets *v; *named tells a name was used. 0 = not a value
 * (garbage), -1 = unknown name. */
static int parse_value(int field, const char *s, const char *e, int *v, int *named)
{
    *named = 0;
    if (s >= e)
        return 0;
    if (is_digit((unsigned char)*s)) {
        long n = 0;
        const char *q;
        for (q = s; q < e; q++) {
            if (!is_digit((unsigned char)*q))
                return 0;
            if (n < 100000)
                n = n * 10 + (*q - '0');
        }
        *v = (int)n;
        return 1;
    }
    if (e - s == 3 && is_alpha((unsigned char)s[0]) && is_alpha((unsigned char)s[1]) &&
        is_alpha((unsigned char)s[2])) {
        int i;
        char u[3] = {(char)upper((unsigned char)s[0]), (char)upper((unsigned char)s[1]),
                     (char)upper((unsigned char)s[2])};
        if (field == F_MON) {
            for (i = 0; i < 12; i++)
                if (memcmp(u, month_names[i], 3) == 0) {
                    *v = i + 1;
                    *named = 1;
                    return 1;
                }
        } else if (field == F_DOW) {
            for (i = 0; i < 7; i++)
                if (memcmp(u, day_names[i], 3) == 0) {
                    *v = i;
                    *named = 1;
                    return 1;
                }
        }
        return -1;
    }
    for (; s < e; s++)
        if (!is_alpha((unsigned char)*s))
            return 0;
    return -1;
}

static int value_or_error(parser *p, int field, const char *item, size_t ilen, const char *s,
                          const char *e, int *v, int *named)
{
    int rc = parse_value(field, s, e, v, named);
    if (rc == 1) {
        if (*v < field_lo[field] || *v > field_hi[field]) {
            char what[48];
            snprintf(what, sizeof what, "is out of range %d-%d", field_lo[field],
                     field_hi[field]);
            return perr(p, field, item, ilen, what);
        }
        return KAAL_OK;
    }
    if (rc < 0)
        return perr(p, field, item, ilen,
                    field == F_MON   ? "is not a month (JAN-DEC or 1-12)"
                    : field == F_DOW ? "is not a day of the week (SUN-SAT or 0-7)"
                                     : "is not a number");
    return perr(p, field, item, ilen, "is not valid");
}

/* Day-of-month and day-of-week extras. Returns 1 when handled, 0 when the
 * item is not an extra, -1 after filling the error. */
static int parse_extra(parser *p, int field, const char *s, const char *e, kaal_cron *c)
{
    size_t n = (size_t)(e - s);
    if (field == F_DOM) {
        if (n == 1 && upper((unsigned char)s[0]) == 'L') {
            c->last_offsets |= 1u;
            return 1;
        }
        if (n == 2 && upper((unsigned char)s[0]) == 'L' && upper((unsigned char)s[1]) == 'W') {
            c->last_weekday = 1;
            return 1;
        }
        if (n >= 3 && upper((unsigned char)s[0]) == 'L' && s[1] == '-') {
            int v, named;
            if (parse_value(F_DOM, s + 2, e, &v, &named) != 1 || named)
                return (perr(p, field, s, n, "is not valid (expected L-n)"), -1);
            if (v > 30)
                return (perr(p, field, s, n, "is out of range L-0 to L-30"), -1);
            c->last_offsets |= 1u << v;
            return 1;
        }
        if (n >= 2 && upper((unsigned char)e[-1]) == 'W' && is_digit((unsigned char)s[0])) {
            int v, named;
            if (parse_value(F_DOM, s, e - 1, &v, &named) != 1)
                return (perr(p, field, s, n, "is not valid (expected nW)"), -1);
            if (v < 1 || v > 31)
                return (perr(p, field, s, n, "is out of range 1W-31W"), -1);
            c->near_weekday |= 1u << v;
            return 1;
        }
        return 0;
    }
    if (field == F_DOW) {
        const char *hash = memchr(s, '#', n);
        if (hash) {
            int d, k, named, kn;
            if (parse_value(F_DOW, s, hash, &d, &named) != 1 || d > 7)
                return (perr(p, field, s, n, "is not valid (expected weekday#1-5)"), -1);
            if (parse_value(F_SEC, hash + 1, e, &k, &kn) != 1 || k < 1 || k > 5)
                return (perr(p, field, s, n, "is out of range (expected weekday#1-5)"), -1);
            c->nth_dow[d % 7] |= (uint8_t)(1u << k);
            return 1;
        }
        if (n >= 2 && upper((unsigned char)e[-1]) == 'L') {
            int d, named;
            if (parse_value(F_DOW, s, e - 1, &d, &named) != 1 || d > 7)
                return (perr(p, field, s, n, "is not valid (expected weekdayL)"), -1);
            c->last_dow |= (uint8_t)(1u << (d % 7));
            return 1;
        }
    }
    return 0;
}

/* One field token [s, e). */
static int parse_field(parser *p, int field, const char *s, const char *e, kaal_cron *c,
                       uint64_t *bits_out)
{
    uint64_t bits = 0;
    const char *item = s;
    for (;;) {
        const char *ie = item, *slash;
        size_t ilen;
        int lo, hi, step = 1, rc;
        while (ie < e && *ie != ',')
            ie++;
        ilen = (size_t)(ie - item);
        if (ilen == 0)
            return perr(p, field, item, 0, "is an empty list item");
        slash = memchr(item, '/', ilen);
        rc = parse_extra(p, field, item, slash ? slash : ie, c);
        if (rc == 1 && slash)
            return perr(p, field, item, ilen, "cannot take a step");
        if (rc < 0)
            return KAAL_ESYNTAX;
        if (rc == 0) {
            const char *be = slash ? slash : ie, *dash;
            if (be - item == 1 && (*item == '*' || *item == '?')) {
                if (*item == '?' && field != F_DOM && field != F_DOW)
                    return perr(p, field, item, ilen,
                                "is not allowed (? only in day of month and day of week)");
                lo = field_lo[field];
                hi = field_top[field];
            } else {
                int named, v;
                dash = memchr(item, '-', (size_t)(be - item));
                if (dash) {
                    int named2;
                    if ((rc = value_or_error(p, field, item, ilen, item, dash, &lo, &named)))
                        return rc;
                    if ((rc = value_or_error(p, field, item, ilen, dash + 1, be, &hi, &named2)))
                        return rc;
                    if (field == F_DOW && named2 && hi == 0 && lo > 0)
                        hi = 7; /* a range ending in SUN runs to 7 */
                    if (lo > hi)
                        return perr(p, field, item, ilen, "is a descending range");
                } else {
                    if ((rc = value_or_error(p, field, item, ilen, item, be, &v, &named)))
                        return rc;
                    lo = v;
                    hi = slash ? (field_top[field] > v ? field_top[field] : v) : v;
                }
            }
            if (slash) {
                int sv, named;
                int rc2 = parse_value(F_SEC, slash + 1, ie, &sv, &named);
                if (rc2 != 1)
                    return perr(p, field, item, ilen, "has an invalid step");
                if (sv == 0)
                    return perr(p, field, item, ilen, "has a step of 0");
                if (sv > field_hi[field] - field_lo[field] + 1)
                    return perr(p, field, item, ilen, "has a step larger than the field");
                step = sv;
            }
            for (; lo <= hi; lo += step)
                bits |= (uint64_t)1 << lo;
        }
        if (ie >= e)
            break;
        item = ie + 1;
    }
    if (field == F_DOW && (bits & 0x80))
        bits = (bits | 1) & 0x7f;
    *bits_out = bits;
    return KAAL_OK;
}

static int is_space(int ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'; }

static int zone_like(const char *s, size_t n)
{
    size_t i;
    if (n == 0 || !is_alpha((unsigned char)s[0]))
        return 0;
    for (i = 0; i < n; i++) {
        char ch = s[i];
        if (!(is_alpha((unsigned char)ch) || is_digit((unsigned char)ch) || ch == '_' ||
              ch == '+' || ch == '-' || ch == '/'))
            return 0;
    }
    return 1;
}

/* Whether any day of any month in the month set ever matches: walk the
 * months of one full 400-year Gregorian cycle (the calendar repeats). */
static int can_fire(const kaal_cron *c)
{
    int64_t y, days = kaal_days_from_civil(2000, 1, 1);
    for (y = 2000; y < 2400; y++) {
        int m;
        for (m = 1; m <= 12; m++) {
            int len = kaal_days_in_month(y, m);
            if ((c->months >> m & 1) && day_mask_for(c, len, kaal_weekday(days)))
                return 1;
            days += len;
        }
    }
    return 0;
}

static const struct {
    const char *name;
    const char *expansion;
} macros[] = {{"@yearly", "0 0 1 1 *"},  {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
              {"@weekly", "0 0 * * 0"},  {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
              {"@hourly", "0 * * * *"}};

static int parse_fields(parser *p, const char *const *ts, const size_t *tl, int nf,
                        kaal_cron *c)
{
    int first = nf == 6 ? F_SEC : F_MIN, i, rc;
    uint64_t bits[F_COUNT];
    bits[F_SEC] = 1;
    for (i = 0; i < nf; i++) {
        int f = first + i;
        if ((rc = parse_field(p, f, ts[i], ts[i] + tl[i], c, &bits[f])))
            return rc;
    }
    c->seconds = bits[F_SEC];
    c->minutes = bits[F_MIN];
    c->hours = (uint32_t)bits[F_HOUR];
    c->days = (uint32_t)bits[F_DOM];
    c->months = (uint16_t)bits[F_MON];
    c->weekdays = (uint8_t)bits[F_DOW];
    if (nf == 6)
        c->flags |= KAAL_CRON_HAS_SECONDS;
    {
        const char *dom = ts[F_DOM - first], *dow = ts[F_DOW - first];
        const char *mn = ts[F_MIN - first], *hr = ts[F_HOUR - first];
        if (*dom == '*' || *dom == '?')
            c->flags |= KAAL_CRON_DOM_STAR;
        if (*dow == '*' || *dow == '?')
            c->flags |= KAAL_CRON_DOW_STAR;
        if (*mn != '*' && *hr != '*')
            c->flags |= KAAL_CRON_FIXED_TIME;
    }
    return KAAL_OK;
}

/* The whitespace-separated tokens of an expression (at most 8). */
typedef struct tokens {
    const char *s[8];
    size_t l[8];
    int n;
} tokens;

/* How much of expr an error message quotes (100 bytes, whole characters). */
static int quoted(const char *expr, size_t len) { return (int)kaal_utf8_clip(expr, len, 100); }

static int split_tokens(const char *expr, size_t len, tokens *t, kaal_error *err)
{
    size_t i = 0;
    t->n = 0;
    while (i < len) {
        size_t st;
        while (i < len && is_space((unsigned char)expr[i]))
            i++;
        if (i >= len)
            break;
        st = i;
        while (i < len && !is_space((unsigned char)expr[i]))
            i++;
        if (t->n == 8)
            return kaal_error_set(err, KAAL_ESYNTAX, "expression", (int)st,
                                  "expression: too many fields in \"%.*s%s\"", quoted(expr, len),
                                  expr, len > 100 ? "..." : "");
        t->s[t->n] = expr + st;
        t->l[t->n] = i - st;
        t->n++;
    }
    if (t->n == 0)
        return kaal_error_set(err, KAAL_ESYNTAX, "expression", 0,
                              "expression: empty cron expression");
    return KAAL_OK;
}

/* A trailing time zone name: moved from the tokens into c->zone. It is the
 * 7th token, the 2nd after a macro, or a 6th that cannot be a day of week
 * (a name with a '/' before a letter, or no valid field at all). */
static int take_zone(const char *expr, size_t len, tokens *t, kaal_cron *c, kaal_error *err)
{
    int n = t->n, has_zone = 0;
    size_t zl;
    if (n < 2 || !zone_like(t->s[n - 1], t->l[n - 1]))
        return KAAL_OK;
    if (n == 7 || (n == 2 && t->s[0][0] == '@')) {
        has_zone = 1;
    } else if (n == 6) {
        kaal_cron scratch;
        uint64_t b;
        parser quiet = {expr, len, NULL};
        const char *z = t->s[5], *sl = memchr(z, '/', t->l[5]);
        memset(&scratch, 0, sizeof scratch);
        if ((sl && sl + 1 < z + t->l[5] && is_alpha((unsigned char)sl[1])) ||
            (t->l[5] >= 2 && parse_field(&quiet, F_DOW, z, z + t->l[5], &scratch, &b) != KAAL_OK))
            has_zone = 1;
    }
    if (!has_zone)
        return KAAL_OK;
    zl = t->l[n - 1];
    if (zl >= sizeof c->zone)
        return kaal_error_set(err, KAAL_ESYNTAX, "expression", (int)(t->s[n - 1] - expr),
                              "expression: time zone name \"%.*s...\" is too long",
                              (int)kaal_utf8_clip(t->s[n - 1], zl, 40), t->s[n - 1]);
    memcpy(c->zone, t->s[n - 1], zl);
    c->zone[zl] = '\0';
    t->n--;
    return KAAL_OK;
}

/* A macro (@daily, ...; case-insensitive), alone: its five fields into c. */
static int parse_macro(const char *expr, size_t len, const tokens *t, kaal_cron *c, kaal_error *err)
{
    const char *exp = NULL;
    size_t k;
    if (t->n != 1) {
        int x = t->n > 2 && zone_like(t->s[1], t->l[1]) ? 2 : 1; /* first token too many */
        return kaal_error_set(err, KAAL_ESYNTAX, "expression", (int)(t->s[x] - expr),
                              "expression: \"%.*s\" is unexpected: %.*s takes only an "
                              "optional time zone, in \"%.*s%s\"",
                              (int)kaal_utf8_clip(t->s[x], t->l[x], 40), t->s[x], (int)t->l[0],
                              t->s[0], quoted(expr, len), expr, len > 100 ? "..." : "");
    }
    for (k = 0; k < sizeof macros / sizeof macros[0] && !exp; k++) {
        size_t ml = strlen(macros[k].name), j;
        if (ml != t->l[0])
            continue;
        for (j = 0; j < ml && upper((unsigned char)t->s[0][j]) == upper(macros[k].name[j]); j++)
            ;
        if (j == ml)
            exp = macros[k].expansion;
    }
    if (!exp)
        return kaal_error_set(err, KAAL_ESYNTAX, "expression", (int)(t->s[0] - expr),
                              "expression: unknown macro \"%.*s\" (expected @yearly, "
                              "@annually, @monthly, @weekly, @daily, @midnight or @hourly)",
                              (int)kaal_utf8_clip(t->s[0], t->l[0], 40), t->s[0]);
    {
        parser mp = {exp, strlen(exp), err};
        const char *mts[5];
        size_t mtl[5];
        int j;
        for (j = 0; j < 5; j++) { /* an expansion is five one-character fields */
            mts[j] = exp + 2 * j;
            mtl[j] = 1;
        }
        return parse_fields(&mp, mts, mtl, 5, c);
    }
}

int kaal_cron_parse(const char *expr, size_t len, kaal_cron *out, kaal_error *err)
{
    parser p = {expr, len, err};
    tokens t;
    kaal_cron c;
    int rc;

    memset(&c, 0, sizeof c);
    if ((rc = split_tokens(expr, len, &t, err)) || (rc = take_zone(expr, len, &t, &c, err)))
        return rc;
    if (t.s[0][0] == '@') {
        if ((rc = parse_macro(expr, len, &t, &c, err)))
            return rc;
    } else {
        if (t.n != 5 && t.n != 6)
            return kaal_error_set(err, KAAL_ESYNTAX, "expression", 0,
                                  "expression: expected 5 or 6 fields (optionally followed by a "
                                  "time zone), got %d in \"%.*s%s\"",
                                  t.n, quoted(expr, len), expr, len > 100 ? "..." : "");
        if ((rc = parse_fields(&p, t.s, t.l, t.n, &c)))
            return rc;
    }
    if (!can_fire(&c))
        return kaal_error_set(err, KAAL_ENEVER, "expression", 0,
                              "expression: \"%.*s%s\" can never fire (no day matches its day of "
                              "month, month and day of week)",
                              quoted(expr, len), expr, len > 100 ? "..." : "");
    *out = c;
    if (err)
        kaal_error_clear(err);
    return KAAL_OK;
}
