/* kaal C unit tests: drive a backend through its vtable the way the binding
 * (rb_backend.c) does, and the behaviour every backend must have (the C side
 * of spec/support/backend_examples.rb).
 *
 * A handle is made with kaal_backend_new, as backend_initialize does; kb_*
 * calls acquire the handle, kaal_backend_ready, run one vtable call and
 * release it (call_nogvl). Each test file includes ktest.h, then this header, and
 * defines a kb_factory. */
#ifndef KAAL_KBACKEND_H
#define KAAL_KBACKEND_H

#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "ktest.h"

/* ------------------------------------------------------------------ */
/* Handles and calls                                                   */

static kaal_backend *kb_new(const kaal_backend_vtable *vt, const char *ns, const char *path)
{
    kaal_backend *b = kaal_backend_new(vt, ns, strlen(ns));
    if (!b) abort();
    if (path && !(b->params.path = kaal_strdup(path))) abort();
    return b;
}

static volatile int kb_never; /* the C tests never interrupt a call */

static void kb_lock(kaal_backend *b)
{
    if (kaal_backend_acquire(b, &kb_never) != KAAL_OK) abort();
}

static int kb_enter(kaal_backend *b, kaal_error *err)
{
    kb_lock(b);
    kaal_error_clear(err);
    return kaal_backend_ready(b, err);
}

/* Runs CALL (an expression using b and &err) as the binding does; yields its
 * status, and reports an unexpected failure with its message. */
static __thread kaal_error kb_last_err; /* the error of the last failed KB() */

#define KB(b_, call_)                                                                       \
    __extension__({                                                                         \
        kaal_backend *kb_h = (b_);                                                          \
        int kb_rc;                                                                          \
        {                                                                                   \
            kaal_backend *b = kb_h;                                                         \
            kaal_error err;                                                                 \
            kb_rc = kb_enter(b, &err);                                                      \
            if (kb_rc == KAAL_OK) kb_rc = (call_);                                          \
            kaal_backend_release(b);                                                 \
            if (kb_rc != KAAL_OK) kb_last_err = err;                                        \
        }                                                                                   \
        kb_rc;                                                                              \
    })

