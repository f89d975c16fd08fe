/* The fuzz targets' way into the SQL and Redis backends' static functions:
 * each glue_<backend>.c compiles one backend .c file into itself and
 * exports small wrappers, so several backends can share one target without
 * their static names colliding. */
#ifndef KAAL_FUZZ_GLUE_H
#define KAAL_FUZZ_GLUE_H

#include <stddef.h>

#include "backend.h"

/* One result cell as a server hands it over: text of len bytes (not
 * NUL-terminated), or SQL NULL; for SQLite also its storage class. */
enum { FUZZ_TEXT, FUZZ_INTEGER, FUZZ_BLOB, FUZZ_NULL };
typedef struct fuzz_cell {
    const char *s;
    size_t len;
    int kind;
} fuzz_cell;

/* Rows of ncols cells each (nrows * ncols cells, row-major) through reader
 * into out, the way each backend reads a result set. */
int fuzz_pg_rows(const fuzz_cell *cells, int nrows, int ncols, kaal_row_reader reader, void *out);
int fuzz_mysql_rows(const fuzz_cell *cells, int nrows, int ncols, kaal_row_reader reader, void *out);
int fuzz_sqlite_rows(const fuzz_cell *cells, int nrows, int ncols, kaal_row_reader reader, void *out);

/* Text parsers of the connection parameters. */
int fuzz_redis_parse_db(const char *s, long *db);
int fuzz_redis_nth_sentinel(const char *list, size_t i, char *host, size_t hostn, int *port);
size_t fuzz_redis_sentinel_count(const char *list);
char *fuzz_pg_socket_dir(const char *path, int *port);
unsigned long fuzz_mysql_parse_version(const char *v);

#endif
