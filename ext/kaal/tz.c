/* kaal: TZif reader (RFC 8536, versions 1-4) with the POSIX TZ footer rule.
 *
 * A loaded zone is a sorted table of offset changes: `times[i]` is the first
 * instant at which `offs[i]` is in force, `off0` before times[0]. Records
 * that change only the abbreviation or the DST flag are merged away, so every
 * entry is a real change of UTC offset. The footer rule (for instants after
 * the file's last transition) is expanded into the same table for a little
 * over 400 years; because the Gregorian calendar repeats every 400 years,
 * instants beyond the table are shifted back by whole cycles. Lookups are
 * therefore one binary search.
 *
 * Cache: every zone loaded is kept for the life of the process in a singly
 * linked list guarded by `cache_lock` (the only mutable global here). Zones
 * are immutable once published, so readers need no lock. */
#include "tz.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "civil.h"

#define NAME_MAX_LEN 127
#define MAX_FILE_SIZE (4 * 1024 * 1024)

struct kaal_tz {
    struct kaal_tz *next; /* cache list */
    int64_t *times;
    int32_t *offs;
    size_t n;
    int32_t off0;
    int cyclic;          /* instants >= cycle_end are shifted back */
    int64_t cycle_start; /* table is rule-generated on [cycle_start, cycle_end + a year) */
    int64_t cycle_end;   /* cycle_start + KAAL_CYCLE_SECONDS */
    char name[NAME_MAX_LEN + 1];
};

static kaal_tz utc_zone = {NULL, NULL, NULL, 0, 0, 0, 0, 0, "UTC"};
static kaal_tz etc_utc_zone = {NULL, NULL, NULL, 0, 0, 0, 0, 0, "Etc/UTC"};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static kaal_tz *cache_head; /* guarded by cache_lock */

const kaal_tz *kaal_tz_utc(void) { return &utc_zone; }

const char *kaal_tz_name(const kaal_tz *tz) { return tz ? tz->name : "UTC"; }

/* ------------------------------------------------------------------ lookup */

/* Index of the last entry with times[i] <= t, or -1. */
static long find_index(const kaal_tz *tz, int64_t t)
{
    size_t lo = 0, hi = tz->n; /* answer count in [lo, hi] */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (tz->times[mid] <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (long)lo - 1;
}

static int64_t cycle_shift(const kaal_tz *tz, int64_t t)
{
    if (tz->cyclic && t >= tz->cycle_end)
        return (kaal_floor_div(t - tz->cycle_start, KAAL_CYCLE_SECONDS)) * KAAL_CYCLE_SECONDS;
    return 0;
}

int32_t kaal_tz_offset_at(const kaal_tz *tz, int64_t t)
{
    long i;
    if (!tz || tz->n == 0)
        return tz ? tz->off0 : 0;
    t -= cycle_shift(tz, t);
    i = find_index(tz, t);
    return i < 0 ? tz->off0 : tz->offs[i];
}

void kaal_tz_span_at(const kaal_tz *tz, int64_t t, kaal_tz_span *out)
{
    int64_t shift;
    long i;
    if (!tz || tz->n == 0) {
        out->start = KAAL_TZ_MIN_INSTANT;
        out->end = KAAL_TZ_MAX_INSTANT;
        out->off = out->prev_off = tz ? tz->off0 : 0;
        return;
    }
    shift = cycle_shift(tz, t);
    i = find_index(tz, t - shift);
    if (i < 0) {
        out->start = KAAL_TZ_MIN_INSTANT;
        out->end = tz->times[0];
        out->off = out->prev_off = tz->off0;
        return; /* never shifted: the cycle starts after times[0] */
    }
    out->start = tz->times[i] + shift;
    out->off = tz->offs[i];
    out->prev_off = i > 0 ? tz->offs[i - 1] : tz->off0;
    if ((size_t)i + 1 < tz->n)
        out->end = tz->times[i + 1] + shift;
    else
        out->end = KAAL_TZ_MAX_INSTANT;
}

/* Offsets in the database stay within +-26 h (local mean times included). */
#define MAX_ABS_OFFSET (26 * 3600)

int kaal_tz_local_to_utc(const kaal_tz *tz, int64_t local, int64_t out[2])
{
    kaal_tz_span s;
    int64_t t = local - MAX_ABS_OFFSET, limit = local + MAX_ABS_OFFSET;
    int found = 0;
    int64_t gap_answer = 0;
    int have_gap = 0;

    for (;;) {
        int64_t cand;
        kaal_tz_span_at(tz, t, &s);
        cand = local - s.off;
        if (cand >= s.start && cand < s.end) {
            if (found < 2)
                out[found] = cand;
            found++;
        }
        /* The gap at the start of this span covers walls [start+prev, start+off). */
        if (!have_gap && s.off > s.prev_off && local >= s.start + s.prev_off &&
            local < s.start + s.off) {
            gap_answer = local - s.prev_off;
            have_gap = 1;
        }
        if (s.end > limit || s.end >= KAAL_TZ_MAX_INSTANT)
            break;
        t = s.end;
    }
    if (found == 0) {
        out[0] = have_gap ? gap_answer : local - kaal_tz_offset_at(tz, local);
        return 0;
    }
    return found > 2 ? 2 : found;
}

/* ------------------------------------------------------- POSIX TZ footer */

typedef struct tzrule {
    char kind; /* 'J' (1..365, no Feb 29), 'D' (0..365), 'M' */
    int n, m, w, d;
    int32_t time; /* seconds after local midnight, may be negative or > 24 h */
} tzrule;

typedef struct posix_tz {
    int32_t std_off, dst_off; /* UTC offsets (east positive) */
    int has_dst;
    tzrule start, end;
} posix_tz;

static const char *parse_abbr(const char *p)
{
    const char *s = p;
    if (*p == '<') {
        while (*p && *p != '>')
            p++;
        return *p == '>' ? p + 1 : NULL;
    }
    while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))
        p++;
    return p - s >= 3 ? p : NULL;
}

