/* Memory backend tests: the behaviour every backend must have, driven
 * through the vtable as the binding drives it (kbackend.h), plus what only
 * this store does: one store per handle, bad arguments refused, and threads
 * sharing one handle (one call at a time). Run under ASan/UBSan; LeakSanitizer
 * checks that every row and store is freed. */
#define _GNU_SOURCE
#include <time.h>

#include "ktest.h"
#include "kbackend.h"

static kaal_backend *open_memory(const char *ns)
{
    kaal_backend *b = kb_new(&kaal_backend_memory, ns, NULL);
    KB_OK(b, b->vt->migrate(b, &err));
    return b;
}

static const kb_suite MEMORY = {open_memory, 0};

/* What the memory store refuses (the binding checks the rest in Ruby). */
static void test_arguments(void)
{
    kaal_backend *b = open_memory("args");
    kaal_claim c = {"a", 1, NOW, 7};
    kaal_delayed_row job = {0};
    kaal_dispatch_rows rows = {0};
    kaal_dispatch_query q = {NULL, "bogus", NULL, 10};
    int rc;

    rc = KB(b, b->vt->claim(b, &c, 1, 0, "n", NOW, &err));
    KT_CHECK(rc == KAAL_EARG && strcmp(kb_last_err.field, "lease_ms") == 0, "lease 0: %d", rc);
    KT_CHECK(kb_claim1(b, "a", NOW, "n", NOW) == 1, "lease refusal claimed nothing");
    rc = KB(b, b->vt->record(b, "a", NOW, "claimed", "n", NULL, NOW, &err));
    KT_CHECK(rc == KAAL_EARG, "record claimed: %d", rc);
    rc = KB(b, b->vt->record(b, "a", NOW, "bogus", "n", NULL, NOW, &err));
    KT_CHECK(rc == KAAL_EARG, "record bogus: %d", rc);
    KT_CHECK(strcmp(kb_status(b, "a", NOW), "claimed") == 0, "status unchanged");
    KB_OK(b, b->vt->dispatches(b, &q, &rows, &err));
    KT_CHECK(rows.len == 0, "unknown status matches nothing");
    kaal_dispatch_rows_free(&rows);

    job.job_id = (char *)"j";
    job.job_class = (char *)"Job";
    rc = KB(b, b->vt->delayed_add(b, &job, &err)); /* args missing */
    KT_CHECK(rc == KAAL_EARG, "no args: %d", rc);
    KT_CHECK(kb_count(b) == 0, "nothing added");
    kaal_backend_free(b);
}

/* Handles never share a store; close frees it, disconnect keeps it. */
static void test_store_per_handle(void)
{
    kaal_backend *a = open_memory("kaal"), *b = open_memory("kaal");
    KT_CHECK(kb_claim1(a, "job", NOW, "n", NOW) == 1 && kb_claim1(b, "job", NOW, "n", NOW) == 1,
             "one store per handle");
    KT_CHECK(kb_add(a, "j", 1, NULL, NULL) == KAAL_OK && kb_count(b) == 0, "delayed per handle");
    kb_lock(a);
    a->vt->close(a);
    kaal_backend_release(a);
    KT_CHECK(a->impl == NULL && !a->connected, "close frees the store");
    KT_CHECK(kb_claim1(a, "job", NOW, "n", NOW) == 1, "a fresh store after close");
    KT_CHECK(kb_count(a) == 0, "fresh store has no jobs");
    /* a never-connected handle closes cleanly */
    kaal_backend_free(kb_new(&kaal_backend_memory, "never", NULL));
    kaal_backend_free(a);
    kaal_backend_free(b);
}

/* A store left full of rows, errors, interned nodes and keys, jobs, states
 * and heartbeats: close must free every byte of it (LeakSanitizer), and
 * cleanup, cancel, records and heartbeat pruning must free what they drop. */
