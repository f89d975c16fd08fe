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

long kaal_utf8_chars(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    long chars = 0;
    while (p < end) {
        unsigned c = *p;
        size_t len, i;
        uint32_t cp;
        if (c == 0) return -1;
        if (c < 0x80) {
            p++;
            chars++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
        else return -1;
        if ((size_t)(end - p) < len) return -1;
        for (i = 1; i < len; i++) {
            if ((p[i] & 0xC0) != 0x80) return -1;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return -1;
        p += len;
        chars++;
    }
    return chars;
}

int kaal_check_varchar(const char *backend, const char *what, const char *s, size_t n,
                       kaal_error *err)
{
    long chars = kaal_utf8_chars(s, n);
    if (chars < 0)
        return kaal_error_set(err, KAAL_EARG, what, -1,
                              "%s: %s must be valid UTF-8 without NUL bytes", backend, what);
    if (chars > KAAL_VARCHAR_CHARS)
        return kaal_error_set(err, KAAL_EARG, what, -1,
                              "%s: %s is %ld characters long; at most %d fit", backend, what,
                              chars, KAAL_VARCHAR_CHARS);
    return KAAL_OK;
}

int kaal_check_varchar_opt(const char *backend, const char *what, const char *s,
                           kaal_error *err)
{
    return s ? kaal_check_varchar(backend, what, s, strlen(s), err) : KAAL_OK;
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
