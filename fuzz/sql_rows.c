/* Fuzz target "sql_rows": result rows of the SQL backends turned into
 * values (job keys, statuses, nodes, error texts, JSON arguments and info
 * copied; fire times, timestamps and flags read as integers) by the shared
 * row readers, through each backend's own column access: libpq results
 * (PostgreSQL), fetched text cells (MariaDB/MySQL), a real SQLite statement
 * (any storage class). The first byte picks the backend and the row type;
 * then each cell is a kind byte (text, integer, blob, NULL), a length byte
 * and that many bytes, for up to three rows. Every text must come back
 * byte for byte, NULL as NULL, and integers as written. */
#include "fuzz.h"
#include "glue.h"

typedef struct row_type {
    const char *name;
    int ncols;
    kaal_row_reader reader;
    unsigned num_cols; /* bit c: column c is an integer */
} row_type;

static const row_type TYPES[] = {
    {"dispatch", 7, kaal_read_dispatch_row, (1u << 1) | (1u << 5) | (1u << 6)},
    {"delayed", 5, kaal_read_delayed_row, 1u << 1},
    {"state", 2, kaal_read_state_row, 1u << 1},
    {"node", 3, kaal_read_node_row, 1u << 2},
};

typedef int (*rows_fn)(const fuzz_cell *, int, int, kaal_row_reader, void *);
static const rows_fn BACKENDS[] = {fuzz_pg_rows, fuzz_mysql_rows, fuzz_sqlite_rows};
#define MAX_ROWS 3

/* A text column's copy: the cell's bytes, or NULL for SQL NULL. SQLite
 * turns an integer cell into its decimal text. */
static void check_text(const fuzz_cell *c, int sqlite, const char *got)
{
    if (c->kind == FUZZ_NULL) {
        FUZZ_CHECK(got == NULL, "NULL came back as text");
        return;
    }
    FUZZ_CHECK(got != NULL, "text came back as NULL");
    if (sqlite && c->kind == FUZZ_INTEGER) return;
    FUZZ_CHECK(memcmp(got, c->s, c->len) == 0 && got[c->len] == '\0', "text changed in the copy");
}

/* An integer column: SQLite's integer cells, and plain decimal text
 * anywhere, come back as written. */
static void check_num(const fuzz_cell *c, int sqlite, int64_t got)
{
    char buf[24];
    size_t i = 0;
    if (c->kind == FUZZ_NULL) {
        FUZZ_CHECK(got == 0, "NULL read as %lld", (long long)got);
        return;
    }
    if (sqlite && c->kind == FUZZ_INTEGER) {
        long long v = 0;
        memcpy(&v, c->s, c->len < sizeof v ? c->len : sizeof v);
        FUZZ_CHECK(got == v, "integer %lld read as %lld", v, (long long)got);
        return;
    }
    if (c->kind != FUZZ_TEXT || c->len == 0 || c->len > 18) return;
    if (c->s[0] == '-' && c->len > 1) i = 1;
    for (; i < c->len; i++)
        if (c->s[i] < '0' || c->s[i] > '9') return;
    memcpy(buf, c->s, c->len);
    buf[c->len] = '\0';
    if (sqlite && c->len > 1 && (buf[0] == '0' || (buf[0] == '-' && buf[1] == '0')))
        return; /* SQLite keeps "007" as text and reads it as 7 anyway; fine either way */
    FUZZ_CHECK(got == strtoll(buf, NULL, 10), "\"%s\" read as %lld", buf, (long long)got);
}

static void check_rows(int type, int sqlite, const fuzz_cell *cells, int nrows, void *rows)
{
    int r;
    for (r = 0; r < nrows; r++) {
        const fuzz_cell *c = &cells[r * TYPES[type].ncols];
        switch (type) {
        case 0: {
            const kaal_dispatch_row *d = &((kaal_dispatch_rows *)rows)->rows[r];
            check_text(&c[0], sqlite, d->key);
            check_num(&c[1], sqlite, d->fire_time);
            check_text(&c[2], sqlite, d->status);
            check_text(&c[3], sqlite, d->node);
            check_text(&c[4], sqlite, d->error);
            check_num(&c[5], sqlite, d->claimed_at);
            check_num(&c[6], sqlite, d->updated_at);
            break;
        }
        case 1: {
            const kaal_delayed_row *d = &((kaal_delayed_rows *)rows)->rows[r];
            check_text(&c[0], sqlite, d->job_id);
            check_num(&c[1], sqlite, d->run_at_ms);
            check_text(&c[2], sqlite, d->job_class);
            check_text(&c[3], sqlite, d->queue);
            check_text(&c[4], sqlite, d->args);
            break;
        }
        case 2: {
            const kaal_state_row *d = &((kaal_state_rows *)rows)->rows[r];
            check_text(&c[0], sqlite, d->key);
            FUZZ_CHECK(d->enabled == 0 || d->enabled == 1, "enabled is %d", d->enabled);
            break;
        }
        default: {
            const kaal_node_row *d = &((kaal_node_rows *)rows)->rows[r];
            check_text(&c[0], sqlite, d->node);
            check_text(&c[1], sqlite, d->info);
            check_num(&c[2], sqlite, d->last_seen);
            break;
        }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_cell cells[MAX_ROWS * 7];
    int backend, type, ncols, n = 0, nrows, rc;
    size_t p = 1;
    union {
        kaal_dispatch_rows d;
        kaal_delayed_rows j;
        kaal_state_rows s;
        kaal_node_rows nd;
    } rows;

    if (size < 1) return 0;
    backend = data[0] % 3;
    type = (data[0] / 3) % 4;
    ncols = TYPES[type].ncols;
    while (n < MAX_ROWS * ncols && p + 2 <= size) {
        size_t len = data[p + 1];
        cells[n].kind = data[p] % 4;
        p += 2;
        if (len > size - p) len = size - p;
        cells[n].s = (const char *)data + p;
        cells[n].len = len;
        p += len;
        n++;
    }
    nrows = n / ncols;
    if (nrows == 0) return 0;
    memset(&rows, 0, sizeof rows);
    rc = BACKENDS[backend](cells, nrows, ncols, TYPES[type].reader, &rows);
    FUZZ_CHECK(rc == KAAL_OK, "%s rows failed with %d", TYPES[type].name, rc);
    FUZZ_CHECK(rows.d.len == (size_t)nrows, "%zu rows read of %d", rows.d.len, nrows);
    check_rows(type, backend == 2, cells, nrows, &rows);
    switch (type) {
    case 0: kaal_dispatch_rows_free(&rows.d); break;
    case 1: kaal_delayed_rows_free(&rows.j); break;
    case 2: kaal_state_rows_free(&rows.s); break;
    default: kaal_node_rows_free(&rows.nd); break;
    }
    return 0;
}
