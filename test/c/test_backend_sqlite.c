/* SQLite backend tests on a temporary file: the behaviour every backend must
 * have (kbackend.h; here "another node" is another handle on the same file),
 * several handles claiming the same pairs from several threads, migrate run
 * again, namespaces. Built with KAAL_HAVE_SQLITE when pkg-config finds
 * sqlite3; otherwise it prints a skip line and passes. */
#define _GNU_SOURCE
#include <time.h>

#include "ktest.h"

#ifndef KAAL_HAVE_SQLITE

int main(void)
{
    printf("%s: skipped (built without sqlite3)\n", __FILE__);
    KT_DONE();
}

#else

#include <sqlite3.h>

#include "kbackend.h"

static char db_path[256];

static kaal_backend *open_sqlite(const char *ns)
{
    kaal_backend *b = kb_new(&kaal_backend_sqlite, ns, db_path);
    KB_OK(b, b->vt->migrate(b, &err));
    return b;
}

static const kb_suite SQLITE = {open_sqlite, 1};

/* The file and its WAL and shared-memory index. */
static void remove_db(void)
{
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    char p[300];
    size_t i;
    for (i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", db_path, suffix[i]);
        unlink(p);
    }
}

static void test_config(void)
{
    static const char *const bad[] = {"", ":memory:", "file::memory:?cache=shared",
                                      "file:x?mode=memory"};
    size_t i;
    for (i = 0; i < 4; i++) {
        kaal_backend *b = kb_new(&kaal_backend_sqlite, "cfg", bad[i]);
        int rc = KB(b, KAAL_OK);
        KT_CHECK(rc == KAAL_ECONFIG && !b->connected && b->impl == NULL, "path \"%s\": %d", bad[i], rc);
        kaal_backend_free(b);
    }
    {
        kaal_backend *b = kb_new(&kaal_backend_sqlite, "cfg", "/nonexistent-dir/kaal.sqlite3");
        int rc = KB(b, KAAL_OK);
        KT_CHECK(rc == KAAL_ECONNECT && !b->connected, "missing dir: %d", rc);
        kaal_backend_free(b);
    }
    {
        kaal_backend *b = kb_new(&kaal_backend_sqlite, "cfg", NULL); /* never connected */
        kaal_backend_free(b);
    }
}

/* Namespaces on one file see nothing of each other. */
static void test_namespaces(void)
{
    kaal_backend *a = open_sqlite("ns-a"), *b = open_sqlite("ns-b");
    kaal_node_rows nodes = {0};
    char buf[64];
    KT_CHECK(kb_claim1(a, "job", NOW, "n", NOW) == 1, "a claims");
    KB_OK(a, b->vt->set_enabled(b, "job", 0, &err));
    KT_CHECK(kb_add(a, "j1", 1, NULL, NULL) == KAAL_OK, "a adds");
    KB_OK(a, b->vt->heartbeat(b, "node-a", NULL, NOW, 60, &err));
    KT_CHECK(kb_claim1(b, "job", NOW, "n", NOW) == 1, "b claims the same pair");
    KT_CHECK(kb_count(b) == 0, "b has no jobs");
    KT_CHECK(strcmp(kb_claim_ids(b, 1 << 30, 10, buf, sizeof buf), "") == 0, "b claims no job");
    KB_OK(b, b->vt->nodes(b, 0, &nodes, &err));
    KT_CHECK(nodes.len == 0, "b sees no nodes");
    kaal_node_rows_free(&nodes);
    {
        kaal_state_rows st = {0};
        KB_OK(b, b->vt->states(b, &st, &err));
        KT_CHECK(st.len == 0, "b sees no states");
        kaal_state_rows_free(&st);
    }
    KT_CHECK(kb_cleanup(b, NOW + 1, 100) == 1, "b cleans its own row");
    KT_CHECK(strcmp(kb_status(a, "job", NOW), "claimed") == 0, "a keeps its row");
    KT_CHECK(kb_count(a) == 1, "a keeps its job");
    kaal_backend_free(a);
    kaal_backend_free(b);
}

