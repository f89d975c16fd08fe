#include "backend.h"

#include <stdlib.h>
#include <string.h>

const kaal_backend_vtable *kaal_backend_find(const char *name)
{
    static const kaal_backend_vtable *const all[] = {
        &kaal_backend_memory,
#ifdef KAAL_HAVE_REDIS
        &kaal_backend_redis,
#endif
#ifdef KAAL_HAVE_SQLITE
        &kaal_backend_sqlite,
#endif
#ifdef KAAL_HAVE_POSTGRES
        &kaal_backend_postgres,
#endif
#ifdef KAAL_HAVE_MYSQL
        &kaal_backend_mysql,
#endif
    };
    size_t i;
    for (i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(all[i]->name, name) == 0) return all[i];
    }
    return NULL;
}

char *kaal_strndup(const char *s, size_t n)
{
    char *d;
    if (!s) return NULL;
    d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *kaal_strdup(const char *s)
{
    return s ? kaal_strndup(s, strlen(s)) : NULL;
}

void kaal_conn_params_free(kaal_conn_params *p)
{
    free(p->host);
    free(p->socket);
    free(p->database);
    free(p->username);
    if (p->password) {
        /* do not leave the secret in freed memory */
        volatile char *v = p->password;
        while (*v) *v++ = '\0';
        free(p->password);
    }
    free(p->path);
    free(p->sslmode);
    memset(p, 0, sizeof *p);
}

static void *rows_grow(void **rows, size_t *len, size_t *cap, size_t size)
{
    char *slot;
    if (*len == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        void *n = realloc(*rows, ncap * size);
        if (!n) return NULL;
        *rows = n;
        *cap = ncap;
    }
    slot = (char *)*rows + (*len)++ * size;
    memset(slot, 0, size);
    return slot;
}

#define ROWS_PUSH(fn, rows_t, row_t) \
    row_t *fn(rows_t *r) { return rows_grow((void **)&r->rows, &r->len, &r->cap, sizeof(row_t)); }

ROWS_PUSH(kaal_dispatch_rows_push, kaal_dispatch_rows, kaal_dispatch_row)
ROWS_PUSH(kaal_delayed_rows_push, kaal_delayed_rows, kaal_delayed_row)
ROWS_PUSH(kaal_node_rows_push, kaal_node_rows, kaal_node_row)
ROWS_PUSH(kaal_state_rows_push, kaal_state_rows, kaal_state_row)

void kaal_dispatch_rows_free(kaal_dispatch_rows *r)
{
    size_t i;
    for (i = 0; i < r->len; i++) {
        free(r->rows[i].key);
        free(r->rows[i].status);
        free(r->rows[i].node);
        free(r->rows[i].error);
    }
    free(r->rows);
    memset(r, 0, sizeof *r);
}

void kaal_delayed_rows_free(kaal_delayed_rows *r)
{
    size_t i;
    for (i = 0; i < r->len; i++) {
        free(r->rows[i].job_id);
        free(r->rows[i].job_class);
        free(r->rows[i].queue);
        free(r->rows[i].args);
    }
    free(r->rows);
    memset(r, 0, sizeof *r);
}

void kaal_node_rows_free(kaal_node_rows *r)
{
    size_t i;
    for (i = 0; i < r->len; i++) {
        free(r->rows[i].node);
        free(r->rows[i].info);
    }
    free(r->rows);
    memset(r, 0, sizeof *r);
}

void kaal_state_rows_free(kaal_state_rows *r)
{
    size_t i;
    for (i = 0; i < r->len; i++) free(r->rows[i].key);
    free(r->rows);
    memset(r, 0, sizeof *r);
}
