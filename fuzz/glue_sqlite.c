/* SQLite glue (glue.h): each row is a real statement, SELECT ?1, ?2, ...,
 * with the cells bound by storage class, read by backend_sqlite.c's
 * read_rows as it reads the store's rows. */
#include "backend_sqlite.c"

#include "fuzz.h"
#include "glue.h"

int fuzz_sqlite_rows(const fuzz_cell *cells, int nrows, int ncols, kaal_row_reader reader, void *out)
{
    static sqlite3 *db;
    static sqlite3_stmt *selects[17];
    static kaal_backend *b;
    kaal_error err;
    int row, col, rc = KAAL_OK;

    FUZZ_CHECK(ncols >= 1 && ncols <= 16, "columns");
    if (!db) {
        FUZZ_CHECK(sqlite3_open(":memory:", &db) == SQLITE_OK, "sqlite3_open");
        b = kaal_backend_new(&kaal_backend_sqlite, "fz", 2);
        FUZZ_CHECK(b != NULL, "kaal_backend_new");
    }
    if (!selects[ncols]) {
        char sql[128] = "SELECT ?1";
        for (col = 2; col <= ncols; col++)
            snprintf(sql + strlen(sql), sizeof sql - strlen(sql), ", ?%d", col);
        FUZZ_CHECK(sqlite3_prepare_v2(db, sql, -1, &selects[ncols], NULL) == SQLITE_OK, "prepare");
    }
    for (row = 0; row < nrows && rc == KAAL_OK; row++) {
        sqlite3_stmt *st = selects[ncols];
        for (col = 0; col < ncols; col++) {
            const fuzz_cell *c = &cells[row * ncols + col];
            int brc;
            switch (c->kind) {
            case FUZZ_TEXT: brc = sqlite3_bind_text(st, col + 1, c->s, (int)c->len, SQLITE_TRANSIENT); break;
            case FUZZ_BLOB: brc = sqlite3_bind_blob(st, col + 1, c->s, (int)c->len, SQLITE_TRANSIENT); break;
            case FUZZ_INTEGER: {
                long long v = 0;
                memcpy(&v, c->s, c->len < sizeof v ? c->len : sizeof v);
                brc = sqlite3_bind_int64(st, col + 1, v);
                break;
            }
            default: brc = sqlite3_bind_null(st, col + 1); break;
            }
            FUZZ_CHECK(brc == SQLITE_OK, "bind");
        }
        rc = read_rows(b, st, reader, out, "fuzz", &err);
        sqlite3_clear_bindings(st);
    }
    return rc;
}
