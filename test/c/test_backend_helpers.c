/* The shared helpers of backend.c: UTF-8 and VARCHAR(255) checks, claim
 * ordering and the search that marks won pairs, the row readers and row
 * arrays, and the schema text of every dialect. Built with the SQL macros
 * on (see the Rakefile) so every dialect's schema is compiled; the vtables
 * of the stores not built here are stand-ins. */
#include "ktest.h"
#include "backend.h"
#include "schema.h"

const kaal_backend_vtable kaal_backend_postgres = {.name = "postgres"};
const kaal_backend_vtable kaal_backend_mysql = {.name = "mysql"};
const kaal_backend_vtable kaal_backend_sqlite = {.name = "sqlite"};

static void test_utf8(void)
{
    static const struct {
        const char *s;
        size_t n;
        long chars;
    } cases[] = {
        {"", 0, 0},
        {"abc", 3, 3},
        {"\xc3\xa9t\xc3\xa9", 5, 3},
        {"\xe2\x98\x83", 3, 1},
        {"\xf0\x9f\x98\x80", 4, 1},
        {"\xf4\x8f\xbf\xbf", 4, 1},   /* U+10FFFF */
        {"a\0b", 3, -1},              /* NUL */
        {"\xc0\xaf", 2, -1},          /* overlong */
        {"\xe0\x80\xaf", 3, -1},      /* overlong */
        {"\xf0\x80\x80\xaf", 4, -1},  /* overlong */
        {"\xed\xa0\x80", 3, -1},      /* surrogate */
        {"\xf4\x90\x80\x80", 4, -1},  /* > U+10FFFF */
        {"\xc3", 1, -1},              /* truncated */
        {"\xe2\x98", 2, -1},          /* truncated */
        {"\x80", 1, -1},              /* lone continuation */
        {"\xc3\x28", 2, -1},          /* bad continuation */
        {"\xff", 1, -1},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long got = kaal_utf8_chars(cases[i].s, cases[i].n);
        KT_CHECK(got == cases[i].chars, "utf8 case %zu: %ld, want %ld", i, got, cases[i].chars);
    }
}

static void test_varchar(void)
{
    char buf[1024];
    kaal_error err;
    size_t i;
    memset(buf, 'x', 255);
    KT_CHECK(kaal_check_varchar("t", "job key", buf, 255, &err) == KAAL_OK, "255 ascii");
    buf[255] = 'x';
    KT_CHECK(kaal_check_varchar("t", "job key", buf, 256, &err) == KAAL_EARG &&
                 strstr(err.message, "256 characters") && strncmp(err.message, "t: ", 3) == 0 &&
                 strcmp(err.field, "job key") == 0,
             "256 ascii: %s", err.message);
    for (i = 0; i < 255; i++) memcpy(buf + 3 * i, "\xe2\x98\x83", 3); /* 255 chars, 765 bytes */
    KT_CHECK(kaal_check_varchar("t", "node", buf, 765, &err) == KAAL_OK, "255 snowmen");
    memcpy(buf + 765, "\xe2\x98\x83", 3);
    KT_CHECK(kaal_check_varchar("t", "node", buf, 768, &err) == KAAL_EARG, "256 snowmen");
    KT_CHECK(kaal_check_varchar("t", "node", "a\xff", 2, &err) == KAAL_EARG &&
                 strstr(err.message, "valid UTF-8"),
             "invalid: %s", err.message);
    KT_CHECK(kaal_check_varchar_opt("t", "node", NULL, &err) == KAAL_OK, "NULL passes");
    KT_CHECK(kaal_check_varchar_opt("t", "node", "n\xc3", &err) == KAAL_EARG, "opt invalid");
    {
        kaal_claim items[2] = {{"ok", 2, 1, 0}, {"a\0b", 3, 1, 0}};
        KT_CHECK(kaal_check_claims("t", items, 1, "node", &err) == KAAL_OK, "claims ok");
        KT_CHECK(kaal_check_claims("t", items, 2, "node", &err) == KAAL_EARG, "NUL in key");
        KT_CHECK(kaal_check_claims("t", items, 1, "\xff", &err) == KAAL_EARG &&
                     strcmp(err.field, "node") == 0,
                 "bad node");
        KT_CHECK(kaal_check_claims("t", items, 0, NULL, &err) == KAAL_OK, "empty");
    }
}

/* kaal_claims_sorted orders by (fire time, key bytes), repeats in input
 * order; kaal_claims_won marks the first of repeats. */