static const char *parse_num(const char *p, int *out, int maxdigits)
{
    int v = 0, k = 0;
    while (*p >= '0' && *p <= '9' && k < maxdigits) {
        v = v * 10 + (*p - '0');
        p++;
        k++;
    }
    if (k == 0)
        return NULL;
    *out = v;
    return p;
}

/* [+-]h[hh][:mm[:ss]] -> seconds (sign applied as written). */
static const char *parse_hms(const char *p, int32_t *out)
{
    int sign = 1, h = 0, m = 0, s = 0;
    if (*p == '+' || *p == '-') {
        if (*p == '-')
            sign = -1;
        p++;
    }
    if (!(p = parse_num(p, &h, 3)) || h > 167)
        return NULL;
    if (*p == ':') {
        if (!(p = parse_num(p + 1, &m, 2)) || m > 59)
            return NULL;
        if (*p == ':') {
            if (!(p = parse_num(p + 1, &s, 2)) || s > 59)
                return NULL;
        }
    }
    *out = sign * (h * 3600 + m * 60 + s);
    return p;
}

static const char *parse_rule(const char *p, tzrule *r)
{
    r->time = 2 * 3600;
    if (*p == 'J') {
        r->kind = 'J';
        if (!(p = parse_num(p + 1, &r->n, 3)) || r->n < 1 || r->n > 365)
            return NULL;
    } else if (*p == 'M') {
        r->kind = 'M';
        if (!(p = parse_num(p + 1, &r->m, 2)) || r->m < 1 || r->m > 12 || *p != '.')
            return NULL;
        if (!(p = parse_num(p + 1, &r->w, 1)) || r->w < 1 || r->w > 5 || *p != '.')
            return NULL;
        if (!(p = parse_num(p + 1, &r->d, 1)) || r->d > 6)
            return NULL;
    } else {
        r->kind = 'D';
        if (!(p = parse_num(p, &r->n, 3)) || r->n > 365)
            return NULL;
    }
    if (*p == '/') {
        if (!(p = parse_hms(p + 1, &r->time)))
            return NULL;
    }
    return p;
}

/* The lookups assume offsets within MAX_ABS_OFFSET: a rule or a type beyond
 * it (POSIX allows hours up to 167) makes the file malformed. */
static int offset_ok(int32_t off) { return off >= -MAX_ABS_OFFSET && off <= MAX_ABS_OFFSET; }