#define KB_OK(b_, call_)                                                                    \
    do {                                                                                    \
        int kb_ok_rc = KB(b_, call_);                                                       \
        KT_CHECK(kb_ok_rc == KAAL_OK, "%s: rc %d: %s", #call_, kb_ok_rc, kb_last_err.message); \
    } while (0)

/* Claims n pairs (keys[i], fires[i]); won[i] gets the outcome. */
static int kb_claim(kaal_backend *bk, const char *const *keys, const int64_t *fires, size_t n,
                    const char *node, int64_t now, int *won)
{
    kaal_claim *items = calloc(n ? n : 1, sizeof *items);
    size_t i;
    int rc;
    if (!items) abort();
    for (i = 0; i < n; i++) {
        items[i].key = keys[i];
        items[i].key_len = strlen(keys[i]);
        items[i].fire_time = fires[i];
        items[i].claimed = 7; /* must be overwritten */
    }
    rc = KB(bk, b->vt->claim(b, items, n, 60000, node, now, &err));
    for (i = 0; i < n; i++) won[i] = items[i].claimed;
    free(items);
    return rc;
}

/* One pair: 1 won, 0 lost, -1 error. */
static int kb_claim1(kaal_backend *b, const char *key, int64_t fire, const char *node, int64_t now)
{
    int won = -1;
    if (kb_claim(b, &key, &fire, 1, node, now, &won) != KAAL_OK) return -1;
    return won;
}

static kaal_dispatch_rows kb_dispatches(kaal_backend *bk, const char *key, const char *status,
                                        const char *node, size_t limit)
{
    kaal_dispatch_rows rows = {0};
    kaal_dispatch_query q;
    q.key = key;
    q.status = status;
    q.node = node;
    q.limit = limit;
    KB_OK(bk, b->vt->dispatches(b, &q, &rows, &err));
    return rows;
}

/* The status of (key, fire) in the log, "" when it has no row. */
static const char *kb_status(kaal_backend *b, const char *key, int64_t fire)
{
    static char buf[32];
    kaal_dispatch_rows rows = kb_dispatches(b, key, NULL, NULL, 100000);
    size_t i;
    buf[0] = '\0';
    for (i = 0; i < rows.len; i++) {
        if (rows.rows[i].fire_time == fire) snprintf(buf, sizeof buf, "%s", rows.rows[i].status);
    }
    kaal_dispatch_rows_free(&rows);
    return buf;
}

static size_t kb_cleanup(kaal_backend *bk, int64_t before, size_t limit)
{
    size_t deleted = (size_t)-1;
    KB_OK(bk, b->vt->cleanup(b, before, limit, &deleted, &err));
    return deleted;
}

static int kb_add(kaal_backend *bk, const char *id, int64_t run_at_ms, const char *queue,
                  const char *args)
{
    kaal_delayed_row job;
    job.job_id = (char *)id;
    job.run_at_ms = run_at_ms;
    job.job_class = (char *)"Job";
    job.queue = (char *)queue;
    job.args = (char *)(args ? args : "[]");
    return KB(bk, b->vt->delayed_add(b, &job, &err));
}

static size_t kb_count(kaal_backend *bk)
{
    size_t n = (size_t)-1;
    KB_OK(bk, b->vt->delayed_count(b, &n, &err));
    return n;
}

/* The job ids of rows, space separated, in buf. */
static const char *kb_ids(const kaal_delayed_rows *rows, char *buf, size_t cap)
{
    size_t i, len = 0;
    buf[0] = '\0';
    for (i = 0; i < rows->len && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? " " : "", rows->rows[i].job_id);
    return buf;
}

/* delayed_claim / delayed_list as a string of job ids. */
static const char *kb_claim_ids(kaal_backend *bk, int64_t now_ms, size_t limit, char *buf, size_t cap)
{
    kaal_delayed_rows rows = {0};
    KB_OK(bk, b->vt->delayed_claim(b, now_ms, limit, &rows, &err));
    kb_ids(&rows, buf, cap);
    kaal_delayed_rows_free(&rows);
    return buf;
}

static const char *kb_list_ids(kaal_backend *bk, size_t limit, char *buf, size_t cap)
{
    kaal_delayed_rows rows = {0};
    KB_OK(bk, b->vt->delayed_list(b, limit, &rows, &err));
    kb_ids(&rows, buf, cap);
    kaal_delayed_rows_free(&rows);
    return buf;
}

static int kb_cancel(kaal_backend *bk, const char *id)
{
    int found = -1;
    KB_OK(bk, b->vt->delayed_cancel(b, id, &found, &err));
    return found;
}

static int s_eq(const char *a, const char *b)
{
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

#define S(x) ((x) ? (x) : "(null)")

/* ------------------------------------------------------------------ */
/* The behaviour every backend must have                               */

/* A fresh, connected and migrated handle on namespace ns; for a store that
 * shares state between handles every call is another node. */
typedef kaal_backend *(*kb_factory)(const char *ns);

typedef struct kb_suite {
    kb_factory open;
    int separate; /* handles of one namespace share state (not memory) */
} kb_suite;

static const int64_t NOW = 1767225600; /* 2026-01-01T00:00:00Z */

/* "other" is a second handle on the namespace when the store has them. */
static kaal_backend *kb_other(const kb_suite *s, kaal_backend *b, const char *ns)
{
    return s->separate ? s->open(ns) : b;
}

static void kb_other_free(kaal_backend *o, kaal_backend *b)
{
    if (o != b) kaal_backend_free(o);
}

static void kb_test_claims(const kb_suite *s)
{
    kaal_backend *b = s->open("claims"), *o = kb_other(s, b, "claims");
    const char *k1[] = {"a", "b"};
    int64_t f1[] = {NOW, NOW};
    const char *k2[] = {"b", "c", "a", "a"};
    int64_t f2[] = {NOW, NOW, NOW, NOW + 60};
    const char *rep[] = {"r", "x", "r", "r", "x", "y"};
    int64_t frep[] = {NOW, NOW, NOW, NOW, NOW, NOW};
    /* no prefix or separator confusion */
    const char *odd[] = {"a:1", "a", "a:1:1767225600", "\xc3\xa9 \xe2\x98\x83 job", "a", "a"};
    int64_t fodd[] = {NOW, NOW + 7, NOW, NOW, NOW + 1, -5};
    int won[8], i;

    KT_CHECK(kb_claim(b, k1, f1, 2, "node-a", NOW, won) == KAAL_OK && won[0] == 1 && won[1] == 1,
             "claim a, b: %d %d", won[0], won[1]);
    KT_CHECK(kb_claim(b, k2, f2, 4, "node-a", NOW, won) == KAAL_OK && won[0] == 0 && won[1] == 1 &&
                 won[2] == 0 && won[3] == 1,
             "claim b c a a+60: %d %d %d %d", won[0], won[1], won[2], won[3]);
    KT_CHECK(kb_claim(b, k1, f1, 0, "node-a", NOW, won) == KAAL_OK, "claim of no pairs");

    /* repeated pairs in one batch: the first occurrence wins, once */
    KT_CHECK(kb_claim(o, rep, frep, 6, "node-b", NOW, won) == KAAL_OK, "repeats");
    KT_CHECK(won[0] == 1 && won[1] == 1 && won[2] == 0 && won[3] == 0 && won[4] == 0 && won[5] == 1,
             "repeats: %d %d %d %d %d %d", won[0], won[1], won[2], won[3], won[4], won[5]);
    KT_CHECK(kb_claim(b, rep, frep, 6, "node-a", NOW, won) == KAAL_OK, "repeats again");
    for (i = 0; i < 6; i++) KT_CHECK(won[i] == 0, "repeat %d won twice", i);

    KT_CHECK(kb_claim(b, odd, fodd, 6, "node-a", NOW, won) == KAAL_OK, "odd keys");
    for (i = 0; i < 6; i++) KT_CHECK(won[i] == 1, "odd key %d (%s, %lld) lost", i, odd[i], (long long)fodd[i]);
    KT_CHECK(kb_claim(o, odd, fodd, 6, "node-b", NOW, won) == KAAL_OK, "odd keys again");
    for (i = 0; i < 6; i++) KT_CHECK(won[i] == 0, "odd key %d won twice", i);

    /* a pair never wins again, from the same or another node, whatever the lease */
    KT_CHECK(kb_claim1(b, "job", NOW, "node-a", NOW + 2) == 1, "job");
    KT_CHECK(kb_claim1(b, "job", NOW, "node-a", NOW + 3600) == 0, "job again");
    KT_CHECK(kb_claim1(o, "job", NOW, "node-b", NOW + 3600) == 0, "job from node-b");
    {
        kaal_dispatch_rows rows = kb_dispatches(b, "job", NULL, NULL, 10);
        KT_CHECK(rows.len == 1, "job rows: %zu", rows.len);
        if (rows.len == 1) {
            kaal_dispatch_row *r = &rows.rows[0];
            KT_CHECK(s_eq(r->key, "job") && r->fire_time == NOW && s_eq(r->status, "claimed") &&
                         s_eq(r->node, "node-a") && r->error == NULL && r->claimed_at == NOW + 2 &&
                         r->updated_at == NOW + 2,
                     "job row: %s %lld %s %s %s %lld %lld", S(r->key), (long long)r->fire_time,
                     S(r->status), S(r->node), S(r->error), (long long)r->claimed_at,
                     (long long)r->updated_at);
        }
        kaal_dispatch_rows_free(&rows);
    }
    {
        kaal_dispatch_rows rows = kb_dispatches(b, odd[3], NULL, NULL, 10);
        KT_CHECK(rows.len == 1 && s_eq(rows.rows[0].key, odd[3]), "utf-8 key row");
        kaal_dispatch_rows_free(&rows);
    }
    /* a record without a claim writes the row: the pair is then taken */
    KB_OK(b, b->vt->record(b, "unclaimed", NOW, "dispatched", "node-a", NULL, NOW + 5, &err));
    KT_CHECK(kb_claim1(o, "unclaimed", NOW, "node-b", NOW + 6) == 0, "recorded pair claimed");
    /* an outcome is "dispatched" or "failed": anything else writes nothing */
    KT_CHECK(KB(b, b->vt->record(b, "other", NOW, "claimed", "node-a", NULL, NOW, &err)) == KAAL_EARG &&
                 strstr(kb_last_err.message, "dispatched"),
             "record refuses status claimed: %s", kb_last_err.message);
    KT_CHECK(KB(b, b->vt->record(b, "other", NOW, NULL, "node-a", NULL, NOW, &err)) == KAAL_EARG,
             "record refuses no status");
    KT_CHECK(kb_claim1(o, "other", NOW, "node-b", NOW + 6) == 1, "nothing recorded for other");
    kb_other_free(o, b);
    kaal_backend_free(b);
}

/* Every pair of a large batch is won once; the reversed batch wins nothing. */
static void kb_test_large_batch(const kb_suite *s, size_t n)
{
    kaal_backend *b = s->open("large"), *o = kb_other(s, b, "large");
    const char **keys = malloc(n * sizeof *keys);
    int64_t *fires = malloc(n * sizeof *fires);
    int *won = malloc(n * sizeof *won);
    char *names = malloc(n * 16);
    size_t i, wins = 0;
    if (!keys || !fires || !won || !names) abort();
    for (i = 0; i < n; i++) {
        snprintf(names + i * 16, 16, "job-%zu", i % 300);
        keys[n - 1 - i] = names + i * 16; /* stored reversed: a descending input */
        fires[n - 1 - i] = NOW + (int64_t)(i / 300) * 60;
    }
    KT_CHECK(kb_claim(b, keys, fires, n, "node-a", NOW, won) == KAAL_OK, "large batch");
    for (i = 0; i < n; i++) wins += won[i] == 1;
    KT_CHECK(wins == n, "large batch won %zu of %zu", wins, n);
    for (i = 0; i < n / 2; i++) { /* reverse */
        const char *k = keys[i];
        int64_t f = fires[i];
        keys[i] = keys[n - 1 - i], fires[i] = fires[n - 1 - i];
        keys[n - 1 - i] = k, fires[n - 1 - i] = f;
    }
    KT_CHECK(kb_claim(o, keys, fires, n, "node-b", NOW, won) == KAAL_OK, "large batch again");
    for (i = 0, wins = 0; i < n; i++) wins += won[i] != 0;
    KT_CHECK(wins == 0, "large batch won %zu pairs twice", wins);
    free(keys);
    free(fires);
    free(won);
    free(names);
    kb_other_free(o, b);
    kaal_backend_free(b);
}

static void kb_test_dispatch_log(const kb_suite *s)
{
    kaal_backend *b = s->open("log"), *o = kb_other(s, b, "log");
    const char *k[] = {"a", "b", "a", "c"};
    int64_t f[] = {NOW, NOW, NOW + 60, NOW + 120};
    int won[4];
    kaal_dispatch_rows rows;

    kb_claim(b, k, f, 4, "node-a", NOW, won);
    KT_CHECK(kb_claim1(o, "b", NOW + 60, "node-b", NOW) == 1, "b+60");
    KB_OK(b, b->vt->record(b, "a", NOW, "dispatched", "node-a", NULL, NOW + 1, &err));
    KB_OK(b, b->vt->record(b, "b", NOW, "failed", "node-a", "boom", NOW + 2, &err));
    KB_OK(o, b->vt->record(b, "b", NOW + 60, "dispatched", "node-b", NULL, NOW + 61, &err));

    /* newest first: fire_time desc, then key desc */
    rows = kb_dispatches(b, NULL, NULL, NULL, 100);
    KT_CHECK(rows.len == 5, "log rows: %zu", rows.len);
    if (rows.len == 5) {
        static const char *const want_k[] = {"c", "b", "a", "b", "a"};
        static const int64_t want_f[] = {NOW + 120, NOW + 60, NOW + 60, NOW, NOW};
        size_t i;
        for (i = 0; i < 5; i++)
            KT_CHECK(s_eq(rows.rows[i].key, want_k[i]) && rows.rows[i].fire_time == want_f[i],
                     "log row %zu: %s %lld", i, S(rows.rows[i].key),
                     (long long)rows.rows[i].fire_time);
        KT_CHECK(s_eq(rows.rows[0].status, "claimed") && s_eq(rows.rows[0].node, "node-a") &&
                     !rows.rows[0].error && rows.rows[0].claimed_at == NOW &&
                     rows.rows[0].updated_at == NOW,
                 "newest row");
        KT_CHECK(s_eq(rows.rows[3].status, "failed") && s_eq(rows.rows[3].error, "boom") &&
                     s_eq(rows.rows[3].node, "node-a") && rows.rows[3].claimed_at == NOW &&
                     rows.rows[3].updated_at == NOW + 2,
                 "failed row: %s %s", S(rows.rows[3].status), S(rows.rows[3].error));
    }
    kaal_dispatch_rows_free(&rows);

    rows = kb_dispatches(b, "a", NULL, NULL, 100);
    KT_CHECK(rows.len == 2 && rows.rows[0].fire_time == NOW + 60 && rows.rows[1].fire_time == NOW,
             "by key a");
    kaal_dispatch_rows_free(&rows);
    rows = kb_dispatches(b, NULL, "dispatched", NULL, 100);
    KT_CHECK(rows.len == 2 && s_eq(rows.rows[0].key, "b") && rows.rows[0].fire_time == NOW + 60 &&
                 s_eq(rows.rows[1].key, "a") && rows.rows[1].fire_time == NOW,
             "by status dispatched: %zu", rows.len);
    kaal_dispatch_rows_free(&rows);
    rows = kb_dispatches(b, NULL, NULL, "node-b", 100);
    KT_CHECK(rows.len == 1 && s_eq(rows.rows[0].key, "b") && rows.rows[0].fire_time == NOW + 60,
             "by node-b: %zu", rows.len);
    kaal_dispatch_rows_free(&rows);
    rows = kb_dispatches(b, "b", "failed", "node-a", 100);
    KT_CHECK(rows.len == 1, "key+status+node: %zu", rows.len);
    kaal_dispatch_rows_free(&rows);
    rows = kb_dispatches(b, "a", "failed", NULL, 100);
    KT_CHECK(rows.len == 0, "a failed: %zu", rows.len);
    kaal_dispatch_rows_free(&rows);
    rows = kb_dispatches(b, "nope", NULL, NULL, 100);
    KT_CHECK(rows.len == 0, "unknown key: %zu", rows.len);
    kaal_dispatch_rows_free(&rows);
    rows = kb_dispatches(b, NULL, NULL, "nobody", 100);
    KT_CHECK(rows.len == 0, "unknown node: %zu", rows.len);
    kaal_dispatch_rows_free(&rows);
    rows = kb_dispatches(b, NULL, NULL, NULL, 2);
    KT_CHECK(rows.len == 2 && rows.rows[0].fire_time == NOW + 120 && s_eq(rows.rows[1].key, "b") &&
                 rows.rows[1].fire_time == NOW + 60,
             "limit 2: %zu", rows.len);
    kaal_dispatch_rows_free(&rows);
    rows = kb_dispatches(b, NULL, NULL, NULL, 1);
    KT_CHECK(rows.len == 1 && s_eq(rows.rows[0].key, "c"), "limit 1");
    kaal_dispatch_rows_free(&rows);

    KT_CHECK(strcmp(kb_status(b, "a", NOW), "dispatched") == 0, "status a");
    KT_CHECK(strcmp(kb_status(o, "b", NOW), "failed") == 0, "status b");
    KT_CHECK(strcmp(kb_status(b, "a", NOW + 1), "") == 0, "status a+1");

    /* record keeps the node when none is given, and clears the error */
    KB_OK(b, b->vt->record(b, "b", NOW, "dispatched", NULL, NULL, NOW + 9, &err));
    rows = kb_dispatches(b, "b", NULL, NULL, 1);
    KT_CHECK(rows.len == 1 && s_eq(rows.rows[0].status, "dispatched") &&
                 s_eq(rows.rows[0].node, "node-b") && !rows.rows[0].error &&
                 rows.rows[0].updated_at == NOW + 61,
             "b+60 untouched");
    kaal_dispatch_rows_free(&rows);
    rows = kb_dispatches(b, "b", "dispatched", "node-a", 5);
    KT_CHECK(rows.len == 1 && rows.rows[0].fire_time == NOW && !rows.rows[0].error &&
                 rows.rows[0].claimed_at == NOW && rows.rows[0].updated_at == NOW + 9,
             "re-recorded b: %zu", rows.len);
    kaal_dispatch_rows_free(&rows);

    kb_other_free(o, b);
    kaal_backend_free(b);
}

/* n rows over n/10 fire times; cleanup in bounded batches, oldest first. */
static void kb_test_cleanup(const kb_suite *s, size_t n, size_t batch)
{
    kaal_backend *b = s->open("cleanup");
    const char **keys = malloc(n * sizeof *keys);
    int64_t *fires = malloc(n * sizeof *fires);
    int *won = malloc(n * sizeof *won);
    char *names = malloc(10 * 8);
    size_t i, total = 0, calls = 0, d, half = n / 2;
    if (!keys || !fires || !won || !names) abort();
    for (i = 0; i < 10; i++) snprintf(names + i * 8, 8, "k%zu", i);
    for (i = 0; i < n; i++) {
        /* shuffled fire times: the log must not depend on insertion order */
        size_t j = (i * 7919) % n;
        keys[i] = names + (j % 10) * 8;
        fires[i] = NOW + (int64_t)(j / 10);
    }
    KT_CHECK(kb_claim(b, keys, fires, n, "node-a", NOW, won) == KAAL_OK, "cleanup claim");
    for (i = 0, d = 0; i < n; i++) d += won[i] == 1;
    KT_CHECK(d == n, "cleanup claim won %zu of %zu", d, n);

    KT_CHECK(kb_cleanup(b, NOW, 100) == 0, "nothing before NOW");
    KT_CHECK(kb_cleanup(b, NOW + 5, 0) == 0, "limit 0");
    KT_CHECK(kb_cleanup(b, NOW + 1, 3) == 3, "3 of the first fire time");
    KT_CHECK(kb_cleanup(b, NOW + 1, 100) == 7, "the other 7");
    total = 10;
    /* bounded batches up to half the rows; each leaves only newer rows */
    while ((d = kb_cleanup(b, NOW + (int64_t)(half / 10), batch)) > 0) {
        KT_CHECK(d <= batch, "batch of %zu > %zu", d, batch);
        total += d;
        calls++;
        if (calls % 16 == 0 || total == half) {
            /* the oldest left is never older than what went */
            kaal_dispatch_rows rows = kb_dispatches(b, "k3", NULL, NULL, 100000);
            int64_t gone_before = NOW + (int64_t)(total / 10); /* older rows are all gone */
            size_t j, bad = 0;
            for (j = 0; j < rows.len; j++) bad += rows.rows[j].fire_time < gone_before;
            KT_CHECK(bad == 0, "%zu rows older than %lld left after %zu deleted", bad,
                     (long long)gone_before, total);
            kaal_dispatch_rows_free(&rows);
        }
        if (calls > n) break;
    }
    KT_CHECK(total == half, "deleted %zu of %zu", total, half);
    KT_CHECK(calls == (half - 10 + batch - 1) / batch, "%zu cleanup calls", calls);
    {
        kaal_dispatch_rows rows = kb_dispatches(b, NULL, NULL, NULL, n);
        KT_CHECK(rows.len == n - half, "left %zu", rows.len);
        if (rows.len) {
            KT_CHECK(rows.rows[rows.len - 1].fire_time == NOW + (int64_t)(half / 10),
                     "oldest left %lld", (long long)rows.rows[rows.len - 1].fire_time);
            KT_CHECK(rows.rows[0].fire_time == NOW + (int64_t)((n - 1) / 10), "newest");
        }
        kaal_dispatch_rows_free(&rows);
    }
    /* the newest N come back in order, with a limit far below the log size */
    {
        kaal_dispatch_rows rows = kb_dispatches(b, NULL, NULL, NULL, 25);
        int ordered = rows.len == 25;
        for (i = 0; ordered && i < rows.len; i++) {
            int64_t want_f = NOW + (int64_t)((n - 1 - i) / 10);
            char want_k[8];
            snprintf(want_k, sizeof want_k, "k%zu", 9 - i % 10);
            ordered = rows.rows[i].fire_time == want_f && s_eq(rows.rows[i].key, want_k);
            KT_CHECK(ordered, "newest %zu: %s %lld, want %s %lld", i, S(rows.rows[i].key),
                     (long long)rows.rows[i].fire_time, want_k, (long long)want_f);
        }
        kaal_dispatch_rows_free(&rows);
        rows = kb_dispatches(b, "k4", NULL, NULL, 3);
        KT_CHECK(rows.len == 3 && rows.rows[0].fire_time == NOW + (int64_t)((n - 1) / 10) &&
                     rows.rows[2].fire_time == rows.rows[0].fire_time - 2,
                 "newest 3 of k4");
        kaal_dispatch_rows_free(&rows);
    }
    KT_CHECK(kb_cleanup(b, NOW + (int64_t)n, n) == n - half, "the rest");
    {
        kaal_dispatch_rows rows = kb_dispatches(b, NULL, NULL, NULL, 10);
        KT_CHECK(rows.len == 0, "empty log: %zu", rows.len);
        kaal_dispatch_rows_free(&rows);
    }
    /* the pairs are free again once cleaned up */
    KT_CHECK(kb_claim1(b, "k0", NOW, "node-a", NOW) == 1, "reclaim after cleanup");
    free(keys);
    free(fires);
    free(won);
    free(names);
    kaal_backend_free(b);
}

static void kb_test_states(const kb_suite *s)
{
    kaal_backend *b = s->open("states"), *o = kb_other(s, b, "states");
    kaal_state_rows rows = {0};
    KB_OK(b, b->vt->states(b, &rows, &err));
    KT_CHECK(rows.len == 0, "no states: %zu", rows.len);
    kaal_state_rows_free(&rows);
    KB_OK(b, b->vt->set_enabled(b, "b", 1, &err));
    KB_OK(b, b->vt->set_enabled(b, "a", 0, &err));
    KB_OK(b, b->vt->set_enabled(b, "\xc3\xa9t\xc3\xa9", 0, &err));
    KB_OK(o, b->vt->states(b, &rows, &err));
    KT_CHECK(rows.len == 3 && s_eq(rows.rows[0].key, "a") && rows.rows[0].enabled == 0 &&
                 s_eq(rows.rows[1].key, "b") && rows.rows[1].enabled == 1 &&
                 s_eq(rows.rows[2].key, "\xc3\xa9t\xc3\xa9") && rows.rows[2].enabled == 0,
             "states: %zu", rows.len);
    kaal_state_rows_free(&rows);
    KB_OK(o, b->vt->set_enabled(b, "a", 1, &err));
    KB_OK(o, b->vt->set_enabled(b, "b", 1, &err));
    KB_OK(b, b->vt->states(b, &rows, &err));
    KT_CHECK(rows.len == 3 && rows.rows[0].enabled == 1 && rows.rows[1].enabled == 1, "states 2");
    kaal_state_rows_free(&rows);
    kb_other_free(o, b);
    kaal_backend_free(b);
}

static void kb_test_schedules(const kb_suite *s)
{
    kaal_backend *b = s->open("schedules"), *o = kb_other(s, b, "schedules");
    kaal_schedule_row row = {0};
    kaal_schedule_rows rows = {0};
    int64_t v = -1, v2 = -1;
    int found = -1;
    size_t n = 9;

    KB_OK(b, b->vt->schedules->changes(b, 0, 10, &rows, &v, &err));
    KT_CHECK(v == 0 && rows.len == 0, "empty feed: %lld %zu", (long long)v, rows.len);
    row.key = (char *)"report";
    row.cron = (char *)"0 9 * * *";
    row.job_class = (char *)"ReportJob";
    row.args = (char *)"[1,\"\xc3\xa9\"]";
    row.kwargs = (char *)"{\"a\":null}";
    row.time_zone = (char *)"Europe/Paris";
    row.enabled = 1;
    KB_OK(b, b->vt->schedules->upsert(b, &row, NOW, &v, &err));
    row.key = (char *)"a-first";
    row.time_zone = NULL;
    row.queue = (char *)"low";
    row.enabled = 0;
    KB_OK(o, o->vt->schedules->upsert(o, &row, NOW, &v2, &err));
    KT_CHECK(v == 1 && v2 == 2, "versions %lld %lld", (long long)v, (long long)v2);
    KB_OK(b, b->vt->schedules->count(b, &n, &err));
    KT_CHECK(n == 2, "count %zu", n);
    KB_OK(b, b->vt->schedules->list(b, NULL, 10, &rows, &err));
    KT_CHECK(rows.len == 2 && s_eq(rows.rows[0].key, "a-first") && s_eq(rows.rows[1].key, "report") &&
                 rows.rows[0].enabled == 0 && s_eq(rows.rows[0].queue, "low") && rows.rows[1].queue == NULL &&
                 s_eq(rows.rows[1].time_zone, "Europe/Paris") && s_eq(rows.rows[1].args, "[1,\"\xc3\xa9\"]"),
             "list by key");
    kaal_schedule_rows_free(&rows);
    KB_OK(b, b->vt->schedules->list(b, "a-first", 10, &rows, &err));
    KT_CHECK(rows.len == 1 && s_eq(rows.rows[0].key, "report"), "list after");
    kaal_schedule_rows_free(&rows);
    /* change, then remove: the feed lists each key once, at its last version */
    row.key = (char *)"report";
    row.cron = (char *)"0 10 * * *";
    KB_OK(b, b->vt->schedules->upsert(b, &row, NOW + 1, &v, &err));
    KB_OK(b, b->vt->schedules->remove(b, "a-first", NOW + 2, &found, &v, &err));
    KT_CHECK(found == 1 && v == 4, "removed at 4: %d %lld", found, (long long)v);
    KB_OK(b, b->vt->schedules->remove(b, "a-first", NOW + 2, &found, &v, &err));
    KT_CHECK(found == 0 && v == 4, "second removal changes nothing: %d %lld", found, (long long)v);
    KB_OK(o, o->vt->schedules->changes(o, 1, 10, &rows, &v, &err));
    KT_CHECK(v == 4 && rows.len == 2 && s_eq(rows.rows[0].key, "report") && rows.rows[0].version == 3 &&
                 s_eq(rows.rows[0].cron, "0 10 * * *") && !rows.rows[0].deleted && s_eq(rows.rows[1].key, "a-first") &&
                 rows.rows[1].deleted && rows.rows[1].version == 4,
             "feed after 1: %zu", rows.len);
    kaal_schedule_rows_free(&rows);
    KB_OK(o, o->vt->schedules->changes(o, 1, 1, &rows, &v, &err));
    KT_CHECK(rows.len == 1 && rows.rows[0].version == 3, "feed page of 1");
    kaal_schedule_rows_free(&rows);
    KB_OK(o, o->vt->schedules->changes(o, 4, 10, &rows, &v, &err));
    KT_CHECK(v == 4 && rows.len == 0, "nothing after 4");
    KB_OK(b, b->vt->schedules->get(b, "a-first", &rows, &err));
    KT_CHECK(rows.len == 0, "removed: not found");
    KB_OK(b, b->vt->schedules->get(b, "report", &rows, &err));
    KT_CHECK(rows.len == 1 && rows.rows[0].updated_at == NOW + 1, "get");
    kaal_schedule_rows_free(&rows);
    KB_OK(b, b->vt->schedules->count(b, &n, &err));
    KT_CHECK(n == 1, "count after removal %zu", n);
    /* a removed key comes back */
    row.key = (char *)"a-first";
    KB_OK(b, b->vt->schedules->upsert(b, &row, NOW + 3, &v, &err));
    KB_OK(b, b->vt->schedules->count(b, &n, &err));
    KT_CHECK(v == 5 && n == 2, "back: %lld %zu", (long long)v, n);
    kb_other_free(o, b);
    kaal_backend_free(b);
}

static void kb_test_delayed(const kb_suite *s)
{
    kaal_backend *b = s->open("delayed"), *o = kb_other(s, b, "delayed");
    char buf[512];
    kaal_delayed_rows rows = {0};
    int rc;
    size_t i;

    KT_CHECK(kb_count(b) == 0, "empty");
    KT_CHECK(strcmp(kb_claim_ids(b, 1 << 30, 10, buf, sizeof buf), "") == 0, "claim empty");
    KT_CHECK(strcmp(kb_list_ids(b, 10, buf, sizeof buf), "") == 0, "list empty");
    KT_CHECK(kb_add(b, "late", 3000, "low", "[1,\"\xc3\xa9\",{\"a\":null}]") == KAAL_OK, "late");
    KT_CHECK(kb_add(b, "early", 1000, NULL, NULL) == KAAL_OK, "early");
    KT_CHECK(kb_add(o, "mid", 2000, NULL, NULL) == KAAL_OK, "mid");
    KT_CHECK(kb_count(b) == 3, "count 3");
    KT_CHECK(strcmp(kb_list_ids(b, 10, buf, sizeof buf), "early mid late") == 0, "list: %s", buf);
    KT_CHECK(strcmp(kb_list_ids(b, 2, buf, sizeof buf), "early mid") == 0, "list 2: %s", buf);
    KT_CHECK(strcmp(kb_list_ids(b, 0, buf, sizeof buf), "") == 0, "list 0: %s", buf);
    KB_OK(b, b->vt->delayed_list(b, 10, &rows, &err));
    if (rows.len == 3) {
        kaal_delayed_row *r = &rows.rows[2];
        KT_CHECK(s_eq(r->job_id, "late") && r->run_at_ms == 3000 && s_eq(r->job_class, "Job") &&
                     s_eq(r->queue, "low") && s_eq(r->args, "[1,\"\xc3\xa9\",{\"a\":null}]") &&
                     rows.rows[0].queue == NULL,
                 "late row: %s %s %s", S(r->job_id), S(r->queue), S(r->args));
    }
    kaal_delayed_rows_free(&rows);

    /* a pending job_id is refused and changes nothing */
    rc = kb_add(o, "mid", 5, NULL, "[9]");
    KT_CHECK(rc == KAAL_EDUPLICATE, "duplicate: %d", rc);
    KT_CHECK(strstr(kb_last_err.message, "mid") != NULL, "duplicate message: %s", kb_last_err.message);
    KT_CHECK(kb_count(b) == 3, "count after duplicate");
    KT_CHECK(strcmp(kb_list_ids(b, 10, buf, sizeof buf), "early mid late") == 0, "list: %s", buf);

    /* due only, oldest first, up to limit; removed */
    KT_CHECK(kb_add(b, "future", 9000, NULL, NULL) == KAAL_OK, "future");
    KT_CHECK(strcmp(kb_claim_ids(b, 500, 10, buf, sizeof buf), "") == 0, "none due: %s", buf);
    KT_CHECK(strcmp(kb_claim_ids(b, 3000, 0, buf, sizeof buf), "") == 0, "limit 0: %s", buf);
    KT_CHECK(strcmp(kb_claim_ids(b, 3000, 2, buf, sizeof buf), "early mid") == 0, "claim 2: %s", buf);
    KT_CHECK(strcmp(kb_claim_ids(o, 3000, 10, buf, sizeof buf), "late") == 0, "claim rest: %s", buf);
    KT_CHECK(strcmp(kb_claim_ids(b, 3000, 10, buf, sizeof buf), "") == 0, "claimed: %s", buf);
    KT_CHECK(kb_count(b) == 1, "count 1");
    /* a job_id is free again once claimed */
    KT_CHECK(kb_add(b, "mid", 2500, NULL, NULL) == KAAL_OK, "mid again");
    KT_CHECK(strcmp(kb_list_ids(b, 10, buf, sizeof buf), "mid future") == 0, "list: %s", buf);
    KT_CHECK(kb_cancel(o, "mid") == 1 && kb_cancel(b, "mid") == 0 && kb_cancel(b, "never") == 0,
             "cancel");
    KT_CHECK(kb_cancel(b, "future") == 1 && kb_count(b) == 0, "cancel future");

    /* equal run_at: ties go by job_id (byte order), whatever the insertion order */
    {
        static const char *const ids[] = {"t5", "t1", "t4", "t2", "t3", "T9", "u0"};
        for (i = 0; i < 7; i++)
            KT_CHECK(kb_add(b, ids[i], ids[i][0] == 'u' ? 4999 : 5000, NULL, NULL) == KAAL_OK, "%s", ids[i]);
        KT_CHECK(strcmp(kb_list_ids(b, 10, buf, sizeof buf), "u0 T9 t1 t2 t3 t4 t5") == 0,
                 "tie list: %s", buf);
        KT_CHECK(strcmp(kb_claim_ids(b, 5000, 3, buf, sizeof buf), "u0 T9 t1") == 0, "tie claim: %s", buf);
        KT_CHECK(kb_cancel(b, "t3") == 1, "cancel t3");
        KT_CHECK(strcmp(kb_claim_ids(b, 5000, 10, buf, sizeof buf), "t2 t4 t5") == 0, "tie rest: %s", buf);
    }

    /* many jobs: cancel from the middle of the order, claim in bounded batches */
    {
        enum { N = 2000 };
        int64_t last = -1;
        size_t claimed = 0, calls = 0, cancelled = 0;
        int ordered = 1;
        char id[32];
        for (i = 0; i < N; i++) {
            snprintf(id, sizeof id, "m%04zu", i);
            rc = kb_add(i % 2 ? o : b, id, 10000 + (int64_t)((i * 7919) % 500), NULL, NULL);
            if (rc != KAAL_OK) KT_CHECK(0, "add %s: %d", id, rc);
        }
        for (i = 0; i < N; i += 7) {
            snprintf(id, sizeof id, "m%04zu", i);
            cancelled += kb_cancel(i % 3 ? b : o, id) == 1;
        }
        KT_CHECK(kb_count(b) == N - cancelled, "count %zu", kb_count(b));
        for (;;) {
            size_t j;
            KB_OK(calls % 2 ? o : b, b->vt->delayed_claim(b, 10499, 97, &rows, &err));
            if (rows.len == 0) break;
            KT_CHECK(rows.len <= 97, "claim limit: %zu", rows.len);
            for (j = 0; j < rows.len; j++) {
                int n = atoi(rows.rows[j].job_id + 1);
                if (rows.rows[j].run_at_ms < last) ordered = 0;
                last = rows.rows[j].run_at_ms;
                if (n % 7 == 0) KT_CHECK(0, "cancelled %s claimed", rows.rows[j].job_id);
                if (rows.rows[j].run_at_ms != 10000 + (n * 7919) % 500)
                    KT_CHECK(0, "%s run_at %lld", rows.rows[j].job_id, (long long)rows.rows[j].run_at_ms);
            }
            claimed += rows.len;
            kaal_delayed_rows_free(&rows);
            if (++calls > N) break;
        }
        kaal_delayed_rows_free(&rows);
        KT_CHECK(ordered, "claims not in run_at order");
        KT_CHECK(claimed == N - cancelled, "claimed %zu of %zu", claimed, (size_t)N - cancelled);
        KT_CHECK(kb_count(b) == 0, "all claimed");
    }
    kb_other_free(o, b);
    kaal_backend_free(b);
}

static void kb_test_nodes(const kb_suite *s)
{
    kaal_backend *b = s->open("nodes"), *o = kb_other(s, b, "nodes");
    kaal_node_rows rows = {0};
    KB_OK(b, b->vt->nodes(b, 0, &rows, &err));
    KT_CHECK(rows.len == 0, "no nodes");
    kaal_node_rows_free(&rows);
    KB_OK(b, b->vt->heartbeat(b, "node-b", "{\"pid\":2}", NOW, 3600, &err));
    KB_OK(o, b->vt->heartbeat(b, "node-a", NULL, NOW + 100, 3600, &err));
    KB_OK(b, b->vt->nodes(b, NOW + 50, &rows, &err));
    KT_CHECK(rows.len == 1 && s_eq(rows.rows[0].node, "node-a") && rows.rows[0].info == NULL &&
                 rows.rows[0].last_seen == NOW + 100,
             "since +50: %zu", rows.len);
    kaal_node_rows_free(&rows);
    KB_OK(o, b->vt->nodes(b, NOW - 1, &rows, &err));
    KT_CHECK(rows.len == 2 && s_eq(rows.rows[0].node, "node-a") && s_eq(rows.rows[1].node, "node-b") &&
                 s_eq(rows.rows[1].info, "{\"pid\":2}"),
             "by name: %zu", rows.len);
    kaal_node_rows_free(&rows);
    KB_OK(b, b->vt->nodes(b, NOW, &rows, &err)); /* since is inclusive */
    KT_CHECK(rows.len == 2, "since inclusive: %zu", rows.len);
    kaal_node_rows_free(&rows);
    KB_OK(b, b->vt->heartbeat(b, "node-b", "{\"pid\":3}", NOW + 200, 3600, &err));
    KB_OK(b, b->vt->nodes(b, NOW + 150, &rows, &err));
    KT_CHECK(rows.len == 1 && s_eq(rows.rows[0].node, "node-b") && s_eq(rows.rows[0].info, "{\"pid\":3}") &&
                 rows.rows[0].last_seen == NOW + 200,
             "updated: %zu", rows.len);
    kaal_node_rows_free(&rows);
    /* ttl: a heartbeat forgets nodes silent for longer than ttl (0: keep all) */
    KB_OK(b, b->vt->heartbeat(b, "node-c", NULL, NOW + 5000, 0, &err));
    KB_OK(b, b->vt->nodes(b, 0, &rows, &err));
    KT_CHECK(rows.len == 3, "ttl 0 keeps: %zu", rows.len);
    kaal_node_rows_free(&rows);
    KB_OK(o, b->vt->heartbeat(b, "node-c", NULL, NOW + 5000, 4800, &err)); /* cutoff NOW+200 */
    KB_OK(b, b->vt->nodes(b, 0, &rows, &err));
    KT_CHECK(rows.len == 2 && s_eq(rows.rows[0].node, "node-b") && s_eq(rows.rows[1].node, "node-c"),
             "ttl expired node-a: %zu", rows.len);
    kaal_node_rows_free(&rows);
    kb_other_free(o, b);
    kaal_backend_free(b);
}

/* close, then connect again: the data is still there */
static void kb_test_reconnect(const kb_suite *s)
{
    kaal_backend *b = s->open("reconnect");
    KT_CHECK(kb_claim1(b, "job", NOW, "n", NOW) == 1, "claim");
    kb_lock(b);
    /* the binding's disconnect: the memory store stays, others close */
    if (b->vt == &kaal_backend_memory) b->connected = 0;
    else b->vt->close(b);
    kaal_backend_release(b);
    KT_CHECK(!b->connected, "disconnected");
    KT_CHECK(strcmp(kb_status(b, "job", NOW), "claimed") == 0, "status after reconnect");
    KT_CHECK(kb_claim1(b, "job", NOW, "n", NOW) == 0, "claim after reconnect");
    KT_CHECK(b->connected, "connected again");
    KB_OK(b, b->vt->migrate(b, &err));
    KB_OK(b, b->vt->migrate(b, &err));
    KT_CHECK(kb_claim1(b, "job", NOW, "n", NOW) == 0, "claim after migrate");
    kaal_backend_free(b);
}

/* ------------------------------------------------------------------ */
/* Threads claiming the same pairs                                     */

#define KB_PAIRS 2000
#define KB_THREADS 8

typedef struct kb_thread {
    kaal_backend *b;
    int idx;
    pthread_barrier_t *gate;
    char (*keys)[16];
    int64_t *fires;
    int *owner; /* owner[p]: threads that won pair p (atomic adds) */
    int rc;
} kb_thread;

static void *kb_claimer(void *p)
{
    kb_thread *t = p;
    size_t order[KB_PAIRS], i, j;
    unsigned seed = 12345u + (unsigned)t->idx * 7919u;
    for (i = 0; i < KB_PAIRS; i++) order[i] = i;
    for (i = KB_PAIRS - 1; i > 0; i--) { /* each thread its own shuffle */
        size_t r, x;
        seed = seed * 1103515245u + 12345u;
        r = (seed >> 8) % (i + 1);
        x = order[i], order[i] = order[r], order[r] = x;
    }
    pthread_barrier_wait(t->gate);
    for (i = 0; i < KB_PAIRS && t->rc == KAAL_OK; i += 25) {
        const char *keys[25];
        int64_t fires[25];
        int won[25];
        char node[16];
        size_t n = KB_PAIRS - i < 25 ? KB_PAIRS - i : 25;
        for (j = 0; j < n; j++) keys[j] = t->keys[order[i + j]], fires[j] = t->fires[order[i + j]];
        snprintf(node, sizeof node, "node-%d", t->idx);
        t->rc = kb_claim(t->b, keys, fires, n, node, NOW, won);
        for (j = 0; t->rc == KAAL_OK && j < n; j++)
            if (won[j]) __atomic_add_fetch(&t->owner[order[i + j]], 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

/* KB_THREADS threads claim the same KB_PAIRS pairs in batches of 25, each in
 * its own order, through handles[i % nhandles]; every pair is won once. */
static void kb_test_threads(kaal_backend **handles, size_t nhandles)
{
    static char keys[KB_PAIRS][16];
    static int64_t fires[KB_PAIRS];
    static int owner[KB_PAIRS];
    pthread_t th[KB_THREADS];
    kb_thread t[KB_THREADS];
    pthread_barrier_t gate;
    size_t i, once = 0;
    int started = 0;
    for (i = 0; i < KB_PAIRS; i++) {
        snprintf(keys[i], sizeof keys[i], "job-%zu", i % 20);
        fires[i] = NOW + (int64_t)(i / 20) * 60;
        owner[i] = 0;
    }
    pthread_barrier_init(&gate, NULL, KB_THREADS);
    for (i = 0; i < KB_THREADS; i++) {
        t[i].b = handles[i % nhandles];
        t[i].idx = (int)i;
        t[i].gate = &gate;
        t[i].keys = keys;
        t[i].fires = fires;
        t[i].owner = owner;
        t[i].rc = KAAL_OK;
        if (pthread_create(&th[i], NULL, kb_claimer, &t[i]) == 0) started++;
    }
    KT_CHECK(started == KB_THREADS, "started %d threads", started);
    for (i = 0; i < (size_t)started; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&gate);
    for (i = 0; i < KB_THREADS; i++) KT_CHECK(t[i].rc == KAAL_OK, "thread %zu: rc %d", i, t[i].rc);
    for (i = 0; i < KB_PAIRS; i++) {
        once += owner[i] == 1;
        if (owner[i] != 1) KT_CHECK(0, "pair %zu (%s, %lld) won %d times", i, keys[i], (long long)fires[i], owner[i]);
    }
    KT_CHECK(once == KB_PAIRS, "%zu of %d pairs won exactly once", once, KB_PAIRS);
    {
        kaal_dispatch_rows rows = kb_dispatches(handles[0], NULL, "claimed", NULL, 10 * KB_PAIRS);
        KT_CHECK(rows.len == KB_PAIRS, "log rows after threads: %zu", rows.len);
        kaal_dispatch_rows_free(&rows);
    }
}

#endif