static void test_claim_order(void)
{
    kaal_claim items[] = {
        {"b", 1, 10, 0}, {"a", 1, 20, 0}, {"ab", 2, 10, 0}, {"a", 1, 10, 0}, {"b", 1, 10, 0},
        {"", 0, 10, 0},  {"a", 1, -5, 0}, {"b", 1, 10, 0},  {"\xc3\xa9", 2, 10, 0},
    };
    size_t n = sizeof items / sizeof items[0], i;
    kaal_claim **order = kaal_claims_sorted(items, n);
    static const int want[] = {6, 5, 3, 2, 0, 4, 7, 8, 1};
    KT_CHECK(order != NULL, "sorted");
    if (!order) return;
    for (i = 0; i < n; i++)
        KT_CHECK(order[i] == &items[want[i]], "order %zu: item %d, want %d", i,
                 (int)(order[i] - items), want[i]);
    kaal_claims_won(order, n, "b", 1, 10);
    kaal_claims_won(order, n, "a", 1, -5);
    kaal_claims_won(order, n, "\xc3\xa9", 2, 10);
    kaal_claims_won(order, n, "zz", 2, 10);  /* not in the batch: nothing */
    kaal_claims_won(order, n, "a", 1, 11);   /* not in the batch */
    kaal_claims_won(order, n, "", 0, 10);
    for (i = 0; i < n; i++) {
        int w = i == 0 || i == 6 || i == 8 || i == 5;
        KT_CHECK(items[i].claimed == w, "claimed %zu: %d", i, items[i].claimed);
    }
    KT_CHECK(kaal_claim_cmp(&items[1], "a", 1, 10) > 0 && kaal_claim_cmp(&items[3], "ab", 2, 10) < 0 &&
                 kaal_claim_cmp(&items[2], "a", 1, 10) > 0 && kaal_claim_cmp(&items[3], "a", 1, 10) == 0,
             "claim_cmp");
    free(order);
    order = kaal_claims_sorted(items, 0);
    KT_CHECK(order != NULL, "sorted of none");
    kaal_claims_won(order, 0, "a", 1, 1);
    free(order);
}

/* A fake result row: column i is text[i] (NULL = SQL NULL) / num[i]; the
 * copy of column oom_col fails as if out of memory (-1: none does). */
typedef struct fake_row {
    const char *text[8];
    int64_t num[8];
    int oom_col;
} fake_row;

static char *fake_text(const void *src, int col)
{
    const fake_row *r = src;
    return col == r->oom_col ? NULL : kaal_strdup(r->text[col]);
}

static int64_t fake_num(const void *src, int col) { return ((const fake_row *)src)->num[col]; }

static int fake_null(const void *src, int col) { return ((const fake_row *)src)->text[col] == NULL; }

static void test_row_readers(void)
{
    fake_row r = {{"job", NULL, "failed", NULL, "boom", NULL, NULL}, {0, 1767225600, 0, 0, 0, 5, 6}, -1};
    kaal_columns c = {fake_text, fake_num, fake_null, &r, NULL};
    kaal_dispatch_rows d = {0};
    kaal_delayed_rows j = {0};
    kaal_state_rows s = {0};
    kaal_node_rows nd = {0};
    int i;

    for (i = 0; i < 100; i++) KT_CHECK(kaal_read_dispatch_row(&d, &c) == KAAL_OK, "dispatch %d", i);
    KT_CHECK(d.len == 100 && d.cap >= 100, "dispatch rows %zu", d.len);
    KT_CHECK(strcmp(d.rows[99].key, "job") == 0 && d.rows[99].fire_time == 1767225600 &&
                 strcmp(d.rows[99].status, "failed") == 0 && d.rows[99].node == NULL &&
                 strcmp(d.rows[99].error, "boom") == 0 && d.rows[99].claimed_at == 5 &&
                 d.rows[99].updated_at == 6,
             "dispatch row");
    kaal_dispatch_rows_free(&d);
    KT_CHECK(d.rows == NULL && d.len == 0 && d.cap == 0, "dispatch freed");

    r = (fake_row){{"id", NULL, "Job", NULL, "[]"}, {0, 1500}, -1};
    for (i = 0; i < 40; i++) kaal_read_delayed_row(&j, &c);
    KT_CHECK(j.len == 40 && strcmp(j.rows[0].job_id, "id") == 0 && j.rows[0].run_at_ms == 1500 &&
                 strcmp(j.rows[0].job_class, "Job") == 0 && j.rows[0].queue == NULL &&
                 strcmp(j.rows[0].args, "[]") == 0,
             "delayed row");
    kaal_delayed_rows_truncate(&j, 10);
    KT_CHECK(j.len == 10, "truncated to %zu", j.len);
    kaal_delayed_rows_truncate(&j, 20); /* keep more than there are: nothing */
    KT_CHECK(j.len == 10, "truncate past the end");
    kaal_delayed_rows_free(&j);

    r = (fake_row){{"k"}, {0, 7}, -1};
    kaal_read_state_row(&s, &c);
    r.num[1] = 0;
    kaal_read_state_row(&s, &c);
    KT_CHECK(s.len == 2 && s.rows[0].enabled == 1 && s.rows[1].enabled == 0, "state rows");
    kaal_state_rows_free(&s);

    r = (fake_row){{"n", "{}"}, {0, 0, 99}, -1};
    kaal_read_node_row(&nd, &c);
    KT_CHECK(nd.len == 1 && strcmp(nd.rows[0].node, "n") == 0 && strcmp(nd.rows[0].info, "{}") == 0 &&
                 nd.rows[0].last_seen == 99,
             "node row");
    kaal_node_rows_free(&nd);
}

