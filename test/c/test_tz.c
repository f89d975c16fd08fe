/* Zone reader tests: known offsets, wall time -> instants, name checks,
 * the cache, and a cross-check of every zone in the system database against
 * the C library's own reader (localtime_r under TZ; used here only as an
 * independent oracle, never by kaal itself). */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>

#include "ktest.h"
#include "tz.h"

static const kaal_tz *load(const char *name)
{
    kaal_error err;
    const kaal_tz *tz = kaal_tz_load(name, &err);
    KT_CHECK(tz != NULL, "load %s: %s", name, tz ? "" : err.message);
    return tz;
}

static void test_known_offsets(void)
{
    static const struct {
        const char *zone, *at;
        int32_t off;
    } cases[] = {
        {"UTC", "2026-01-01T00:00:00Z", 0},
        {"America/New_York", "2026-01-15T12:00:00Z", -5 * 3600},
        {"America/New_York", "2026-07-15T12:00:00Z", -4 * 3600},
        {"America/New_York", "2026-03-08T06:59:59Z", -5 * 3600},
        {"America/New_York", "2026-03-08T07:00:00Z", -4 * 3600},
        {"America/New_York", "2026-11-01T05:59:59Z", -4 * 3600},
        {"America/New_York", "2026-11-01T06:00:00Z", -5 * 3600},
        {"America/New_York", "2050-07-01T00:00:00Z", -4 * 3600}, /* footer */
        {"America/New_York", "2099-12-01T00:00:00Z", -5 * 3600},
        {"America/New_York", "2450-07-01T00:00:00Z", -4 * 3600}, /* past the expanded table */
        {"America/New_York", "9999-03-14T06:59:59Z", -5 * 3600}, /* 2nd Sunday: 14th */
        {"America/New_York", "9999-03-14T07:00:00Z", -4 * 3600},
        {"Australia/Lord_Howe", "2026-01-15T00:00:00Z", 11 * 3600},
        {"Australia/Lord_Howe", "2026-07-15T00:00:00Z", 10 * 3600 + 1800},
        {"Australia/Lord_Howe", "2060-01-15T00:00:00Z", 11 * 3600},
        {"Australia/Lord_Howe", "2060-07-15T00:00:00Z", 10 * 3600 + 1800},
        {"Pacific/Chatham", "2026-01-15T00:00:00Z", 13 * 3600 + 2700},
        {"Pacific/Chatham", "2026-07-15T00:00:00Z", 12 * 3600 + 2700},
        {"Pacific/Chatham", "2077-07-15T00:00:00Z", 12 * 3600 + 2700},
        {"Europe/Dublin", "2026-01-15T00:00:00Z", 0},
        {"Europe/Dublin", "2026-07-15T00:00:00Z", 3600},
        {"Europe/Dublin", "2026-03-29T00:59:59Z", 0},
        {"Europe/Dublin", "2026-03-29T01:00:00Z", 3600},
        {"Europe/Dublin", "2026-10-25T00:59:59Z", 3600},
        {"Europe/Dublin", "2026-10-25T01:00:00Z", 0},
        {"Europe/Dublin", "2080-07-15T00:00:00Z", 3600},
        {"Europe/Dublin", "2080-12-15T00:00:00Z", 0},
        {"Pacific/Apia", "2011-12-29T12:00:00-10:00", -10 * 3600},
        {"Pacific/Apia", "2011-12-31T00:00:00+14:00", 14 * 3600},
        {"Pacific/Apia", "2030-07-01T00:00:00Z", 13 * 3600},
        {"America/St_Johns", "2026-01-15T00:00:00Z", -(3 * 3600 + 1800)},
        {"America/St_Johns", "2026-07-15T00:00:00Z", -(2 * 3600 + 1800)},
        {"America/St_Johns", "2090-07-15T00:00:00Z", -(2 * 3600 + 1800)},
        {"America/Nuuk", "2090-07-15T00:00:00Z", -3600},
        {"America/Nuuk", "2090-01-15T00:00:00Z", -2 * 3600},
        /* Nuuk: M3.5.0/-1 -> Saturday 23:00 local (-02) before the last Sunday */
        {"America/Nuuk", "2090-03-26T00:59:59Z", -2 * 3600},
        {"America/Nuuk", "2090-03-26T01:00:00Z", -3600},
        {"Asia/Kolkata", "2026-01-01T00:00:00Z", 5 * 3600 + 1800},
        {"Asia/Kathmandu", "2026-01-01T00:00:00Z", 5 * 3600 + 2700},
        {"Etc/GMT+5", "2026-01-01T00:00:00Z", -5 * 3600},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const kaal_tz *tz = load(cases[i].zone);
        int32_t got;
        if (!tz)
            continue;
        got = kaal_tz_offset_at(tz, kt_iso(cases[i].at));
        KT_CHECK(got == cases[i].off, "%s at %s: offset %d, expected %d", cases[i].zone,
                 cases[i].at, got, cases[i].off);
    }
}

