/* MariaDB/MySQL glue (glue.h): rows as fetch() hands them to a reader, each
 * cell NUL-terminated text or NULL. */
#include "backend_mysql.c"

#include "fuzz.h"
#include "glue.h"

int fuzz_mysql_rows(const fuzz_cell *cells, int nrows, int ncols, kaal_row_reader reader, void *out)
{
    cell row_cells[16];
    char *copies[16];
    kaal_columns cols;
    int row, col, rc = KAAL_OK;

    FUZZ_CHECK(ncols <= 16, "too many columns");
    cols.text = cells_text;
    cols.view = cells_view;
    cols.is_null = cells_null;
    cols.num = cells_num;
    cols.src = row_cells;
    for (row = 0; row < nrows && rc == KAAL_OK; row++) {
        for (col = 0; col < ncols; col++) {
            const fuzz_cell *c = &cells[row * ncols + col];
            copies[col] = kaal_strndup(c->s, c->len); /* fetch's cells are NUL-terminated */
            FUZZ_CHECK(copies[col] != NULL, "strndup");
            row_cells[col].s = copies[col];
            row_cells[col].null = c->kind == FUZZ_NULL;
            row_cells[col].len = row_cells[col].null ? 0 : (unsigned long)c->len;
        }
        rc = reader(out, &cols);
        for (col = 0; col < ncols; col++) free(copies[col]);
    }
    return rc;
}

unsigned long fuzz_mysql_parse_version(const char *v) { return parse_version(v); }
