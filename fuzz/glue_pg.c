/* PostgreSQL glue (glue.h): results are built with libpq's own result
 * constructors (PQmakeEmptyPGresult, PQsetvalue), so backend_postgres.c
 * reads them exactly as it reads a server's. */
#include "backend_postgres.c"

#include "fuzz.h"
#include "glue.h"

int fuzz_pg_rows(const fuzz_cell *cells, int nrows, int ncols, kaal_row_reader reader, void *out)
{
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc attrs[16];
    char names[16][16];
    kaal_error err;
    int row, col, rc;

    FUZZ_CHECK(r != NULL && ncols <= 16, "PQmakeEmptyPGresult");
    memset(attrs, 0, sizeof attrs);
    for (col = 0; col < ncols; col++) {
        snprintf(names[col], sizeof names[col], "c%d", col);
        attrs[col].name = names[col];
        attrs[col].typid = 25; /* text */
        attrs[col].typlen = -1;
        attrs[col].atttypmod = -1;
    }
    FUZZ_CHECK(PQsetResultAttrs(r, ncols, attrs), "PQsetResultAttrs");
    for (row = 0; row < nrows; row++) {
        for (col = 0; col < ncols; col++) {
            const fuzz_cell *c = &cells[row * ncols + col];
            FUZZ_CHECK(PQsetvalue(r, row, col, (char *)c->s, c->kind == FUZZ_NULL ? -1 : (int)c->len),
                       "PQsetvalue");
        }
    }
    rc = read_rows(r, reader, out, &err);
    PQclear(r);
    return rc;
}

char *fuzz_pg_socket_dir(const char *path, int *port) { return socket_dir(path, port); }