/* A copy that fails is ENOMEM, never a NULL column: a delayed job whose
 * queue could not be copied must not run on the default queue. */
static void test_row_readers_oom(void)
{
    fake_row r = {{"job", NULL, "failed", "node", "boom"}, {0}, 3};
    kaal_columns c = {fake_text, fake_num, fake_null, &r, NULL};
    kaal_dispatch_rows d = {0};
    kaal_delayed_rows j = {0};
    kaal_state_rows s = {0};
    kaal_node_rows nd = {0};
    int col;

    KT_CHECK(kaal_read_dispatch_row(&d, &c) == KAAL_ENOMEM, "dispatch node copy fails");
    r.text[3] = NULL; /* a real SQL NULL in that column is fine */
    KT_CHECK(kaal_read_dispatch_row(&d, &c) == KAAL_OK && d.rows[1].node == NULL, "dispatch NULL node");
    kaal_dispatch_rows_free(&d);

    for (col = 0; col < 5; col++) {
        if (col == 1) continue; /* run_at_ms is a number */
        r = (fake_row){{"id", NULL, "Job", "mail", "[]"}, {0, 1500}, col};
        KT_CHECK(kaal_read_delayed_row(&j, &c) == KAAL_ENOMEM, "delayed column %d copy fails", col);
    }
    kaal_delayed_rows_free(&j);

    r = (fake_row){{"k"}, {0, 1}, 0};
    KT_CHECK(kaal_read_state_row(&s, &c) == KAAL_ENOMEM, "state key copy fails");
    kaal_state_rows_free(&s);

    r = (fake_row){{"n", "{}"}, {0}, 1};
    KT_CHECK(kaal_read_node_row(&nd, &c) == KAAL_ENOMEM, "node info copy fails");
    kaal_node_rows_free(&nd);
}

static size_t count_has(const char *const *schema, const char *needle)
{
    size_t i, n = 0;
    for (i = 0; schema[i]; i++) n += strstr(schema[i], needle) != NULL;
    return n;
}

static void check_schema(const char *dialect, const char *const *schema, size_t statements,
                         size_t create_index)
{
    static const char *const tables[] = {"TABLE IF NOT EXISTS kaal_dispatches (",
                                         "TABLE IF NOT EXISTS kaal_delayed_jobs (",
                                         "TABLE IF NOT EXISTS kaal_job_states (",
                                         "TABLE IF NOT EXISTS kaal_nodes ("};
    size_t i, n = 0;
    while (schema[n]) n++;
    KT_CHECK(n == statements, "%s: %zu statements", dialect, n);
    for (i = 0; i < n; i++)
        KT_CHECK(strstr(schema[i], "IF NOT EXISTS") != NULL, "%s: not idempotent: %s", dialect, schema[i]);
    for (i = 0; i < 4; i++)
        KT_CHECK(count_has(schema, tables[i]) == 1, "%s: table %s", dialect, tables[i]);
    KT_CHECK(count_has(schema, "CREATE INDEX") == create_index, "%s: create index", dialect);
    KT_CHECK(count_has(schema, "index_kaal_dispatches_on_namespace_and_fire_time") == 1 &&
                 count_has(schema, "index_kaal_delayed_jobs_on_namespace_and_run_at_ms") == 1,
             "%s: indexes", dialect);
    KT_CHECK(count_has(schema, "PRIMARY KEY (namespace, job_key, fire_time)") == 1 &&
                 count_has(schema, "PRIMARY KEY (namespace, job_id)") == 1 &&
                 count_has(schema, "PRIMARY KEY (namespace, job_key))") == 1 &&
                 count_has(schema, "PRIMARY KEY (namespace, node))") == 1,
             "%s: primary keys", dialect);
}