static int parse_posix(const char *p, posix_tz *tz)
{
    int32_t v;
    memset(tz, 0, sizeof *tz);
    if (!(p = parse_abbr(p)) || !(p = parse_hms(p, &v)))
        return 0;
    tz->std_off = -v;
    if (*p == '\0')
        return offset_ok(tz->std_off);
    if (!(p = parse_abbr(p)))
        return 0;
    tz->has_dst = 1;
    tz->dst_off = tz->std_off + 3600;
    if (*p != ',' && *p != '\0') {
        if (!(p = parse_hms(p, &v)))
            return 0;
        tz->dst_off = -v;
    }
    if (*p == '\0') { /* POSIX leaves it to the implementation: US rules */
        tz->start = (tzrule){'M', 0, 3, 2, 0, 7200};
        tz->end = (tzrule){'M', 0, 11, 1, 0, 7200};
        return offset_ok(tz->std_off) && offset_ok(tz->dst_off);
    }
    if (*p != ',' || !(p = parse_rule(p + 1, &tz->start)) || *p != ',' ||
        !(p = parse_rule(p + 1, &tz->end)))
        return 0;
    return *p == '\0' && offset_ok(tz->std_off) && offset_ok(tz->dst_off);
}

/* Local midnight (as local seconds) of the rule's day in year y, plus time. */
static int64_t rule_local(const tzrule *r, int64_t y)
{
    int64_t days = kaal_days_from_civil(y, 1, 1);
    if (r->kind == 'J') {
        days += r->n - 1 + (kaal_is_leap(y) && r->n >= 60);
    } else if (r->kind == 'D') {
        days += r->n;
    } else {
        int64_t first = kaal_days_from_civil(y, r->m, 1);
        int wd1 = kaal_weekday(first);
        int day = 1 + (r->d - wd1 + 7) % 7 + 7 * (r->w - 1);
        int len = kaal_days_in_month(y, r->m);
        while (day > len)
            day -= 7;
        days = first + day - 1;
    }
    return days * KAAL_DAY + r->time;
}

/* ------------------------------------------------------------ table build */

typedef struct builder {
    int64_t *times;
    int32_t *offs;
    size_t n, cap;
    int32_t off0;
    int failed;
} builder;

static void push(builder *b, int64_t t, int32_t off)
{
    int32_t cur = b->n ? b->offs[b->n - 1] : b->off0;
    if (b->n && b->times[b->n - 1] >= t) {
        if (b->times[b->n - 1] == t) { /* same instant: the later record wins */
            int32_t before = b->n > 1 ? b->offs[b->n - 2] : b->off0;
            b->offs[b->n - 1] = off;
            if (before == off)
                b->n--;
        }
        return;
    }
    if (cur == off)
        return;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        int64_t *nt = realloc(b->times, cap * sizeof *nt);
        int32_t *no;
        if (!nt) {
            b->failed = 1;
            return;
        }
        b->times = nt;
        no = realloc(b->offs, cap * sizeof *no);
        if (!no) {
            b->failed = 1;
            return;
        }
        b->offs = no;
        b->cap = cap;
    }
    b->times[b->n] = t;
    b->offs[b->n] = off;
    b->n++;
}

static uint32_t be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static int64_t be64(const unsigned char *p)
{
    return (int64_t)(((uint64_t)be32(p) << 32) | be32(p + 4));
}

/* The data block of a TZif image that parse_tzif reads: the 64-bit one of a
 * version 2+ file, else the 32-bit one (tsize: bytes per transition time).
 * p points at its 44-byte header; block is the size of the data after it. */
typedef struct tzif_block {
    const unsigned char *p;
    int tsize;
    uint32_t timecnt, typecnt, leapcnt;
    size_t block;
} tzif_block;

/* Finds and checks the data block (every count bounded, every byte within
 * the image). 1 when found, 0 when malformed. */
static int tzif_locate(const unsigned char *data, size_t size, tzif_block *h)
{
    const unsigned char *p = data, *end = data + size;
    int version, tsize = 4;

    if (size < 44 || memcmp(p, "TZif", 4) != 0)
        return 0;
    version = p[4];
    for (;;) {
        uint32_t isutcnt, isstdcnt, charcnt;
        if ((size_t)(end - p) < 44)
            return 0;
        isutcnt = be32(p + 20);
        isstdcnt = be32(p + 24);
        h->leapcnt = be32(p + 28);
        h->timecnt = be32(p + 32);
        h->typecnt = be32(p + 36);
        charcnt = be32(p + 40);
        if (h->typecnt == 0 || h->typecnt > 256 || h->timecnt > 100000 || h->leapcnt > 100000 ||
            charcnt > 100000 || isutcnt > 256 || isstdcnt > 256)
            return 0;
        h->block = (size_t)h->timecnt * (tsize + 1) + (size_t)h->typecnt * 6 + charcnt +
                   (size_t)h->leapcnt * (tsize + 4) + isstdcnt + isutcnt;
        if ((size_t)(end - p) - 44 < h->block)
            return 0;
        if (tsize == 4 && version >= '2') { /* skip the 32-bit block */
            p += 44 + h->block;
            tsize = 8;
            if ((size_t)(end - p) < 44 || memcmp(p, "TZif", 4) != 0)
                return 0;
            continue;
        }
        break;
    }
    h->p = p;
    h->tsize = tsize;
    return 1;
}