/* Two handles on the file, each migrated twice, then a fresh handle. */
static void test_migrate_twice(void)
{
    kaal_backend *a = open_sqlite("migrate"), *b = open_sqlite("migrate");
    KB_OK(a, b->vt->migrate(b, &err));
    KB_OK(b, b->vt->migrate(b, &err));
    KB_OK(a, b->vt->migrate(b, &err));
    KT_CHECK(kb_claim1(a, "job", NOW, "n", NOW) == 1 && kb_claim1(b, "job", NOW, "m", NOW) == 0,
             "claims after migrate");
    kaal_backend_free(a);
    kaal_backend_free(b);
}

/* Batches that span several INSERT statements (and one transaction), with
 * repeats within and across statement boundaries: exactly the first
 * occurrence of each pair wins. */
static void test_chunked_claims(void)
{
    kaal_backend *a = open_sqlite("chunks"), *b = open_sqlite("chunks");
    static const size_t sizes[] = {1, 2, 3, 33, 63, 100, 4095, 4096, 4097, 9000};
    enum { MAX = 9000 };
    static const char *keys[MAX];
    static int64_t fires[MAX];
    static int won[MAX], first[MAX];
    static char names[MAX][16];
    size_t s, i;
    int64_t base = NOW;
    for (s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s], uniq = (n + 1) / 2, wrong = 0, again = 0;
        for (i = 0; i < uniq; i++) first[i] = -1;
        for (i = 0; i < n; i++) {
            size_t u = (i * 2654435761u) % uniq; /* most pairs twice, in scattered places */
            snprintf(names[i], sizeof names[i], "c%zu", u % 50);
            keys[i] = names[i];
            fires[i] = base + (int64_t)(u / 50);
            if (first[u] < 0) first[u] = (int)i;
        }
        KT_CHECK(kb_claim(a, keys, fires, n, "node-a", NOW, won) == KAAL_OK, "chunked %zu", n);
        for (i = 0; i < n; i++) {
            size_t u = (i * 2654435761u) % uniq;
            wrong += won[i] != (first[u] == (int)i);
        }
        KT_CHECK(wrong == 0, "batch of %zu: %zu pairs not won by their first occurrence", n, wrong);
        KT_CHECK(kb_claim(b, keys, fires, n, "node-b", NOW, won) == KAAL_OK, "chunked %zu again", n);
        for (i = 0; i < n; i++) again += won[i] != 0;
        KT_CHECK(again == 0, "batch of %zu: %zu won twice", n, again);
        base += 100000;
    }
    kaal_backend_free(a);
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
    const char *tmp = getenv("TMPDIR");
    double t0 = now_s();
    kaal_backend *handles[4];
    size_t i;
    int fd;

    snprintf(db_path, sizeof db_path, "%s/kaal-ctest-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    fd = mkstemp(db_path);
    if (fd < 0) {
        perror("mkstemp");
        return 1;
    }
    close(fd); /* an empty file is a valid, empty database */

    test_config();
    kb_test_claims(&SQLITE);
    kb_test_large_batch(&SQLITE, 3000);
    kb_test_dispatch_log(&SQLITE);
    kb_test_cleanup(&SQLITE, 20000, 1000);
    kb_test_states(&SQLITE);
    kb_test_schedules(&SQLITE);
    kb_test_delayed(&SQLITE);
    kb_test_nodes(&SQLITE);
    kb_test_reconnect(&SQLITE);
    test_namespaces();
    test_migrate_twice();
    test_chunked_claims();

    /* four handles on the file (four connections), two threads each */
    for (i = 0; i < 4; i++) handles[i] = open_sqlite("threads");
    kb_test_threads(handles, 4);
    for (i = 0; i < 4; i++) kaal_backend_free(handles[i]);

    remove_db();
    printf("%s: %.2f s (sqlite %s)\n", __FILE__, now_s() - t0, sqlite3_libversion());
    KT_DONE();
}

#endif