static void test_schema(void)
{
    check_schema("sqlite", kaal_schema_sqlite, 6, 2);
    check_schema("postgres", kaal_schema_postgres, 6, 2);
    check_schema("mysql", kaal_schema_mysql, 4, 0);
    KT_CHECK(count_has(kaal_schema_mysql, "ENGINE=InnoDB") == 4 && count_has(kaal_schema_mysql, "MEDIUMTEXT") == 1,
             "mysql options");
    KT_CHECK(count_has(kaal_schema_sqlite, " args TEXT NOT NULL") == 1, "sqlite args");
    /* Step 1 is the first release's tables exactly; step 2 adds the
     * schedules, their counter and the step record, idempotently. */
    KT_CHECK(kaal_schema_steps_sqlite[0] == kaal_schema_sqlite && kaal_schema_steps_postgres[0] == kaal_schema_postgres &&
                 kaal_schema_steps_mysql[0] == kaal_schema_mysql,
             "step 1");
    {
        const char *const *const *all[3] = {kaal_schema_steps_sqlite, kaal_schema_steps_postgres,
                                            kaal_schema_steps_mysql};
        size_t d;
        for (d = 0; d < 3; d++) {
            const char *const *s2 = all[d][1];
            KT_CHECK(count_has(s2, "CREATE TABLE IF NOT EXISTS kaal_schedules (") == 1 &&
                         count_has(s2, "CREATE TABLE IF NOT EXISTS kaal_schedule_versions (") == 1 &&
                         count_has(s2, "CREATE TABLE IF NOT EXISTS kaal_schema_steps (") == 1,
                     "step 2 tables (%zu)", d);
            KT_CHECK(count_has(s2, "INTO kaal_schema_steps (step, applied_at) VALUES (1, ") == 1 &&
                         (count_has(s2, "ON CONFLICT (step) DO NOTHING") + count_has(s2, "INSERT IGNORE")) == 1,
                     "step 2 records steps 1 and 2 idempotently (%zu)", d);
        }
        KT_CHECK(count_has(kaal_schema_steps_mysql[1], "KEY index_kaal_schedules_on_namespace_and_version") == 1,
                 "mysql schedules index");
    }
    {
        int none[2] = {0, 0}, first[2] = {1, 0}, both[2] = {1, 1};
        KT_CHECK(kaal_schema_version_of(none, 0) == 0 && kaal_schema_version_of(first, 0) == 1 &&
                     kaal_schema_version_of(both, 0) == 2 && kaal_schema_version_of(both, 2) == 2 &&
                     kaal_schema_version_of(first, 3) == 3,
                 "schema version from marker tables and the record");
    }
    KT_CHECK(kaal_backend_find("memory") == &kaal_backend_memory && kaal_backend_find("mysql") == &kaal_backend_mysql &&
                 kaal_backend_find("nope") == NULL,
             "backend_find");
}

static void test_strings(void)
{
    kaal_conn_params p = {0};
    char *s = kaal_strndup("abcdef", 3);
    KT_CHECK(s && strcmp(s, "abc") == 0, "strndup");
    free(s);
    KT_CHECK(kaal_strdup(NULL) == NULL && kaal_strndup(NULL, 3) == NULL, "NULL in, NULL out");
    p.host = kaal_strdup("h");
    p.password = kaal_strdup("secret");
    p.path = kaal_strdup("/x");
    kaal_conn_params_free(&p);
    KT_CHECK(p.host == NULL && p.password == NULL && p.path == NULL, "params freed");
    kaal_conn_params_free(&p); /* twice is fine */
    KT_CHECK(kaal_silence_inherited_socket(-1) == 1, "no fd");
}

/* The shared writers: the growable buffer, the multi-row statement text,
 * the power-of-two slot, the outcome check. */