static void test_owned_strings(void)
{
    kaal_backend *b = open_memory("strings");
    char key[64], node[32], error[64];
    int i;
    for (i = 0; i < 300; i++) {
        snprintf(key, sizeof key, "key-%d", i % 17);
        snprintf(node, sizeof node, "node-%d", i % 5);
        snprintf(error, sizeof error, "error %d", i);
        kb_claim1(b, key, NOW + i, node, NOW);
        KB_OK(b, b->vt->record(b, key, NOW + i, i % 2 ? "failed" : "dispatched", node,
                               i % 2 ? error : NULL, NOW + 1, &err));
        /* records overwrite errors */
        if (i % 3 == 0)
            KB_OK(b, b->vt->record(b, key, NOW + i, "failed", NULL, "again", NOW + 2, &err));
        snprintf(key, sizeof key, "job-%d", i);
        kb_add(b, key, i, i % 2 ? "q" : NULL, "[1]");
        snprintf(node, sizeof node, "hb-%d", i % 7);
        KB_OK(b, b->vt->heartbeat(b, node, i % 2 ? "{}" : NULL, NOW + i, 3, &err));
        KB_OK(b, b->vt->set_enabled(b, key, i % 2, &err));
    }
    KT_CHECK(kb_cleanup(b, NOW + 150, 1000) == 150, "cleanup half");
    KT_CHECK(kb_cancel(b, "job-42") == 1, "cancel");
    {
        kaal_node_rows rows = {0};
        KB_OK(b, b->vt->nodes(b, 0, &rows, &err));
        KT_CHECK(rows.len == 4, "ttl 3 keeps the last 4 nodes: %zu", rows.len);
        kaal_node_rows_free(&rows);
    }
    {
        char buf[64];
        KT_CHECK(strcmp(kb_claim_ids(b, 2, 10, buf, sizeof buf), "job-0 job-1 job-2") == 0,
                 "claim: %s", buf);
    }
    kaal_backend_free(b); /* the rest is freed by close (LeakSanitizer) */
}

/* kaal_backend_memsize counts the store: it grows with the rows and jobs,
 * stays put while a call runs (the size last measured) and drops on close. */
static void test_memsize(void)
{
    kaal_backend *b = open_memory("memsize");
    size_t empty = kaal_backend_memsize(b), full, during;
    char key[64];
    int i;
    KT_CHECK(empty > sizeof *b, "an empty store counts: %zu", empty);
    for (i = 0; i < 500; i++) {
        snprintf(key, sizeof key, "a-rather-long-job-key-%d", i);
        kb_claim1(b, key, NOW, "node", NOW);
        kb_add(b, key, i, NULL, "[1,2,3]");
    }
    full = kaal_backend_memsize(b);
    KT_CHECK(full > empty + 500 * 2 * 30, "rows and jobs counted: %zu -> %zu", empty, full);
    kb_lock(b);
    during = kaal_backend_memsize(b);
    KT_CHECK(during == full, "busy handle: the size last measured (%zu, %zu)", during, full);
    b->vt->close(b);
    kaal_backend_release(b);
    KT_CHECK(kaal_backend_memsize(b) < empty, "closed: the handle only (%zu)", kaal_backend_memsize(b));
    kaal_backend_free(b);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(void)
{
    double t0 = now_s();
    kaal_backend *shared;
    test_memsize();

    kb_test_claims(&MEMORY);
    kb_test_large_batch(&MEMORY, 3000);
    kb_test_dispatch_log(&MEMORY);
    kb_test_cleanup(&MEMORY, 100000, 1000);
    kb_test_states(&MEMORY);
    kb_test_schedules(&MEMORY);
    kb_test_delayed(&MEMORY);
    kb_test_nodes(&MEMORY);
    kb_test_reconnect(&MEMORY);
    test_arguments();
    test_store_per_handle();
    test_owned_strings();

    /* threads share one handle: the store has no lock of its own, the handle
     * (acquired by every kb_* call, as by the binding) serialises them */
    shared = open_memory("threads");
    kb_test_threads(&shared, 1);
    kaal_backend_free(shared);

    printf("%s: %.2f s\n", __FILE__, now_s() - t0);
    KT_DONE();
}