static void test_local_to_utc(void)
{
    static const struct {
        const char *zone, *wall; /* wall as if UTC */
        int count;
        const char *first, *second;
    } cases[] = {
        {"America/New_York", "2026-03-08T01:59:00", 1, "2026-03-08T06:59:00Z", NULL},
        {"America/New_York", "2026-03-08T02:30:00", 0, "2026-03-08T07:30:00Z", NULL},
        {"America/New_York", "2026-03-08T03:00:00", 1, "2026-03-08T07:00:00Z", NULL},
        {"America/New_York", "2026-11-01T01:30:00", 2, "2026-11-01T05:30:00Z",
         "2026-11-01T06:30:00Z"},
        {"America/New_York", "2026-11-01T02:00:00", 1, "2026-11-01T07:00:00Z", NULL},
        {"Australia/Lord_Howe", "2026-10-04T02:15:00", 0, "2026-10-03T15:45:00Z", NULL},
        {"Australia/Lord_Howe", "2026-04-05T01:45:00", 2, "2026-04-04T14:45:00Z",
         "2026-04-04T15:15:00Z"},
        {"Pacific/Apia", "2011-12-30T12:00:00", 0, "2011-12-30T22:00:00Z", NULL},
        {"Pacific/Apia", "2011-12-31T00:00:00", 1, "2011-12-30T10:00:00Z", NULL},
        {"Europe/Dublin", "2026-10-25T01:30:00", 2, "2026-10-25T00:30:00Z",
         "2026-10-25T01:30:00Z"},
        {"Europe/Dublin", "2026-03-29T01:30:00", 0, "2026-03-29T01:30:00Z", NULL},
        {"America/Nuuk", "2090-03-25T23:30:00", 0, "2090-03-26T01:30:00Z", NULL},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const kaal_tz *tz = load(cases[i].zone);
        int64_t out[2] = {0, 0};
        int n;
        if (!tz)
            continue;
        n = kaal_tz_local_to_utc(tz, kt_iso(cases[i].wall), out);
        KT_CHECK(n == cases[i].count, "%s wall %s: %d instants, expected %d", cases[i].zone,
                 cases[i].wall, n, cases[i].count);
        KT_CHECK(out[0] == kt_iso(cases[i].first), "%s wall %s: first %lld, expected %s",
                 cases[i].zone, cases[i].wall, (long long)out[0], cases[i].first);
        if (cases[i].second && n == 2)
            KT_CHECK(out[1] == kt_iso(cases[i].second), "%s wall %s: second %lld, expected %s",
                     cases[i].zone, cases[i].wall, (long long)out[1], cases[i].second);
    }
}

static void test_names(void)
{
    static const char *const bad[] = {"../etc/passwd", "/etc/passwd", "America/New York",
                                      "Europe/../../etc/passwd", "Foo/Bar", "",
                                      "America/New_York;rm", "America", "zone.tab"};
    size_t i;
    kaal_error err;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const kaal_tz *tz = kaal_tz_load(bad[i], &err);
        KT_CHECK(tz == NULL, "zone name \"%s\" was accepted", bad[i]);
        if (!tz)
            KT_CHECK(err.code == KAAL_EZONE && strstr(err.message, "time zone"),
                     "zone name \"%s\": code %d message %s", bad[i], err.code, err.message);
    }
    KT_CHECK(kaal_tz_load("UTC", &err) == kaal_tz_utc(), "UTC is the built-in zone");
    KT_CHECK(strcmp(kaal_tz_name(kaal_tz_utc()), "UTC") == 0, "UTC name");
    KT_CHECK(kaal_tz_load("Etc/UTC", &err) != NULL, "Etc/UTC loads");
    KT_CHECK(strcmp(kaal_tz_name(load("Europe/Berlin")), "Europe/Berlin") == 0, "name kept");
    KT_CHECK(load("Europe/Berlin") == load("Europe/Berlin"), "a zone is loaded once");
}