static void test_writers(void)
{
    kaal_buf o = {0};
    kaal_error err;
    char *sql;
    int i;
    for (i = 0; i < 1000; i++) kaal_buf_str(&o, "0123456789");
    kaal_buf_put(&o, "ab\0c", 4);
    KT_CHECK(!o.oom && o.len == 10004 && o.p[o.len] == '\0' && memcmp(o.p + 10000, "ab\0c", 4) == 0,
             "buffer: %zu bytes", o.len);
    free(o.p);

    sql = kaal_sql_rows("INSERT INTO t VALUES ", "(?1, ?#, ?#)", 3, 4, " RETURNING x");
    KT_CHECK(sql && strcmp(sql, "INSERT INTO t VALUES (?1, ?4, ?5),(?1, ?6, ?7),(?1, ?8, ?9) RETURNING x") == 0,
             "numbered rows: %s", sql ? sql : "(null)");
    free(sql);
    sql = kaal_sql_rows("V ", "(?, ?)", 2, 1, "");
    KT_CHECK(sql && strcmp(sql, "V (?, ?),(?, ?)") == 0, "plain rows: %s", sql ? sql : "(null)");
    free(sql);
    sql = kaal_sql_rows("H", "(#)", 1, 9, "T");
    KT_CHECK(sql && strcmp(sql, "H(9)T") == 0, "one row: %s", sql ? sql : "(null)");
    free(sql);

    KT_CHECK(kaal_claim_slot(0) == 0 && kaal_claim_slot(1) == 0 && kaal_claim_slot(2) == 1 &&
                 kaal_claim_slot(3) == 2 && kaal_claim_slot(256) == 8 && kaal_claim_slot(257) == 9,
             "claim slots");

    KT_CHECK(kaal_check_outcome("dispatched", &err) == KAAL_OK && kaal_check_outcome("failed", &err) == KAAL_OK,
             "outcomes");
    kaal_error_clear(&err);
    KT_CHECK(kaal_check_outcome("claimed", &err) == KAAL_EARG && strstr(err.message, "dispatched"),
             "claimed is no outcome: %s", err.message);
    KT_CHECK(kaal_check_outcome(NULL, &err) == KAAL_EARG, "NULL is no outcome");
}

/* A stored schedule row (seven texts, then enabled, deleted, version,
 * updated_at) read through text copies and through view (one block): the
 * same row; a view that fails is ENOMEM, never a NULL column. */
typedef struct fake_sched {
    const char *text[7];
    int64_t num[11];
    int oom_col;
} fake_sched;

static char *sched_text(const void *src, int col)
{
    const fake_sched *r = src;
    return col == r->oom_col || !r->text[col] ? NULL : kaal_strdup(r->text[col]);
}

static const char *sched_view(const void *src, int col, size_t *len)
{
    const fake_sched *r = src;
    const char *t = col == r->oom_col ? NULL : r->text[col];
    *len = t ? strlen(t) : 0;
    return t;
}

static int64_t sched_num(const void *src, int col) { return ((const fake_sched *)src)->num[col]; }

static int sched_null(const void *src, int col) { return col < 7 && ((const fake_sched *)src)->text[col] == NULL; }

static void test_schedule_row_reader(void)
{
    fake_sched r = {{"k", "0 9 * * *", "Job", "[1]", "{}", NULL, "q"}, {0, 0, 0, 0, 0, 0, 0, 1, 0, 42, 7}, -1};
    kaal_columns copied = {sched_text, sched_num, sched_null, &r, NULL};
    kaal_columns viewed = {sched_text, sched_num, sched_null, &r, sched_view};
    kaal_schedule_rows rows = {0};
    size_t i;

    KT_CHECK(kaal_read_schedule_row(&rows, &copied) == KAAL_OK && kaal_read_schedule_row(&rows, &viewed) == KAAL_OK,
             "schedule rows read");
    for (i = 0; i < rows.len; i++) {
        const kaal_schedule_row *d = &rows.rows[i];
        KT_CHECK(strcmp(d->key, "k") == 0 && strcmp(d->cron, "0 9 * * *") == 0 && strcmp(d->job_class, "Job") == 0 &&
                     strcmp(d->args, "[1]") == 0 && strcmp(d->kwargs, "{}") == 0 && d->time_zone == NULL &&
                     strcmp(d->queue, "q") == 0 && d->enabled == 1 && d->deleted == 0 && d->version == 42 &&
                     d->updated_at == 7,
                 "schedule row %zu", i);
    }
    KT_CHECK(rows.rows[0].block == NULL && rows.rows[1].block == rows.rows[1].key, "one block when viewed");
    r.oom_col = 4;
    KT_CHECK(kaal_read_schedule_row(&rows, &viewed) == KAAL_ENOMEM, "a failed view is ENOMEM");
    KT_CHECK(kaal_read_schedule_row(&rows, &copied) == KAAL_ENOMEM, "a failed copy is ENOMEM");
    kaal_schedule_rows_free(&rows);
}

int main(void)
{
    test_writers();
    test_utf8();
    test_varchar();
    test_claim_order();
    test_row_readers();
    test_row_readers_oom();
    test_schedule_row_reader();
    test_schema();
    test_strings();
    KT_DONE();
}