/* The POSIX TZ rule in the footer of a version 2+ file ("\n<rule>\n" after
 * the 64-bit block): 1 when there is one and it parses into rule. */
static int tzif_footer(const tzif_block *h, const unsigned char *end, posix_tz *rule)
{
    const unsigned char *f = h->p + 44 + h->block, *nl;
    char buf[128];
    if (h->tsize != 8 || f >= end || *f != '\n')
        return 0;
    nl = memchr(f + 1, '\n', (size_t)(end - f - 1));
    if (!nl || nl - f - 1 <= 0 || nl - f - 1 >= 128)
        return 0;
    memcpy(buf, f + 1, (size_t)(nl - f - 1));
    buf[nl - f - 1] = '\0';
    return parse_posix(buf, rule);
}

/* The recorded transitions into b, after the offset before the first one.
 * 0 when a transition names a type that does not exist. */
static int tzif_transitions(const tzif_block *h, builder *b)
{
    const unsigned char *ttimes = h->p + 44;
    const unsigned char *tidx = ttimes + (size_t)h->timecnt * h->tsize;
    const unsigned char *ttypes = tidx + h->timecnt;
    uint32_t i;
    b->off0 = (int32_t)be32(ttypes);
    for (i = 0; i < h->timecnt; i++) {
        int64_t t = h->tsize == 8 ? be64(ttimes + (size_t)i * 8)
                                  : (int32_t)be32(ttimes + (size_t)i * 4);
        unsigned idx = tidx[i];
        if (idx >= h->typecnt)
            return 0;
        if (t <= KAAL_TZ_MIN_INSTANT / 2 || t >= KAAL_TZ_MAX_INSTANT / 2)
            continue; /* "big bang" sentinels */
        push(b, t, (int32_t)be32(ttypes + (size_t)idx * 6));
    }
    return 1;
}

/* A footer rule with daylight saving time, past the last recorded
 * transition: its transitions for 404 years from that year, after which
 * the zone repeats every 400 years (tz->cyclic, see docs/cron.md). */
static void extend_with_rule(builder *b, const posix_tz *rule, kaal_tz *tz)
{
    int64_t last = b->n ? b->times[b->n - 1] : KAAL_TZ_MIN_INSTANT;
    int64_t ylast, y, d;
    int mo, da;
    if (b->n) {
        kaal_civil_from_days(kaal_floor_div(last, KAAL_DAY), &ylast, &mo, &da);
    } else {
        ylast = 1969;
    }
    for (y = ylast; y <= ylast + 403; y++) {
        int64_t s = rule_local(&rule->start, y) - rule->std_off;
        int64_t e = rule_local(&rule->end, y) - rule->dst_off;
        if (s < e) {
            if (s > last)
                push(b, s, rule->dst_off);
            if (e > last)
                push(b, e, rule->std_off);
        } else {
            if (e > last)
                push(b, e, rule->std_off);
            if (s > last)
                push(b, s, rule->dst_off);
        }
    }
    d = kaal_days_from_civil(ylast + 2, 1, 1);
    tz->cyclic = 1;
    tz->cycle_start = d * KAAL_DAY;
    tz->cycle_end = tz->cycle_start + KAAL_CYCLE_SECONDS;
}

/* Parse a TZif image into tz (times/offs allocated). 1 on success, 0 when
 * malformed, 2 when the file counts leap seconds (the "right/" zones: their
 * timestamps are not Unix time, so they are refused rather than misread). */