static void *thread_load(void *arg)
{
    const char *const *names = arg;
    const kaal_tz *first = NULL;
    int i;
    for (i = 0; i < 200; i++) {
        const kaal_tz *tz = kaal_tz_load(names[i % 3], NULL);
        if (i == 0)
            first = tz;
        if (!tz)
            return NULL;
    }
    return (void *)first;
}

static void test_threads(void)
{
    static const char *const names[3] = {"Asia/Tokyo", "America/Chicago", "Africa/Cairo"};
    pthread_t th[4];
    void *res[4];
    int i;
    for (i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, thread_load, (void *)names);
    for (i = 0; i < 4; i++)
        pthread_join(th[i], &res[i]);
    for (i = 0; i < 4; i++)
        KT_CHECK(res[i] != NULL && res[i] == res[0], "threads see one cached Asia/Tokyo");
}

/* ---------------------------------------------- cross-check with libc */

static int is_tzif(const char *path)
{
    FILE *f = fopen(path, "rb");
    char magic[4];
    int ok;
    if (!f)
        return 0;
    ok = fread(magic, 1, 4, f) == 4 && memcmp(magic, "TZif", 4) == 0;
    fclose(f);
    return ok;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int zones_checked, instants_checked;

static void check_zone_against_libc(const char *name)
{
    char tzenv[600];
    const kaal_tz *tz = kaal_tz_load(name, NULL);
    int64_t lo = kt_iso("1970-01-01T00:00:00Z"), hi = kt_iso("2100-12-31T23:59:59Z");
    int64_t t;
    int i, bad = 0;
    kaal_tz_span sp;

    KT_CHECK(tz != NULL, "zone %s did not load", name);
    if (!tz)
        return;
    snprintf(tzenv, sizeof tzenv, ":%s", name);
    setenv("TZ", tzenv, 1);
    tzset();
#define CMP(at)                                                                              \
    do {                                                                                     \
        int64_t at_ = (at);                                                                  \
        time_t tt = (time_t)at_;                                                             \
        struct tm tm;                                                                        \
        int32_t mine = kaal_tz_offset_at(tz, at_);                                           \
        localtime_r(&tt, &tm);                                                               \
        instants_checked++;                                                                  \
        if (mine != (int32_t)tm.tm_gmtoff && bad++ < 3)                                      \
            KT_CHECK(0, "%s at %lld: kaal %d, libc %ld", name, (long long)at_, mine,         \
                     (long)tm.tm_gmtoff);                                                    \
    } while (0)
    /* every offset change kaal knows about, from both sides */
    for (t = lo;;) {
        kaal_tz_span_at(tz, t, &sp);
        CMP(sp.start > lo ? sp.start : lo);
        if (sp.start > lo)
            CMP(sp.start - 1);
        if (sp.end > hi)
            break;
        CMP(sp.end - 1);
        t = sp.end;
    }
    /* and random instants, which catch changes kaal missed */
    for (i = 0; i < 150; i++)
        CMP(lo + (int64_t)(rng() % (uint64_t)(hi - lo)));
#undef CMP
    zones_checked++;
}

static void walk(const char *root, const char *rel)
{
    char path[1024];
    DIR *d;
    struct dirent *e;
    snprintf(path, sizeof path, "%s%s%s", root, *rel ? "/" : "", rel);
    d = opendir(path);
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        char sub[512], full[1100];
        struct stat st;
        if (e->d_name[0] == '.')
            continue;
        if (!*rel && (strcmp(e->d_name, "posix") == 0 || strcmp(e->d_name, "right") == 0 ||
                      strcmp(e->d_name, "localtime") == 0 || strcmp(e->d_name, "posixrules") == 0 ||
                      strcmp(e->d_name, "Factory") == 0))
            continue;
        snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        snprintf(full, sizeof full, "%s/%s", root, sub);
        if (stat(full, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            walk(root, sub);
        else if (S_ISREG(st.st_mode) && is_tzif(full))
            check_zone_against_libc(sub);
    }
    closedir(d);
}

static void test_against_libc(void)
{
    const char *root = getenv("TZDIR");
    if (!root || !*root)
        root = "/usr/share/zoneinfo";
    walk(root, "");
    KT_CHECK(zones_checked > 300, "only %d zones found under %s", zones_checked, root);
    printf("test_tz: %d zones, %d instants compared with libc\n", zones_checked,
           instants_checked);
}

int main(void)
{
    test_known_offsets();
    test_local_to_utc();
    test_names();
    test_threads();
    test_against_libc();
    KT_DONE();
}
