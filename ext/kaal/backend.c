#include "backend.h"
#include "schema.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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

/* Frees a string that may hold a secret, zeroing it first. */
static void free_secret(char *s)
{
    volatile char *v = s;
    if (!s) return;
    while (*v) *v++ = '\0';
    free(s);
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
    if (p->conninfo) {
        /* it may hold the password */
        volatile char *v = p->conninfo;
        while (*v) *v++ = '\0';
        free(p->conninfo);
    }
    free(p->ssl_ca);
    free(p->ssl_ca_path);
    free(p->ssl_cert);
    free_secret(p->ssl_key); /* PEM text of a private key, or a path */
    free(p->ssl_hostname);
    free(p->sentinels);
    free(p->sentinel_master);
    free(p->sentinel_username);
    free_secret(p->sentinel_password);
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------------ */
/* Live handles and fork                                               */

/* Every live handle, for the fork handler. list_lock is held across fork()
 * (prepare/parent/child handlers), so the child sees a consistent list. */
static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;

/* Sessions a forked child let go of while half-updated (see
 * kaal_backend_follow_fork): never freed, but kept reachable here, so a
 * leak checker tells them from real leaks. At most one per fork with a call
 * in flight; past the table's size they are only dropped. Guarded by
 * list_lock. */
#define MAX_PARKED 64
static void *volatile parked[MAX_PARKED]; /* volatile: stores the compiler must keep */
static size_t n_parked;
static kaal_backend *live;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static int open_wake_pipe(int fds[2])
{
    int i;
    if (pipe(fds) != 0) return -1;
    for (i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
    return 0;
}

static void prefork(void) { pthread_mutex_lock(&list_lock); }
static void postfork_parent(void) { pthread_mutex_unlock(&list_lock); }

/* Only the forking thread exists in the child: a call another thread was
 * running, or a gate it held, would stay taken forever. Every handle becomes
 * idle, with its own wake pipe (a shared one would let the child drain the
 * parent's wake-ups). The session itself is dropped later, by
 * kaal_backend_ready, without touching the parent's. */
static void postfork_child(void)
{
    kaal_backend *b;
    for (b = live; b; b = b->next) {
        pthread_mutex_init(&b->gate, NULL);
        pthread_cond_init(&b->idle, NULL);
        b->forked_busy = b->busy; /* its session may be half-updated */
        b->busy = 0;
        b->intr = NULL;
        b->io_fd = -1;
        if (b->wake[0] >= 0) close(b->wake[0]);
        if (b->wake[1] >= 0) close(b->wake[1]);
        if (open_wake_pipe(b->wake) != 0) b->wake[0] = b->wake[1] = -1;
    }
    pthread_mutex_init(&list_lock, NULL);
}

static void install_atfork(void) { pthread_atfork(prefork, postfork_parent, postfork_child); }

kaal_backend *kaal_backend_new(const kaal_backend_vtable *vt, const char *ns, size_t n)
{
    kaal_backend *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    pthread_once(&atfork_once, install_atfork);
    b->vt = vt;
    b->pid = getpid();
    b->io_fd = -1;
    b->ns = kaal_strndup(ns, n);
    if (!b->ns || open_wake_pipe(b->wake) != 0) {
        free(b->ns);
        free(b);
        return NULL;
    }
    pthread_mutex_init(&b->gate, NULL);
    pthread_cond_init(&b->idle, NULL);
    pthread_mutex_lock(&list_lock);
    b->next = live;
    if (live) live->prev = b;
    live = b;
    pthread_mutex_unlock(&list_lock);
    return b;
}

size_t kaal_backend_memsize(kaal_backend *b)
{
    size_t n = sizeof *b + (b->ns ? strlen(b->ns) + 1 : 0);
    if (b->vt != &kaal_backend_memory) return n;
    /* Holding the gate, no call can start; a running one leaves the store
     * alone only when it is not busy. */
    pthread_mutex_lock(&b->gate);
    if (!b->busy && b->pid == getpid()) b->impl_size = kaal_memory_store_size(b);
    n += b->impl_size;
    pthread_mutex_unlock(&b->gate);
    return n;
}

void kaal_backend_follow_fork(kaal_backend *b)
{
    if (b->forked_busy) {
        /* the parent's half-updated session: never freed */
        pthread_mutex_lock(&list_lock);
        if (n_parked < MAX_PARKED) parked[n_parked++] = b->impl;
        pthread_mutex_unlock(&list_lock);
        b->impl = NULL;
    } else if (b->vt->discard) {
        b->vt->discard(b);
    }
    b->forked_busy = 0;
    b->connected = 0;
    b->pid = getpid();
}

int kaal_backend_ready(kaal_backend *b, kaal_error *err)
{
    if (b->pid != getpid()) kaal_backend_follow_fork(b);
    if (!b->connected) {
        int rc = b->vt->connect(b, err);
        if (rc != KAAL_OK) {
            b->connected = 0;
            return rc;
        }
        b->connected = 1;
    }
    return KAAL_OK;
}

void kaal_backend_free(kaal_backend *b)
{
    if (!b) return;
    pthread_mutex_lock(&list_lock);
    if (b->prev) b->prev->next = b->next;
    else live = b->next;
    if (b->next) b->next->prev = b->prev;
    pthread_mutex_unlock(&list_lock);
    if (b->pid == getpid()) {
        if (b->vt->close) b->vt->close(b);
    } else {
        kaal_backend_follow_fork(b);
    }
    kaal_conn_params_free(&b->params);
    free(b->ns);
    if (b->wake[0] >= 0) close(b->wake[0]);
    if (b->wake[1] >= 0) close(b->wake[1]);
    pthread_cond_destroy(&b->idle);
    pthread_mutex_destroy(&b->gate);
    free(b);
}

/* ------------------------------------------------------------------ */
/* Calls and interrupts                                                */

int kaal_backend_acquire(kaal_backend *b, volatile int *flag)
{
    char sink[64];
    pthread_mutex_lock(&b->gate);
    while (b->busy && !*flag) pthread_cond_wait(&b->idle, &b->gate);
    if (*flag) {
        pthread_mutex_unlock(&b->gate);
        return KAAL_EINTERRUPTED;
    }
    b->busy = 1;
    b->intr = flag;
    /* Wake-ups meant for an earlier call. */
    while (b->wake[0] >= 0 && read(b->wake[0], sink, sizeof sink) > 0) {
    }
    pthread_mutex_unlock(&b->gate);
    return KAAL_OK;
}

void kaal_backend_release(kaal_backend *b)
{
    pthread_mutex_lock(&b->gate);
    b->busy = 0;
    b->intr = NULL;
    pthread_cond_signal(&b->idle);
    pthread_mutex_unlock(&b->gate);
}

void kaal_backend_interrupt(kaal_backend *b, volatile int *flag)
{
    pthread_mutex_lock(&b->gate);
    *flag = 1;
    if (b->intr == flag) {
        ssize_t w = b->wake[1] >= 0 ? write(b->wake[1], "!", 1) : 0;
        (void)w; /* a full pipe already wakes the call */
        if (b->io_fd >= 0) shutdown(b->io_fd, SHUT_RDWR);
        if (b->on_interrupt) b->on_interrupt(b);
    }
    pthread_cond_broadcast(&b->idle); /* a waiter in acquire */
    pthread_mutex_unlock(&b->gate);
}

int kaal_backend_interrupted(const kaal_backend *b)
{
    volatile int *f = b->intr;
    return f && *f;
}

void kaal_backend_set_io_fd(kaal_backend *b, int fd)
{
    pthread_mutex_lock(&b->gate);
    b->io_fd = fd;
    pthread_mutex_unlock(&b->gate);
}

int64_t kaal_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int kaal_interrupted_error(kaal_backend *b, const char *what, kaal_error *err)
{
    return kaal_error_set(err, KAAL_EINTERRUPTED, NULL, -1, "%s: %s: interrupted", b->vt->name,
                          what);
}

int kaal_wait(kaal_backend *b, int fd, short events, int64_t deadline_ms, short *revents,
              const char *what, kaal_error *err)
{
    for (;;) {
        struct pollfd p[2];
        int64_t left;
        int n;
        if (kaal_backend_interrupted(b)) return kaal_interrupted_error(b, what, err);
        left = deadline_ms - kaal_mono_ms();
        if (left <= 0) {
            return kaal_error_set(err, KAAL_ECONNECT, NULL, -1,
                                  "%s: %s: timed out waiting for the server", b->vt->name, what);
        }
        p[0].fd = fd;
        p[0].events = events;
        p[1].fd = b->wake[0];
        p[1].events = POLLIN;
        p[0].revents = p[1].revents = 0;
        n = poll(p, b->wake[0] >= 0 ? 2 : 1, left > 1000000 ? 1000000 : (int)left);
        if (n < 0 && errno != EINTR) {
            return kaal_error_set(err, KAAL_ECONNECT, NULL, -1, "%s: %s: poll: %s", b->vt->name,
                                  what, strerror(errno));
        }
        if (n > 0 && p[0].revents) {
            if (revents) *revents = p[0].revents;
            return KAAL_OK;
        }
        if (n > 0 && p[1].revents) {
            char sink[64];
            while (read(b->wake[0], sink, sizeof sink) > 0) {
            }
        }
    }
}

int kaal_silence_inherited_socket(int fd)
{
    int devnull, ok;
    if (fd < 0) return 1;
    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    ok = devnull >= 0 && dup2(devnull, fd) >= 0;
    if (devnull >= 0) close(devnull);
    return ok;
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

int kaal_check_outcome(const char *status, kaal_error *err)
{
    if (status && (strcmp(status, "dispatched") == 0 || strcmp(status, "failed") == 0))
        return KAAL_OK;
    return kaal_error_set(err, KAAL_EARG, "status", -1,
                          "status must be \"dispatched\" or \"failed\"");
}

void kaal_buf_put(kaal_buf *o, const char *s, size_t n)
{
    if (o->oom) return;
    if (o->len + n + 1 > o->cap) {
        size_t ncap = o->cap ? o->cap : 256;
        char *np;
        while (ncap < o->len + n + 1) ncap *= 2;
        np = realloc(o->p, ncap);
        if (!np) {
            o->oom = 1;
            return;
        }
        o->p = np;
        o->cap = ncap;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

void kaal_buf_str(kaal_buf *o, const char *s) { kaal_buf_put(o, s, strlen(s)); }

char *kaal_sql_rows(const char *head, const char *row, size_t rows, size_t first, const char *tail)
{
    kaal_buf o = {0};
    size_t i, param = first;
    kaal_buf_str(&o, head);
    for (i = 0; i < rows; i++) {
        const char *r = row, *hash;
        if (i) kaal_buf_put(&o, ",", 1);
        while ((hash = strchr(r, '#')) != NULL) {
            char num[24];
            int len = snprintf(num, sizeof num, "%zu", param++);
            kaal_buf_put(&o, r, (size_t)(hash - r));
            kaal_buf_put(&o, num, (size_t)len);
            r = hash + 1;
        }
        kaal_buf_str(&o, r);
    }
    kaal_buf_str(&o, tail);
    if (o.oom) {
        free(o.p);
        return NULL;
    }
    return o.p;
}

int kaal_claim_slot(size_t n)
{
    int slot = 0;
    while (((size_t)1 << slot) < n) slot++;
    return slot;
}

int kaal_check_claims(const char *backend, const kaal_claim *items, size_t n, const char *node,
                      kaal_error *err)
{
    size_t i;
    int rc = kaal_check_varchar_opt(backend, "node", node, err);
    for (i = 0; rc == KAAL_OK && i < n; i++)
        rc = kaal_check_varchar(backend, "job key", items[i].key, items[i].key_len, err);
    return rc;
}

int kaal_claim_cmp(const kaal_claim *a, const char *k, size_t kl, int64_t f)
{
    size_t m;
    int c;
    if (a->fire_time != f) return a->fire_time < f ? -1 : 1;
    m = a->key_len < kl ? a->key_len : kl;
    c = memcmp(a->key, k, m);
    if (c) return c;
    return a->key_len < kl ? -1 : a->key_len > kl ? 1 : 0;
}

static int claim_ptr_cmp(const void *pa, const void *pb)
{
    const kaal_claim *a = *(const kaal_claim *const *)pa, *b = *(const kaal_claim *const *)pb;
    int c = kaal_claim_cmp(a, b->key, b->key_len, b->fire_time);
    if (c) return c;
    return a < b ? -1 : a > b ? 1 : 0; /* input order among repeats */
}

kaal_claim **kaal_claims_sorted(kaal_claim *items, size_t n)
{
    kaal_claim **order = malloc((n ? n : 1) * sizeof *order);
    size_t i;
    if (!order) return NULL;
    for (i = 0; i < n; i++) order[i] = &items[i];
    qsort(order, n, sizeof *order, claim_ptr_cmp);
    return order;
}

void kaal_claims_won(kaal_claim *const *order, size_t n, const char *k, size_t kl, int64_t f)
{
    size_t lo = 0, hi = n;
    while (lo < hi) { /* first entry >= (f, k) */
        size_t mid = lo + (hi - lo) / 2;
        if (kaal_claim_cmp(order[mid], k, kl, f) < 0) lo = mid + 1;
        else hi = mid;
    }
    /* the first of repeated input pairs is the one that won */
    if (lo < n && kaal_claim_cmp(order[lo], k, kl, f) == 0) order[lo]->claimed = 1;
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
ROWS_PUSH(kaal_schedule_rows_push, kaal_schedule_rows, kaal_schedule_row)

void kaal_schedule_row_clear(kaal_schedule_row *row)
{
    if (row->block) {
        free(row->block);
        memset(row, 0, sizeof *row);
        return;
    }
    free(row->key);
    free(row->cron);
    free(row->job_class);
    free(row->args);
    free(row->kwargs);
    free(row->time_zone);
    free(row->queue);
    memset(row, 0, sizeof *row);
}

void kaal_schedule_rows_free(kaal_schedule_rows *r)
{
    size_t i;
    for (i = 0; i < r->len; i++) kaal_schedule_row_clear(&r->rows[i]);
    free(r->rows);
    memset(r, 0, sizeof *r);
}

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

/* *out = a copy of column col, or NULL for SQL NULL. Returns 1 when the
 * copy failed (the row is then incomplete: the reader reports ENOMEM). */
static int copy_col(const kaal_columns *c, int col, char **out)
{
    if (c->is_null(c->src, col)) {
        *out = NULL;
        return 0;
    }
    *out = c->text(c->src, col);
    return *out == NULL;
}

int kaal_read_dispatch_row(void *out, const kaal_columns *c)
{
    kaal_dispatch_row *d = kaal_dispatch_rows_push(out);
    if (!d) return KAAL_ENOMEM;
    d->fire_time = c->num(c->src, 1);
    d->claimed_at = c->num(c->src, 5);
    d->updated_at = c->num(c->src, 6);
    if (copy_col(c, 0, &d->key) | copy_col(c, 2, &d->status) | copy_col(c, 3, &d->node) |
        copy_col(c, 4, &d->error))
        return KAAL_ENOMEM;
    return KAAL_OK;
}

int kaal_read_delayed_row(void *out, const kaal_columns *c)
{
    kaal_delayed_row *d = kaal_delayed_rows_push(out);
    if (!d) return KAAL_ENOMEM;
    d->run_at_ms = c->num(c->src, 1);
    if (copy_col(c, 0, &d->job_id) | copy_col(c, 2, &d->job_class) | copy_col(c, 3, &d->queue) |
        copy_col(c, 4, &d->args))
        return KAAL_ENOMEM;
    return KAAL_OK;
}

int kaal_read_state_row(void *out, const kaal_columns *c)
{
    kaal_state_row *d = kaal_state_rows_push(out);
    if (!d) return KAAL_ENOMEM;
    d->enabled = c->num(c->src, 1) != 0;
    return copy_col(c, 0, &d->key) ? KAAL_ENOMEM : KAAL_OK;
}

/* The row's seven texts copied into one block (a node reads a million rows
 * at start). */
static int view_schedule_texts(kaal_schedule_row *d, const kaal_columns *c)
{
    char **fields[7];
    const char *v[7];
    size_t len[7], total = 0;
    char *p;
    int i;
    fields[0] = &d->key, fields[1] = &d->cron, fields[2] = &d->job_class, fields[3] = &d->args;
    fields[4] = &d->kwargs, fields[5] = &d->time_zone, fields[6] = &d->queue;
    for (i = 0; i < 7; i++) {
        v[i] = c->view(c->src, i, &len[i]);
        if (!v[i] && !c->is_null(c->src, i)) return KAAL_ENOMEM;
        total += v[i] ? len[i] + 1 : 0;
    }
    d->block = p = malloc(total ? total : 1);
    if (!p) return KAAL_ENOMEM;
    for (i = 0; i < 7; i++) {
        if (!v[i]) continue;
        memcpy(p, v[i], len[i]);
        p[len[i]] = '\0';
        *fields[i] = p;
        p += len[i] + 1;
    }
    return KAAL_OK;
}

int kaal_read_schedule_row(void *out, const kaal_columns *c)
{
    kaal_schedule_row *d = kaal_schedule_rows_push(out);
    if (!d) return KAAL_ENOMEM;
    d->enabled = c->num(c->src, 7) != 0;
    d->deleted = c->num(c->src, 8) != 0;
    d->version = c->num(c->src, 9);
    d->updated_at = c->num(c->src, 10);
    if (c->view) return view_schedule_texts(d, c);
    if (copy_col(c, 0, &d->key) | copy_col(c, 1, &d->cron) | copy_col(c, 2, &d->job_class) |
        copy_col(c, 3, &d->args) | copy_col(c, 4, &d->kwargs) | copy_col(c, 5, &d->time_zone) |
        copy_col(c, 6, &d->queue))
        return KAAL_ENOMEM;
    return KAAL_OK;
}

int kaal_read_node_row(void *out, const kaal_columns *c)
{
    kaal_node_row *d = kaal_node_rows_push(out);
    if (!d) return KAAL_ENOMEM;
    d->last_seen = c->num(c->src, 2);
    if (copy_col(c, 0, &d->node) | copy_col(c, 1, &d->info)) return KAAL_ENOMEM;
    return KAAL_OK;
}

void kaal_delayed_rows_truncate(kaal_delayed_rows *r, size_t keep)
{
    while (r->len > keep) {
        kaal_delayed_row *d = &r->rows[--r->len];
        free(d->job_id);
        free(d->job_class);
        free(d->queue);
        free(d->args);
    }
}

void kaal_delayed_rows_free(kaal_delayed_rows *r)
{
    kaal_delayed_rows_truncate(r, 0);
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

/* ------------------------------------------------------------------ */
/* The SQL schema (schema.h): every table written out once, with the    */
/* spellings that differ between dialects as parameters:                */
/*   NUL    follows the type of a nullable column ("" or " NULL")        */
/*   INDEX  an index declared inside CREATE TABLE (", KEY ..."), or ""   */
/*          where a CREATE INDEX statement follows                       */
/*   ARGS   the type of kaal_delayed_jobs.args                           */
/*   OPTS   follows the closing parenthesis (table options)              */

#define DISPATCHES_INDEX "index_kaal_dispatches_on_namespace_and_fire_time"
#define DISPATCHES_INDEX_COLS "(namespace, fire_time)"
#define DELAYED_INDEX "index_kaal_delayed_jobs_on_namespace_and_run_at_ms"
#define DELAYED_INDEX_COLS "(namespace, run_at_ms)"

#define DDL_DISPATCHES(NUL, INDEX, OPTS)                                                      \
    "CREATE TABLE IF NOT EXISTS kaal_dispatches ("                                             \
    " namespace VARCHAR(255) NOT NULL,"                                                        \
    " job_key VARCHAR(255) NOT NULL,"                                                          \
    " fire_time BIGINT NOT NULL,"                                                              \
    " status VARCHAR(16) NOT NULL,"                                                            \
    " node VARCHAR(255)" NUL ","                                                               \
    " error TEXT" NUL ","                                                                      \
    " claim_token VARCHAR(64)" NUL ","                                                         \
    " claimed_at BIGINT NOT NULL,"                                                             \
    " updated_at BIGINT NOT NULL,"                                                             \
    " PRIMARY KEY (namespace, job_key, fire_time)" INDEX ")" OPTS

#define DDL_DELAYED_JOBS(NUL, ARGS, INDEX, OPTS)                                              \
    "CREATE TABLE IF NOT EXISTS kaal_delayed_jobs ("                                           \
    " namespace VARCHAR(255) NOT NULL,"                                                        \
    " job_id VARCHAR(255) NOT NULL,"                                                           \
    " run_at_ms BIGINT NOT NULL,"                                                              \
    " job_class VARCHAR(255) NOT NULL,"                                                        \
    " queue VARCHAR(255)" NUL ","                                                              \
    " args " ARGS " NOT NULL,"                                                                 \
    " created_at BIGINT NOT NULL,"                                                             \
    " PRIMARY KEY (namespace, job_id)" INDEX ")" OPTS

#define DDL_JOB_STATES(OPTS)                                                                  \
    "CREATE TABLE IF NOT EXISTS kaal_job_states ("                                             \
    " namespace VARCHAR(255) NOT NULL,"                                                        \
    " job_key VARCHAR(255) NOT NULL,"                                                          \
    " enabled BOOLEAN NOT NULL,"                                                               \
    " updated_at BIGINT NOT NULL,"                                                             \
    " PRIMARY KEY (namespace, job_key))" OPTS

#define DDL_NODES(NUL, OPTS)                                                                  \
    "CREATE TABLE IF NOT EXISTS kaal_nodes ("                                                  \
    " namespace VARCHAR(255) NOT NULL,"                                                        \
    " node VARCHAR(255) NOT NULL,"                                                             \
    " info TEXT" NUL ","                                                                       \
    " last_seen BIGINT NOT NULL,"                                                              \
    " PRIMARY KEY (namespace, node))" OPTS

/* Step 2: stored schedules and the schema's own version.
 *   kaal_schema_steps       one row per applied step (step, applied_at)
 *   kaal_schedules          (namespace, job_key) primary key; the schedule
 *                           (cron, job_class, args/kwargs JSON, time_zone,
 *                           queue, enabled), deleted (a tombstone, so the
 *                           change feed reports removals), version (the
 *                           namespace's counter at its last change),
 *                           updated_at; index (namespace, version)
 *   kaal_schedule_versions  (namespace) primary key; version, bumped by
 *                           every change in the namespace (the change feed)
 * The step records itself and step 1 (which it needs, and which predates
 * the step table) in the same statements, so a Rails migration running
 * them leaves the same record as `kaal migrate`. */
#define SCHEDULES_INDEX "index_kaal_schedules_on_namespace_and_version"
#define SCHEDULES_INDEX_COLS "(namespace, version)"

#define DDL_SCHEMA_STEPS(OPTS)                                                                \
    "CREATE TABLE IF NOT EXISTS kaal_schema_steps ("                                           \
    " step INTEGER NOT NULL,"                                                                  \
    " applied_at BIGINT NOT NULL,"                                                             \
    " PRIMARY KEY (step))" OPTS

#define DDL_SCHEDULES(NUL, ARGS, INDEX, OPTS)                                                 \
    "CREATE TABLE IF NOT EXISTS kaal_schedules ("                                              \
    " namespace VARCHAR(255) NOT NULL,"                                                        \
    " job_key VARCHAR(255) NOT NULL,"                                                          \
    " cron VARCHAR(255) NOT NULL,"                                                             \
    " job_class VARCHAR(255) NOT NULL,"                                                        \
    " args " ARGS " NOT NULL,"                                                                 \
    " kwargs " ARGS " NOT NULL,"                                                               \
    " time_zone VARCHAR(255)" NUL ","                                                          \
    " queue VARCHAR(255)" NUL ","                                                              \
    " enabled BOOLEAN NOT NULL,"                                                               \
    " deleted BOOLEAN NOT NULL,"                                                               \
    " version BIGINT NOT NULL,"                                                                \
    " updated_at BIGINT NOT NULL,"                                                             \
    " PRIMARY KEY (namespace, job_key)" INDEX ")" OPTS

#define DDL_SCHEDULE_VERSIONS(OPTS)                                                           \
    "CREATE TABLE IF NOT EXISTS kaal_schedule_versions ("                                      \
    " namespace VARCHAR(255) NOT NULL,"                                                        \
    " version BIGINT NOT NULL,"                                                                \
    " PRIMARY KEY (namespace))" OPTS

/* INSERT_IGNORE / ON_CONFLICT: the dialect's "insert unless present";
 * NOW: the current Unix time in seconds. */
#define RECORD_STEPS(INSERT_IGNORE, NOW, ON_CONFLICT, UPTO)                                   \
    INSERT_IGNORE " INTO kaal_schema_steps (step, applied_at) VALUES " UPTO(NOW) ON_CONFLICT
#define UPTO_2(NOW) "(1, " NOW "), (2, " NOW ")"

/* SQLite and PostgreSQL: the same statements, indexes by CREATE INDEX. */
#define STEP1_WITH_CREATE_INDEX                                                               \
    DDL_DISPATCHES("", "", ""),                                                               \
    "CREATE INDEX IF NOT EXISTS " DISPATCHES_INDEX " ON kaal_dispatches " DISPATCHES_INDEX_COLS, \
    DDL_DELAYED_JOBS("", "TEXT", "", ""),                                                     \
    "CREATE INDEX IF NOT EXISTS " DELAYED_INDEX " ON kaal_delayed_jobs " DELAYED_INDEX_COLS,  \
    DDL_JOB_STATES(""), DDL_NODES("", ""), NULL

#define STEP2_WITH_CREATE_INDEX(NOW)                                                          \
    DDL_SCHEMA_STEPS(""), DDL_SCHEDULES("", "TEXT", "", ""),                                  \
    "CREATE INDEX IF NOT EXISTS " SCHEDULES_INDEX " ON kaal_schedules " SCHEDULES_INDEX_COLS, \
    DDL_SCHEDULE_VERSIONS(""),                                                                \
    RECORD_STEPS("INSERT", NOW, " ON CONFLICT (step) DO NOTHING", UPTO_2), NULL

const char *const kaal_schema_markers[KAAL_SCHEMA_VERSION] = {"kaal_dispatches", "kaal_schedules"};

#ifdef KAAL_HAVE_SQLITE
const char *const kaal_schema_sqlite[] = {STEP1_WITH_CREATE_INDEX};
static const char *const sqlite_step2[] = {
    STEP2_WITH_CREATE_INDEX("CAST(strftime('%s', 'now') AS INTEGER)")};
const char *const *const kaal_schema_steps_sqlite[KAAL_SCHEMA_VERSION] = {kaal_schema_sqlite,
                                                                           sqlite_step2};
#endif
#ifdef KAAL_HAVE_POSTGRES
const char *const kaal_schema_postgres[] = {STEP1_WITH_CREATE_INDEX};
static const char *const postgres_step2[] = {
    STEP2_WITH_CREATE_INDEX("CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)")};
const char *const *const kaal_schema_steps_postgres[KAAL_SCHEMA_VERSION] = {kaal_schema_postgres,
                                                                             postgres_step2};
#endif
#ifdef KAAL_HAVE_MYSQL
/* MySQL 8 has no CREATE INDEX IF NOT EXISTS: the indexes live inside
 * CREATE TABLE. MEDIUMTEXT: TEXT stops at 64 KiB. utf8mb4_bin: job keys
 * compare byte for byte (case matters); note that it is a PAD SPACE
 * collation, so keys that differ only by trailing spaces are the same key
 * there. */
#define MYSQL_TABLE " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
const char *const kaal_schema_mysql[] = {
    DDL_DISPATCHES(" NULL", ", KEY " DISPATCHES_INDEX " " DISPATCHES_INDEX_COLS, MYSQL_TABLE),
    DDL_DELAYED_JOBS(" NULL", "MEDIUMTEXT", ", KEY " DELAYED_INDEX " " DELAYED_INDEX_COLS,
                     MYSQL_TABLE),
    DDL_JOB_STATES(MYSQL_TABLE),
    DDL_NODES(" NULL", MYSQL_TABLE),
    NULL,
};
static const char *const mysql_step2[] = {
    DDL_SCHEMA_STEPS(MYSQL_TABLE),
    DDL_SCHEDULES(" NULL", "MEDIUMTEXT", ", KEY " SCHEDULES_INDEX " " SCHEDULES_INDEX_COLS,
                  MYSQL_TABLE),
    DDL_SCHEDULE_VERSIONS(MYSQL_TABLE),
    RECORD_STEPS("INSERT IGNORE", "UNIX_TIMESTAMP()", "", UPTO_2),
    NULL,
};
const char *const *const kaal_schema_steps_mysql[KAAL_SCHEMA_VERSION] = {kaal_schema_mysql,
                                                                          mysql_step2};
#endif

int kaal_schema_version_of(const int *markers, int64_t recorded)
{
    int v = 0, i;
    for (i = 0; i < KAAL_SCHEMA_VERSION; i++)
        if (markers[i]) v = i + 1;
    return recorded > v ? (int)recorded : v;
}

int kaal_schema_version_read(kaal_backend *b, kaal_scalar_fn scalar, const char *has_table, int *version,
                             kaal_error *err)
{
    int markers[KAAL_SCHEMA_VERSION], i, rc;
    int64_t yes = 0, recorded = 0;
    *version = 0;
    for (i = 0; i < KAAL_SCHEMA_VERSION; i++) {
        if ((rc = scalar(b, has_table, kaal_schema_markers[i], &yes, err)) != KAAL_OK) return rc;
        markers[i] = yes > 0;
    }
    if ((rc = scalar(b, has_table, "kaal_schema_steps", &yes, err)) != KAAL_OK) return rc;
    if (yes && (rc = scalar(b, "SELECT MAX(step) FROM kaal_schema_steps", NULL, &recorded, err)) != KAAL_OK)
        return rc;
    *version = kaal_schema_version_of(markers, recorded);
    return KAAL_OK;
}

/* -- keyset pages of the dispatch log (kaal_dispatches_before_scan) ------- */

static int dispatch_row_after(const kaal_dispatch_row *r, int64_t before_fire, const char *before_key)
{
    return r->fire_time < before_fire ||
           (r->fire_time == before_fire && strcmp(r->key, before_key) < 0);
}

int kaal_dispatches_before_scan(kaal_backend *b, const kaal_dispatch_query *q, int64_t before_fire,
                                const char *before_key, kaal_dispatch_rows *out, kaal_error *err)
{
    kaal_dispatch_query wide = *q;
    if (q->limit == 0) return KAAL_OK;
    wide.limit = q->limit > SIZE_MAX / 4 ? SIZE_MAX / 2 : q->limit * 2 + 16;
    for (;;) {
        kaal_dispatch_rows got = {0};
        size_t first, i;
        int rc = b->vt->dispatches(b, &wide, &got, err);
        if (rc != KAAL_OK) {
            kaal_dispatch_rows_free(&got);
            return rc;
        }
        for (first = 0; first < got.len; first++)
            if (dispatch_row_after(&got.rows[first], before_fire, before_key)) break;
        if (got.len < wide.limit || got.len - first >= q->limit || wide.limit > SIZE_MAX / 4) {
            for (i = first; i < got.len && i - first < q->limit; i++) {
                kaal_dispatch_row *row = kaal_dispatch_rows_push(out);
                if (!row) {
                    kaal_dispatch_rows_free(&got);
                    return kaal_error_set(err, KAAL_ENOMEM, NULL, -1, "out of memory");
                }
                *row = got.rows[i];
                memset(&got.rows[i], 0, sizeof got.rows[i]);
            }
            kaal_dispatch_rows_free(&got);
            return KAAL_OK;
        }
        kaal_dispatch_rows_free(&got);
        wide.limit *= 4;
    }
}

/* -- keyset pages of pending delayed jobs (kaal_delayed_list_after_scan) -- */

static int delayed_row_after(const kaal_delayed_row *r, int64_t after_ms, const char *after_id)
{
    return r->run_at_ms > after_ms || (r->run_at_ms == after_ms && strcmp(r->job_id, after_id) > 0);
}

int kaal_delayed_list_after_scan(kaal_backend *b, int64_t after_ms, const char *after_id, size_t limit,
                                 kaal_delayed_rows *out, kaal_error *err)
{
    size_t wide;
    if (limit == 0) return KAAL_OK;
    wide = limit > SIZE_MAX / 4 ? SIZE_MAX / 2 : limit * 2 + 16;
    for (;;) {
        kaal_delayed_rows got = {0};
        size_t first, i;
        int rc = b->vt->delayed_list(b, wide, &got, err);
        if (rc != KAAL_OK) {
            kaal_delayed_rows_free(&got);
            return rc;
        }
        for (first = 0; first < got.len; first++)
            if (delayed_row_after(&got.rows[first], after_ms, after_id)) break;
        if (got.len < wide || got.len - first >= limit || wide > SIZE_MAX / 4) {
            for (i = first; i < got.len && i - first < limit; i++) {
                kaal_delayed_row *row = kaal_delayed_rows_push(out);
                if (!row) {
                    kaal_delayed_rows_free(&got);
                    return kaal_error_set(err, KAAL_ENOMEM, NULL, -1, "out of memory");
                }
                *row = got.rows[i];
                memset(&got.rows[i], 0, sizeof got.rows[i]);
            }
            kaal_delayed_rows_free(&got);
            return KAAL_OK;
        }
        kaal_delayed_rows_free(&got);
        wide *= 4;
    }
}