static int parse_tzif(const unsigned char *data, size_t size, kaal_tz *tz)
{
    tzif_block h;
    const unsigned char *ttypes;
    builder b;
    posix_tz rule;
    int have_rule;
    uint32_t i;

    if (!tzif_locate(data, size, &h))
        return 0;
    if (h.leapcnt > 0)
        return 2;
    ttypes = h.p + 44 + (size_t)h.timecnt * (h.tsize + 1); /* after the times and their types */
    for (i = 0; i < h.typecnt; i++)
        if (!offset_ok((int32_t)be32(ttypes + (size_t)i * 6)))
            return 0;
    have_rule = tzif_footer(&h, data + size, &rule);

    memset(&b, 0, sizeof b);
    if (!tzif_transitions(&h, &b))
        goto fail;
    if (h.timecnt == 0 && have_rule)
        b.off0 = rule.std_off;

    tz->cyclic = 0;
    if (have_rule && rule.has_dst) {
        extend_with_rule(&b, &rule, tz);
    } else if (have_rule && b.n && b.offs[b.n - 1] != rule.std_off) {
        /* A fixed footer that disagrees with the last record: it governs
         * from the last transition on. */
        b.offs[b.n - 1] = rule.std_off;
    }
    if (b.failed)
        goto fail;
    tz->times = b.times;
    tz->offs = b.offs;
    tz->n = b.n;
    tz->off0 = b.off0;
    return 1;
fail:
    free(b.times);
    free(b.offs);
    return 0;
}

/* ----------------------------------------------------------------- loading */

static int valid_name(const char *name)
{
    const char *p;
    size_t len = strlen(name);
    if (len == 0 || len > NAME_MAX_LEN || name[0] == '/' || strstr(name, ".."))
        return 0;
    for (p = name; *p; p++) {
        char c = *p;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '+' || c == '-' || c == '/'))
            return 0;
    }
    return 1;
}

static unsigned char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t cap = 0, n = 0;
    if (!f)
        return NULL;
    for (;;) {
        size_t got;
        if (n == cap) {
            unsigned char *nb;
            if (cap >= MAX_FILE_SIZE)
                goto fail;
            cap = cap ? cap * 2 : 8192;
            nb = realloc(buf, cap);
            if (!nb)
                goto fail;
            buf = nb;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f))
                goto fail;
            break;
        }
    }
    fclose(f);
    *size = n;
    return buf;
fail:
    fclose(f);
    free(buf);
    return NULL;
}

static kaal_tz *load_file(const char *name, kaal_error *err)
{
    const char *dir = getenv("TZDIR");
    char path[4096];
    unsigned char *data;
    size_t size = 0;
    kaal_tz *tz;
    int rc;

    if (!dir || !*dir)
        dir = "/usr/share/zoneinfo";
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) {
        kaal_error_set(err, KAAL_EZONE, "time zone", -1, "unknown time zone \"%s\"", name);
        return NULL;
    }
    data = read_file(path, &size);
    if (!data) {
        kaal_error_set(err, KAAL_EZONE, "time zone", -1, "unknown time zone \"%s\"", name);
        return NULL;
    }
    tz = calloc(1, sizeof *tz);
    if (!tz) {
        free(data);
        kaal_error_set(err, KAAL_ENOMEM, "time zone", -1, "out of memory loading \"%s\"", name);
        return NULL;
    }
    rc = parse_tzif(data, size, tz);
    if (rc != 1) {
        free(data);
        free(tz);
        if (rc == 2)
            kaal_error_set(err, KAAL_EZONE, "time zone", -1,
                           "time zone \"%s\" counts leap seconds, which kaal does not support "
                           "(use the zone without the right/ prefix)",
                           name);
        else
            kaal_error_set(err, KAAL_EZONE, "time zone", -1,
                           "time zone \"%s\" is not a valid TZif file", name);
        return NULL;
    }
    free(data);
    snprintf(tz->name, sizeof tz->name, "%s", name);
    return tz;
}

const kaal_tz *kaal_tz_load(const char *name, kaal_error *err)
{
    kaal_tz *tz;
    if (!name || strcmp(name, "UTC") == 0)
        return &utc_zone;
    if (!valid_name(name)) {
        kaal_error_set(err, KAAL_EZONE, "time zone", -1, "invalid time zone name \"%.100s\"",
                       name);
        return NULL;
    }
    pthread_mutex_lock(&cache_lock);
    for (tz = cache_head; tz; tz = tz->next) {
        if (strcmp(tz->name, name) == 0) {
            pthread_mutex_unlock(&cache_lock);
            return tz;
        }
    }
    tz = load_file(name, err);
    if (tz) {
        tz->next = cache_head;
        cache_head = tz;
    }
    pthread_mutex_unlock(&cache_lock);
    if (!tz && strcmp(name, "Etc/UTC") == 0) {
        kaal_error_clear(err);
        return &etc_utc_zone;
    }
    return tz;
}
