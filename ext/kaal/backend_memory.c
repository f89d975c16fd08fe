/* kaal: the memory backend. Everything lives in this process, in one store
 * per handle (b->impl): tests and single-node use.
 *
 * Pure C, no ruby.h; may run without the GVL. The binding runs one call at
 * a time on a handle, and a store belongs to exactly one handle, so the store
 * needs no lock of its own (two handles never share a store).
 *
 * Layout:
 *   dispatch log  chained hash keyed by (job key, fire_time). A claim IS a log
 *                 row with status "claimed": a pair that has a row is never
 *                 won again, whatever the lease (there is no other process to
 *                 hand the pair to). Job keys are interned (reference
 *                 counted): a job firing every minute stores its key once,
 *                 and a row is a fixed-size record from a pooled allocator,
 *                 so a 10k-pair claim costs no malloc per pair. Each key
 *                 lists its rows (queries by key, dispatch_status), and a
 *                 min-heap by fire_time orders every row for cleanup. A
 *                 bounded query keeps its `limit` newest matches in a heap.
 *   states        chained hash job key -> enabled
 *   delayed jobs  chained hash job_id -> job, plus a binary min-heap of the
 *                 same jobs ordered by (run_at_ms, job_id bytes), the order
 *                 of every other store; each job knows its heap slot, so
 *                 cancel is O(log n)
 *   nodes         chained hash node -> (last_seen, info)
 *   node names    interned once (a few distinct values), shared by log rows
 *   schedules     chained hash job key -> stored schedule, plus a list of the
 *                 same entries in version order (a change moves its entry to
 *                 the end), so the change feed walks back from the end only
 *                 as far as the caller's version
 *
 * Lifetime: connect creates the store when there is none and keeps an
 * existing one, so "disconnect, then connect again" finds the data. close
 * and discard free it. */
#include "backend.h"
#include "schema.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* An intrusive chained hash table                                     */

typedef struct hent {
    struct hent *next;
    uint64_t hash;
} hent;

typedef struct htab {
    hent **slots;
    size_t mask; /* slot count - 1 (a power of two) */
    size_t count;
} htab;

typedef int (*hent_eq)(const hent *e, const void *probe);

static uint64_t hash_bytes(const char *s, size_t n, uint64_t seed)
{
    /* FNV-1a, then a final avalanche (the table uses the low bits). */
    uint64_t h = 1469598103934665603ULL ^ seed;
    size_t i;
    for (i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static int ht_init(htab *t, size_t slots)
{
    t->slots = calloc(slots, sizeof *t->slots);
    if (!t->slots) return 0;
    t->mask = slots - 1;
    t->count = 0;
    return 1;
}

static hent *ht_find(const htab *t, uint64_t hash, hent_eq eq, const void *probe)
{
    hent *e;
    for (e = t->slots[hash & t->mask]; e; e = e->next) {
        if (e->hash == hash && eq(e, probe)) return e;
    }
    return NULL;
}

/* Doubles the slot array when the load passes 1. A failed grow only makes
 * chains longer, so insertion itself never fails. */
static void ht_insert(htab *t, hent *e)
{
    hent **slot;
    if (t->count >= t->mask + 1) {
        size_t n = (t->mask + 1) * 2, i;
        hent **ns = calloc(n, sizeof *ns);
        if (ns) {
            for (i = 0; i <= t->mask; i++) {
                hent *x = t->slots[i], *next;
                for (; x; x = next) {
                    next = x->next;
                    x->next = ns[x->hash & (n - 1)];
                    ns[x->hash & (n - 1)] = x;
                }
            }
            free(t->slots);
            t->slots = ns;
            t->mask = n - 1;
        }
    }
    slot = &t->slots[e->hash & t->mask];
    e->next = *slot;
    *slot = e;
    t->count++;
}

static void ht_remove(htab *t, hent *e)
{
    hent **p = &t->slots[e->hash & t->mask];
    while (*p && *p != e) p = &(*p)->next;
    if (*p) {
        *p = e->next;
        t->count--;
    }
}

/* Calls fn on every entry; fn may free the entry it is given. */
static void ht_each(htab *t, void (*fn)(hent *e, void *ctx), void *ctx)
{
    size_t i;
    if (!t->slots) return;
    for (i = 0; i <= t->mask; i++) {
        hent *e = t->slots[i], *next;
        for (; e; e = next) {
            next = e->next;
            fn(e, ctx);
        }
    }
}

/* ------------------------------------------------------------------ */
/* A binary min-heap of pointers                                       */

/* The store keeps three: delayed jobs by (run_at_ms, job_id), log rows by
 * fire_time (cleanup order), and a query's newest matches (root: the oldest
 * kept). An element of a heap with a slot records its index there, so it
 * can be removed from the middle in O(log n). */
#define NO_SLOT ((size_t)-1)

typedef struct pheap {
    void **at;
    size_t len, cap;
    size_t slot_off;                             /* offsetof the element's size_t slot, or NO_SLOT */
    int (*before)(const void *a, const void *b); /* a sorts nearer the root than b */
} pheap;

static void ph_set(pheap *h, size_t i, void *e)
{
    h->at[i] = e;
    if (h->slot_off != NO_SLOT) *(size_t *)((char *)e + h->slot_off) = i;
}

static void ph_up(pheap *h, size_t i)
{
    void *e = h->at[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!h->before(e, h->at[parent])) break;
        ph_set(h, i, h->at[parent]);
        i = parent;
    }
    ph_set(h, i, e);
}

static void ph_down(pheap *h, size_t i)
{
    void *e = h->at[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->len) break;
        if (c + 1 < h->len && h->before(h->at[c + 1], h->at[c])) c++;
        if (!h->before(h->at[c], e)) break;
        ph_set(h, i, h->at[c]);
        i = c;
    }
    ph_set(h, i, e);
}

/* Room for one more element (0 on ENOMEM), so that ph_push cannot fail. The
 * array starts at `first` entries, then doubles, to at most `most`. */
static int ph_reserve(pheap *h, size_t first, size_t most)
{
    if (h->len == h->cap) {
        size_t ncap = h->cap ? h->cap * 2 : first;
        void **n;
        if (ncap > most) ncap = most;
        n = realloc(h->at, ncap * sizeof *n);
        if (!n) return 0;
        h->at = n;
        h->cap = ncap;
    }
    return 1;
}

static void ph_push(pheap *h, void *e)
{
    ph_set(h, h->len++, e);
    ph_up(h, h->len - 1);
}

/* Removes the element at index i. */
static void ph_remove_at(pheap *h, size_t i)
{
    void *last = h->at[--h->len];
    if (i == h->len) return;
    ph_set(h, i, last);
    ph_up(h, i);
    if (h->at[i] == last) ph_down(h, i);
}

/* ------------------------------------------------------------------ */
/* Entries                                                             */

enum { ST_CLAIMED, ST_DISPATCHED, ST_FAILED };
static const char *const STATUS_NAMES[] = {"claimed", "dispatched", "failed"};

struct log_ent;

typedef struct key_ent { /* an interned job key */
    hent h;
    struct log_ent *rows; /* its log rows (a list), so queries by key skip the rest */
    size_t refs;          /* log rows using it */
    size_t len;
    char s[];
} key_ent;

typedef struct key_probe {
    const char *s;
    size_t len;
} key_probe;

typedef struct log_ent {
    hent h;
    int64_t fire_time;
    int64_t claimed_at;
    int64_t updated_at;
    key_ent *key;
    struct log_ent *next_k, *prev_k; /* the key's list */
    size_t fslot;                    /* index in by_fire */
    const char *node; /* interned, may be NULL */
    char *error;      /* may be NULL */
    int status;
} log_ent;

typedef struct log_probe {
    const key_ent *key;
    int64_t fire_time;
} log_probe;

/* Log rows come from chunks of LOG_CHUNK records; freed rows go on a free
 * list (reusing the hash link as the list link). */
#define LOG_CHUNK 1024
typedef struct log_chunk {
    struct log_chunk *next;
    log_ent ents[LOG_CHUNK];
} log_chunk;

typedef struct str_ent { /* interned node names and state keys */
    hent h;
    int enabled; /* states only */
    char s[];
} str_ent;

typedef struct job_ent {
    hent h;
    int64_t run_at_ms;
    size_t slot; /* index in by_run */
    char *job_id;
    char *job_class;
    char *queue;
    char *args;
} job_ent;

typedef struct node_ent {
    hent h;
    int64_t last_seen;
    char *info;
    char node[];
} node_ent;

typedef struct mem_store {
    htab log;
    htab keys;
    log_chunk *chunks;
    pheap by_fire; /* every row by fire_time (cleanup order) */
    size_t chunk_used; /* records handed out from the newest chunk */
    hent *free_ents;
    htab states;
    htab names;
    htab jobs;
    htab nodes;
    pheap by_run; /* every delayed job by (run_at_ms, job_id) */
    struct sched_store *sched; /* stored schedules (created on first use) */
} mem_store;

static mem_store *store_of(kaal_backend *b) { return (mem_store *)b->impl; }

static int log_eq(const hent *e, const void *probe)
{
    const log_ent *l = (const log_ent *)e;
    const log_probe *p = probe;
    return l->fire_time == p->fire_time && l->key == p->key;
}

static int key_eq(const hent *e, const void *probe)
{
    const key_ent *k = (const key_ent *)e;
    const key_probe *p = probe;
    return k->len == p->len && memcmp(k->s, p->s, p->len) == 0;
}

static uint64_t log_hash(const key_ent *key, int64_t fire_time)
{
    uint64_t h = key->h.hash ^ ((uint64_t)fire_time * 0x9e3779b97f4a7c15ULL);
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 29;
    return h;
}

/* The by_fire order. Fire times mostly grow, so a new row rarely moves far;
 * cleanup pops the oldest rows without looking at the others. */
static int fire_before(const void *a, const void *b)
{
    return ((const log_ent *)a)->fire_time < ((const log_ent *)b)->fire_time;
}

static int str_eq(const hent *e, const void *probe)
{
    return strcmp(((const str_ent *)e)->s, probe) == 0;
}

static int job_eq(const hent *e, const void *probe)
{
    return strcmp(((const job_ent *)e)->job_id, probe) == 0;
}

static int node_eq(const hent *e, const void *probe)
{
    return strcmp(((const node_ent *)e)->node, probe) == 0;
}

static uint64_t str_hash(const char *s) { return hash_bytes(s, strlen(s), 0); }

static int oom(kaal_error *err)
{
    return kaal_error_set(err, KAAL_ENOMEM, NULL, -1, "memory backend: out of memory");
}

/* The interned copy of s (NULL for NULL; NULL with *failed set on ENOMEM). */
static const char *intern(mem_store *m, const char *s, int *failed)
{
    uint64_t h;
    str_ent *e;
    size_t n;
    if (!s) return NULL;
    h = str_hash(s);
    e = (str_ent *)ht_find(&m->names, h, str_eq, s);
    if (e) return e->s;
    n = strlen(s);
    e = malloc(sizeof *e + n + 1);
    if (!e) {
        *failed = 1;
        return NULL;
    }
    e->h.hash = h;
    e->enabled = 0;
    memcpy(e->s, s, n + 1);
    ht_insert(&m->names, &e->h);
    return e->s;
}

/* ------------------------------------------------------------------ */
/* Delayed jobs                                                        */

/* Equal run_at_ms: by job_id bytes, as the SQL stores (ORDER BY run_at_ms,
 * job_id in a binary collation) and redis (equal scores sort by member). */
static int job_before(const void *pa, const void *pb)
{
    const job_ent *a = pa, *b = pb;
    if (a->run_at_ms != b->run_at_ms) return a->run_at_ms < b->run_at_ms;
    return strcmp(a->job_id, b->job_id) < 0;
}

static void job_free(job_ent *j)
{
    free(j->job_id);
    free(j->job_class);
    free(j->queue);
    free(j->args);
    free(j);
}

/* ------------------------------------------------------------------ */
/* Session                                                             */

static void free_log_error(hent *e, void *ctx)
{
    (void)ctx;
    free(((log_ent *)e)->error);
}

static void free_plain(hent *e, void *ctx)
{
    (void)ctx;
    free(e);
}

static void free_job(hent *e, void *ctx)
{
    (void)ctx;
    job_free((job_ent *)e);
}

static void free_node(hent *e, void *ctx)
{
    (void)ctx;
    free(((node_ent *)e)->info);
    free(e);
}

/* Bytes held by the store (for ObjectSpace.memsize_of): the tables, the
 * log chunks and every entry with its strings. */
static size_t str_size(const char *s) { return s ? strlen(s) + 1 : 0; }

static void size_log_error(hent *e, void *ctx)
{
    *(size_t *)ctx += str_size(((log_ent *)e)->error);
}

static void size_key(hent *e, void *ctx)
{
    *(size_t *)ctx += sizeof(key_ent) + ((key_ent *)e)->len + 1;
}

static void size_str(hent *e, void *ctx)
{
    *(size_t *)ctx += sizeof(str_ent) + strlen(((str_ent *)e)->s) + 1;
}

static void size_job(hent *e, void *ctx)
{
    const job_ent *j = (const job_ent *)e;
    *(size_t *)ctx += sizeof *j + str_size(j->job_id) + str_size(j->job_class) +
                      str_size(j->queue) + str_size(j->args);
}

static void size_node(hent *e, void *ctx)
{
    const node_ent *n = (const node_ent *)e;
    *(size_t *)ctx += sizeof *n + strlen(n->node) + 1 + str_size(n->info);
}

struct sched_store;
static size_t sched_size(const struct sched_store *st);
static void sched_free(struct sched_store *st);

static size_t table_size(const htab *t) { return t->slots ? (t->mask + 1) * sizeof *t->slots : 0; }

size_t kaal_memory_store_size(kaal_backend *b)
{
    mem_store *m = store_of(b);
    size_t n;
    const log_chunk *c;
    if (!m) return 0;
    n = sizeof *m + table_size(&m->log) + table_size(&m->keys) + table_size(&m->states) +
        table_size(&m->names) + table_size(&m->jobs) + table_size(&m->nodes) +
        (m->by_run.cap + m->by_fire.cap) * sizeof(void *);
    for (c = m->chunks; c; c = c->next)
        n += sizeof *c;
    ht_each(&m->log, size_log_error, &n);
    ht_each(&m->keys, size_key, &n);
    ht_each(&m->states, size_str, &n);
    ht_each(&m->names, size_str, &n);
    ht_each(&m->jobs, size_job, &n);
    ht_each(&m->nodes, size_node, &n);
    return n + sched_size(m->sched);
}

static void store_free(mem_store *m)
{
    if (!m) return;
    sched_free(m->sched);
    ht_each(&m->log, free_log_error, NULL);
    while (m->chunks) {
        log_chunk *c = m->chunks;
        m->chunks = c->next;
        free(c);
    }
    ht_each(&m->keys, free_plain, NULL);
    ht_each(&m->states, free_plain, NULL);
    ht_each(&m->names, free_plain, NULL);
    ht_each(&m->jobs, free_job, NULL);
    ht_each(&m->nodes, free_node, NULL);
    free(m->log.slots);
    free(m->keys.slots);
    free(m->states.slots);
    free(m->names.slots);
    free(m->jobs.slots);
    free(m->nodes.slots);
    free(m->by_run.at);
    free(m->by_fire.at);
    free(m);
}

static int mem_connect(kaal_backend *b, kaal_error *err)
{
    if (!b->impl) {
        mem_store *m = calloc(1, sizeof *m);
        if (!m) return oom(err);
        if (!ht_init(&m->log, 1024) || !ht_init(&m->keys, 256) || !ht_init(&m->states, 64) || !ht_init(&m->names, 16) ||
            !ht_init(&m->jobs, 256) || !ht_init(&m->nodes, 16)) {
            store_free(m);
            return oom(err);
        }
        m->by_run.slot_off = offsetof(job_ent, slot);
        m->by_run.before = job_before;
        m->by_fire.slot_off = offsetof(log_ent, fslot);
        m->by_fire.before = fire_before;
        b->impl = m;
    }
    b->connected = 1;
    return KAAL_OK;
}

static void mem_close(kaal_backend *b)
{
    store_free(store_of(b));
    b->impl = NULL;
    b->connected = 0;
}

/* A forked child gets a copy of the parent's memory; the store is private to
 * this process, so dropping the child's copy is the same as closing it. */
static void mem_discard(kaal_backend *b) { mem_close(b); }

static int mem_migrate(kaal_backend *b, kaal_error *err)
{
    (void)b;
    (void)err;
    return KAAL_OK;
}

/* ------------------------------------------------------------------ */
/* Claims and the dispatch log                                         */

static key_ent *key_find(mem_store *m, const char *s, size_t len, uint64_t hash)
{
    key_probe p;
    p.s = s;
    p.len = len;
    return (key_ent *)ht_find(&m->keys, hash, key_eq, &p);
}

static log_ent *log_lookup(mem_store *m, const key_ent *k, int64_t fire_time)
{
    log_probe p;
    p.key = k;
    p.fire_time = fire_time;
    return (log_ent *)ht_find(&m->log, log_hash(k, fire_time), log_eq, &p);
}

static log_ent *log_find(mem_store *m, const char *key, size_t len, int64_t fire_time)
{
    key_ent *k = key_find(m, key, len, hash_bytes(key, len, 0));
    return k ? log_lookup(m, k, fire_time) : NULL;
}

/* A zeroed record from the pool, or NULL. */
static log_ent *ent_alloc(mem_store *m)
{
    log_ent *e;
    if (m->free_ents) {
        e = (log_ent *)m->free_ents;
        m->free_ents = m->free_ents->next;
    } else {
        if (!m->chunks || m->chunk_used == LOG_CHUNK) {
            log_chunk *c = malloc(sizeof *c);
            if (!c) return NULL;
            c->next = m->chunks;
            m->chunks = c;
            m->chunk_used = 0;
        }
        e = &m->chunks->ents[m->chunk_used++];
    }
    memset(e, 0, sizeof *e);
    return e;
}

/* Creates the row for (key, fire_time), which must not exist. hash is
 * hash_bytes(key, len, 0). */
static log_ent *log_new(mem_store *m, const char *key, size_t len, uint64_t hash, int64_t fire_time)
{
    key_ent *k;
    log_ent *e;
    if (!ph_reserve(&m->by_fire, 1024, SIZE_MAX)) return NULL;
    k = key_find(m, key, len, hash);
    if (!k) {
        k = malloc(sizeof *k + len + 1);
        if (!k) return NULL;
        k->h.hash = hash;
        k->rows = NULL;
        k->refs = 0;
        k->len = len;
        memcpy(k->s, key, len);
        k->s[len] = '\0';
        ht_insert(&m->keys, &k->h);
    }
    e = ent_alloc(m);
    if (!e) {
        if (k->refs == 0) {
            ht_remove(&m->keys, &k->h);
            free(k);
        }
        return NULL;
    }
    k->refs++;
    e->key = k;
    e->next_k = k->rows;
    if (k->rows) k->rows->prev_k = e;
    k->rows = e;
    e->fire_time = fire_time;
    e->h.hash = log_hash(k, fire_time);
    ht_insert(&m->log, &e->h);
    ph_push(&m->by_fire, e);
    return e;
}

/* Removes a row from the log and returns it to the pool. */
static void log_delete(mem_store *m, log_ent *e)
{
    key_ent *k = e->key;
    ht_remove(&m->log, &e->h);
    ph_remove_at(&m->by_fire, e->fslot);
    free(e->error);
    if (e->prev_k) e->prev_k->next_k = e->next_k;
    else k->rows = e->next_k;
    if (e->next_k) e->next_k->prev_k = e->prev_k;
    if (--k->refs == 0) {
        ht_remove(&m->keys, &k->h);
        free(k);
    }
    e->h.next = m->free_ents;
    m->free_ents = &e->h;
}

static int mem_claim(kaal_backend *b, kaal_claim *items, size_t n, int64_t lease_ms,
                     const char *node, int64_t now, kaal_error *err)
{
    mem_store *m = store_of(b);
    const char *nd;
    int failed = 0;
    size_t i;

    if (lease_ms <= 0) return kaal_error_set(err, KAAL_EARG, "lease_ms", -1, "lease must be > 0 ms");
    for (i = 0; i < n; i++) items[i].claimed = 0;
    nd = intern(m, node, &failed);
    if (failed) return oom(err);
    for (i = 0; i < n; i++) {
        uint64_t kh = hash_bytes(items[i].key, items[i].key_len, 0);
        key_ent *k = key_find(m, items[i].key, items[i].key_len, kh);
        log_ent *e;
        if (k && log_lookup(m, k, items[i].fire_time)) continue;
        e = log_new(m, items[i].key, items[i].key_len, kh, items[i].fire_time);
        if (!e) {
            /* Undo this batch: a pair the caller never hears it won would be
             * lost for good. */
            size_t j;
            for (j = 0; j < i; j++) {
                if (items[j].claimed) {
                    log_ent *x = log_find(m, items[j].key, items[j].key_len, items[j].fire_time);
                    if (x) log_delete(m, x);
                    items[j].claimed = 0;
                }
            }
            return oom(err);
        }
        e->status = ST_CLAIMED;
        e->node = nd;
        e->claimed_at = now;
        e->updated_at = now;
        items[i].claimed = 1;
    }
    return KAAL_OK;
}

static int status_code(const char *s)
{
    int i;
    for (i = 0; i < 3; i++) {
        if (strcmp(s, STATUS_NAMES[i]) == 0) return i;
    }
    return -1;
}

static int mem_record(kaal_backend *b, const char *key, int64_t fire_time, const char *status,
                      const char *node, const char *error, int64_t now, kaal_error *err)
{
    mem_store *m = store_of(b);
    size_t len = strlen(key);
    int st, failed = 0;
    const char *nd;
    char *er = NULL;
    log_ent *e;

    if (kaal_check_outcome(status, err) != KAAL_OK) return KAAL_EARG;
    st = status_code(status);
    nd = intern(m, node, &failed);
    if (failed || (error && !(er = kaal_strdup(error)))) return oom(err);
    e = log_find(m, key, len, fire_time);
    if (!e) {
        e = log_new(m, key, len, hash_bytes(key, len, 0), fire_time);
        if (!e) {
            free(er);
            return oom(err);
        }
        e->claimed_at = now;
    }
    e->status = st;
    if (nd) e->node = nd;
    free(e->error);
    e->error = er;
    e->updated_at = now;
    return KAAL_OK;
}

static int mem_record_many(kaal_backend *b, const kaal_outcome *items, size_t n, const char *node,
                           int64_t now, kaal_error *err)
{
    size_t i;
    int rc = KAAL_OK;
    for (i = 0; rc == KAAL_OK && i < n; i++)
        rc = mem_record(b, items[i].key, items[i].fire_time, items[i].status, node, items[i].error, now, err);
    return rc;
}

static int key_cmp(const log_ent *a, const log_ent *b)
{
    const key_ent *x = a->key, *y = b->key;
    size_t n = x->len < y->len ? x->len : y->len;
    int c;
    if (x == y) return 0;
    c = memcmp(x->s, y->s, n);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* Newest first: fire_time descending, then key descending. */
static int newest_cmp(const log_ent *a, const log_ent *b)
{
    if (a->fire_time != b->fire_time) return a->fire_time > b->fire_time ? -1 : 1;
    return -key_cmp(a, b);
}

static int newest_first(const void *pa, const void *pb)
{
    return newest_cmp(*(void *const *)pa, *(void *const *)pb);
}

/* The order of a query's heap: the oldest match kept is the root. */
static int older(const void *a, const void *b) { return newest_cmp(a, b) > 0; }

/* The query keeps the `limit` newest matches in a heap whose root is the
 * oldest of those kept, so a short query over a big log costs O(n log limit)
 * and no full sort. */
typedef struct log_pick {
    const kaal_dispatch_query *q;
    const key_ent *key; /* the interned q->key */
    int status;
    pheap hits; /* ordered by older() */
    int oom;
} log_pick;

static void pick_log(hent *h, void *ctx)
{
    log_pick *p = ctx;
    log_ent *e = (log_ent *)h;
    if (p->oom) return;
    if (p->q->key && e->key != p->key) return;
    if (p->q->status && e->status != p->status) return;
    if (p->q->node && (!e->node || strcmp(e->node, p->q->node) != 0)) return;
    if (p->hits.len == p->q->limit) {
        if (older(p->hits.at[0], e)) { /* e replaces the oldest kept */
            p->hits.at[0] = e;
            ph_down(&p->hits, 0);
        }
        return;
    }
    if (!ph_reserve(&p->hits, 64, p->q->limit)) {
        p->oom = 1;
        return;
    }
    ph_push(&p->hits, e);
}


static int mem_dispatches(kaal_backend *b, const kaal_dispatch_query *q, kaal_dispatch_rows *out,
                          kaal_error *err)
{
    mem_store *m = store_of(b);
    log_pick p;
    size_t i;
    int rc = KAAL_OK;

    memset(&p, 0, sizeof p);
    p.q = q;
    p.hits.slot_off = NO_SLOT;
    p.hits.before = older;
    p.status = q->status ? status_code(q->status) : -1;
    if (q->limit == 0 || (q->status && p.status < 0)) return KAAL_OK;
    if (q->key) {
        size_t len = strlen(q->key);
        p.key = key_find(m, q->key, len, hash_bytes(q->key, len, 0));
        if (!p.key) return KAAL_OK;
    }
    if (p.key) {
        log_ent *e;
        for (e = p.key->rows; e && !p.oom; e = e->next_k) pick_log(&e->h, &p);
    } else {
        ht_each(&m->log, pick_log, &p);
    }
    if (p.oom) {
        free(p.hits.at);
        return oom(err);
    }
    if (p.hits.len > 1) qsort(p.hits.at, p.hits.len, sizeof *p.hits.at, newest_first);
    for (i = 0; i < p.hits.len && i < q->limit; i++) {
        const log_ent *e = p.hits.at[i];
        kaal_dispatch_row *row = kaal_dispatch_rows_push(out);
        if (!row || !(row->key = kaal_strndup(e->key->s, e->key->len)) ||
            !(row->status = kaal_strdup(STATUS_NAMES[e->status])) ||
            (e->node && !(row->node = kaal_strdup(e->node))) ||
            (e->error && !(row->error = kaal_strdup(e->error)))) {
            rc = oom(err);
            break;
        }
        row->fire_time = e->fire_time;
        row->claimed_at = e->claimed_at;
        row->updated_at = e->updated_at;
    }
    free(p.hits.at);
    return rc;
}

static int mem_latest_fires(kaal_backend *b, kaal_latest *items, size_t n, kaal_error *err)
{
    mem_store *m = store_of(b);
    size_t i;
    (void)err;
    for (i = 0; i < n; i++) {
        const key_ent *k = key_find(m, items[i].key, items[i].key_len,
                                    hash_bytes(items[i].key, items[i].key_len, 0));
        const log_ent *e;
        items[i].found = 0;
        for (e = k ? k->rows : NULL; e; e = e->next_k) {
            if (!items[i].found || e->fire_time > items[i].fire_time) items[i].fire_time = e->fire_time;
            items[i].found = 1;
        }
    }
    return KAAL_OK;
}

/* Deletes the oldest rows first, like the server backends. */
static int mem_cleanup(kaal_backend *b, int64_t before, size_t limit, size_t *deleted,
                       kaal_error *err)
{
    mem_store *m = store_of(b);
    size_t n = 0;
    (void)err;
    while (n < limit && m->by_fire.len > 0 &&
           ((log_ent *)m->by_fire.at[0])->fire_time < before) {
        log_delete(m, m->by_fire.at[0]);
        n++;
    }
    *deleted = n;
    return KAAL_OK;
}

/* ------------------------------------------------------------------ */
/* Enable / disable overrides                                          */

static int mem_set_enabled(kaal_backend *b, const char *key, int enabled, kaal_error *err)
{
    mem_store *m = store_of(b);
    uint64_t h = str_hash(key);
    str_ent *e = (str_ent *)ht_find(&m->states, h, str_eq, key);
    if (!e) {
        size_t n = strlen(key);
        e = malloc(sizeof *e + n + 1);
        if (!e) return oom(err);
        e->h.hash = h;
        memcpy(e->s, key, n + 1);
        ht_insert(&m->states, &e->h);
    }
    e->enabled = enabled ? 1 : 0;
    return KAAL_OK;
}

typedef struct state_collect {
    kaal_state_rows *out;
    int oom;
} state_collect;

static void collect_state(hent *h, void *ctx)
{
    state_collect *c = ctx;
    str_ent *e = (str_ent *)h;
    kaal_state_row *row;
    if (c->oom) return;
    row = kaal_state_rows_push(c->out);
    if (!row || !(row->key = kaal_strdup(e->s))) {
        c->oom = 1;
        return;
    }
    row->enabled = e->enabled;
}

static int state_by_key(const void *a, const void *b)
{
    return strcmp(((const kaal_state_row *)a)->key, ((const kaal_state_row *)b)->key);
}

static int mem_states(kaal_backend *b, kaal_state_rows *out, kaal_error *err)
{
    state_collect c;
    c.out = out;
    c.oom = 0;
    ht_each(&store_of(b)->states, collect_state, &c);
    if (c.oom) return oom(err);
    if (out->len > 1) qsort(out->rows, out->len, sizeof *out->rows, state_by_key);
    return KAAL_OK;
}

/* ------------------------------------------------------------------ */
/* Delayed jobs                                                        */

static int mem_delayed_add(kaal_backend *b, const kaal_delayed_row *job, kaal_error *err)
{
    mem_store *m = store_of(b);
    uint64_t h;
    job_ent *j;

    if (!job->job_id || !job->job_class || !job->args) {
        return kaal_error_set(err, KAAL_EARG, NULL, -1, "job_id, job_class and args are required");
    }
    h = str_hash(job->job_id);
    if (ht_find(&m->jobs, h, job_eq, job->job_id)) {
        return kaal_error_set(err, KAAL_EDUPLICATE, "job_id", -1, "job_id %.200s is already pending",
                              job->job_id);
    }
    if (!ph_reserve(&m->by_run, 64, SIZE_MAX)) return oom(err);
    j = calloc(1, sizeof *j);
    if (!j || !(j->job_id = kaal_strdup(job->job_id)) ||
        !(j->job_class = kaal_strdup(job->job_class)) || !(j->args = kaal_strdup(job->args)) ||
        (job->queue && !(j->queue = kaal_strdup(job->queue)))) {
        if (j) job_free(j);
        return oom(err);
    }
    j->h.hash = h;
    j->run_at_ms = job->run_at_ms;
    ht_insert(&m->jobs, &j->h);
    ph_push(&m->by_run, j);
    return KAAL_OK;
}

static int reserve_delayed(kaal_delayed_rows *out, size_t more)
{
    if (out->cap - out->len < more) {
        size_t ncap = out->len + more;
        kaal_delayed_row *n = realloc(out->rows, ncap * sizeof *n);
        if (!n) return 0;
        out->rows = n;
        out->cap = ncap;
    }
    return 1;
}

static int mem_delayed_claim(kaal_backend *b, int64_t now_ms, size_t limit, kaal_delayed_rows *out,
                             kaal_error *err)
{
    mem_store *m = store_of(b);
    size_t want = limit < m->by_run.len ? limit : m->by_run.len;

    /* Reserve first: once a job leaves the heap it must reach the caller. */
    if (want == 0) return KAAL_OK;
    if (!reserve_delayed(out, want)) return oom(err);
    while (limit > 0 && m->by_run.len > 0 &&
           ((job_ent *)m->by_run.at[0])->run_at_ms <= now_ms) {
        job_ent *j = m->by_run.at[0];
        kaal_delayed_row *row = kaal_delayed_rows_push(out); /* never reallocates here */
        ph_remove_at(&m->by_run, 0);
        ht_remove(&m->jobs, &j->h);
        row->job_id = j->job_id;
        row->run_at_ms = j->run_at_ms;
        row->job_class = j->job_class;
        row->queue = j->queue;
        row->args = j->args;
        free(j); /* the strings now belong to the row */
        limit--;
    }
    return KAAL_OK;
}

static int mem_delayed_cancel(kaal_backend *b, const char *job_id, int *found, kaal_error *err)
{
    mem_store *m = store_of(b);
    job_ent *j = (job_ent *)ht_find(&m->jobs, str_hash(job_id), job_eq, job_id);
    (void)err;
    *found = j != NULL;
    if (j) {
        ph_remove_at(&m->by_run, j->slot);
        ht_remove(&m->jobs, &j->h);
        job_free(j);
    }
    return KAAL_OK;
}

static int mem_delayed_count(kaal_backend *b, size_t *count, kaal_error *err)
{
    (void)err;
    *count = store_of(b)->by_run.len;
    return KAAL_OK;
}

static int soonest_first(const void *pa, const void *pb)
{
    const job_ent *a = *(job_ent *const *)pa, *b = *(job_ent *const *)pb;
    return job_before(a, b) ? -1 : job_before(b, a) ? 1 : 0;
}

static int mem_delayed_list(kaal_backend *b, size_t limit, kaal_delayed_rows *out, kaal_error *err)
{
    mem_store *m = store_of(b);
    job_ent **all;
    size_t i;
    int rc = KAAL_OK;

    if (limit == 0 || m->by_run.len == 0) return KAAL_OK;
    all = malloc(m->by_run.len * sizeof *all);
    if (!all) return oom(err);
    for (i = 0; i < m->by_run.len; i++) all[i] = m->by_run.at[i];
    qsort(all, m->by_run.len, sizeof *all, soonest_first);
    for (i = 0; i < m->by_run.len && i < limit; i++) {
        const job_ent *j = all[i];
        kaal_delayed_row *row = kaal_delayed_rows_push(out);
        if (!row || !(row->job_id = kaal_strdup(j->job_id)) ||
            !(row->job_class = kaal_strdup(j->job_class)) || !(row->args = kaal_strdup(j->args)) ||
            (j->queue && !(row->queue = kaal_strdup(j->queue)))) {
            rc = oom(err);
            break;
        }
        row->run_at_ms = j->run_at_ms;
    }
    free(all);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Heartbeats                                                          */

typedef struct node_prune {
    htab *t;
    int64_t cutoff;
} node_prune;

static void prune_node(hent *h, void *ctx)
{
    node_prune *p = ctx;
    if (((node_ent *)h)->last_seen < p->cutoff) {
        ht_remove(p->t, h);
        free_node(h, NULL);
    }
}

static int mem_heartbeat(kaal_backend *b, const char *node, const char *info, int64_t now,
                         int64_t ttl, kaal_error *err)
{
    mem_store *m = store_of(b);
    uint64_t h = str_hash(node);
    node_ent *e;
    char *inf = NULL;

    if (info && !(inf = kaal_strdup(info))) return oom(err);
    if (ttl > 0) {
        node_prune p;
        p.t = &m->nodes;
        p.cutoff = now - ttl;
        ht_each(&m->nodes, prune_node, &p);
    }
    e = (node_ent *)ht_find(&m->nodes, h, node_eq, node);
    if (!e) {
        size_t n = strlen(node);
        e = malloc(sizeof *e + n + 1);
        if (!e) {
            free(inf);
            return oom(err);
        }
        e->h.hash = h;
        e->info = NULL;
        memcpy(e->node, node, n + 1);
        ht_insert(&m->nodes, &e->h);
    }
    free(e->info);
    e->info = inf;
    e->last_seen = now;
    return KAAL_OK;
}

typedef struct node_collect {
    kaal_node_rows *out;
    int64_t since;
    int oom;
} node_collect;

static void collect_node(hent *h, void *ctx)
{
    node_collect *c = ctx;
    node_ent *e = (node_ent *)h;
    kaal_node_row *row;
    if (c->oom || e->last_seen < c->since) return;
    row = kaal_node_rows_push(c->out);
    if (!row || !(row->node = kaal_strdup(e->node)) || (e->info && !(row->info = kaal_strdup(e->info)))) {
        c->oom = 1;
        return;
    }
    row->last_seen = e->last_seen;
}

static int node_by_name(const void *a, const void *b)
{
    return strcmp(((const kaal_node_row *)a)->node, ((const kaal_node_row *)b)->node);
}

static int mem_nodes(kaal_backend *b, int64_t since, kaal_node_rows *out, kaal_error *err)
{
    node_collect c;
    c.out = out;
    c.since = since;
    c.oom = 0;
    ht_each(&store_of(b)->nodes, collect_node, &c);
    if (c.oom) return oom(err);
    if (out->len > 1) qsort(out->rows, out->len, sizeof *out->rows, node_by_name);
    return KAAL_OK;
}

/* Keyset pages: the newest-first query, widened until past the cursor. */
static int mem_dispatches_before(kaal_backend *b, const kaal_dispatch_query *q, int64_t before_fire,
                                 const char *before_key, kaal_dispatch_rows *out, kaal_error *err)
{
    return kaal_dispatches_before_scan(b, q, before_fire, before_key, out, err);
}

static int mem_delayed_list_after(kaal_backend *b, int64_t after_ms, const char *after_id, size_t limit,
                                  kaal_delayed_rows *out, kaal_error *err)
{
    return kaal_delayed_list_after_scan(b, after_ms, after_id, limit, out, err);
}

/* ------------------------------------------------------------------ */
/* Stored schedules                                                    */

typedef struct sched_ent {
    hent h;
    struct sched_ent *older, *newer; /* the version-ordered list */
    kaal_schedule_row row;           /* row.key is the hash key */
} sched_ent;

typedef struct sched_store {
    htab by_key;
    sched_ent *oldest, *newest;
    int64_t version;
    size_t live; /* entries not deleted */
} sched_store;

static int sched_eq(const hent *e, const void *probe)
{
    return strcmp(((const sched_ent *)e)->row.key, probe) == 0;
}

static void sched_free_ent(hent *e, void *ctx)
{
    (void)ctx;
    kaal_schedule_row_clear(&((sched_ent *)e)->row);
    free(e);
}

static void sched_free(sched_store *st)
{
    if (!st) return;
    ht_each(&st->by_key, sched_free_ent, NULL);
    free(st->by_key.slots);
    free(st);
}

static void sched_size_ent(hent *e, void *ctx)
{
    const kaal_schedule_row *r = &((sched_ent *)e)->row;
    *(size_t *)ctx += sizeof(sched_ent) + str_size(r->key) + str_size(r->cron) + str_size(r->job_class) +
                      str_size(r->args) + str_size(r->kwargs) + str_size(r->time_zone) + str_size(r->queue);
}

static size_t sched_size(const sched_store *st)
{
    size_t n;
    if (!st) return 0;
    n = sizeof *st + table_size(&st->by_key);
    ht_each((htab *)&st->by_key, sched_size_ent, &n);
    return n;
}

static sched_store *sched_of(kaal_backend *b, kaal_error *err)
{
    mem_store *m = store_of(b);
    if (!m->sched) {
        sched_store *st = calloc(1, sizeof *st);
        if (!st || !ht_init(&st->by_key, 64)) {
            free(st);
            oom(err);
            return NULL;
        }
        m->sched = st;
    }
    return m->sched;
}

static void sched_unlink(sched_store *st, sched_ent *e)
{
    if (e->older) e->older->newer = e->newer;
    else st->oldest = e->newer;
    if (e->newer) e->newer->older = e->older;
    else st->newest = e->older;
    e->older = e->newer = NULL;
}

/* A new version for e: it moves to the end of the list. */
static void sched_touch(sched_store *st, sched_ent *e, int64_t now)
{
    if (e->older || e->newer || st->oldest == e) sched_unlink(st, e);
    e->row.version = ++st->version;
    e->row.updated_at = now;
    e->older = st->newest;
    if (st->newest) st->newest->newer = e;
    else st->oldest = e;
    st->newest = e;
}

static int sched_copy(kaal_schedule_row *d, const kaal_schedule_row *s)
{
    d->key = kaal_strdup(s->key);
    d->cron = kaal_strdup(s->cron);
    d->job_class = kaal_strdup(s->job_class);
    d->args = kaal_strdup(s->args ? s->args : "[]");
    d->kwargs = kaal_strdup(s->kwargs ? s->kwargs : "{}");
    d->time_zone = kaal_strdup(s->time_zone);
    d->queue = kaal_strdup(s->queue);
    d->enabled = s->enabled;
    d->deleted = s->deleted;
    d->version = s->version;
    d->updated_at = s->updated_at;
    return d->key && d->cron && d->job_class && d->args && d->kwargs && (d->time_zone || !s->time_zone) &&
           (d->queue || !s->queue);
}

static int mem_sched_upsert(kaal_backend *b, const kaal_schedule_row *row, int64_t now, int64_t *version,
                            kaal_error *err)
{
    sched_store *st = sched_of(b, err);
    uint64_t h;
    sched_ent *e;
    kaal_schedule_row fresh;
    if (!st) return KAAL_ENOMEM;
    memset(&fresh, 0, sizeof fresh);
    if (!sched_copy(&fresh, row)) {
        kaal_schedule_row_clear(&fresh);
        return oom(err);
    }
    fresh.deleted = 0;
    h = str_hash(row->key);
    e = (sched_ent *)ht_find(&st->by_key, h, sched_eq, row->key);
    if (!e) {
        e = calloc(1, sizeof *e);
        if (!e) {
            kaal_schedule_row_clear(&fresh);
            return oom(err);
        }
        e->h.hash = h;
        e->row = fresh;
        ht_insert(&st->by_key, &e->h);
        st->live++;
    } else {
        if (e->row.deleted) st->live++;
        kaal_schedule_row_clear(&e->row);
        e->row = fresh;
    }
    sched_touch(st, e, now);
    *version = st->version;
    return KAAL_OK;
}

static int mem_sched_remove(kaal_backend *b, const char *key, int64_t now, int *found, int64_t *version,
                            kaal_error *err)
{
    sched_store *st = sched_of(b, err);
    sched_ent *e;
    *found = 0;
    if (!st) return KAAL_ENOMEM;
    e = (sched_ent *)ht_find(&st->by_key, str_hash(key), sched_eq, key);
    if (e && !e->row.deleted) {
        e->row.deleted = 1;
        st->live--;
        sched_touch(st, e, now);
        *found = 1;
    }
    *version = st->version;
    return KAAL_OK;
}

static int sched_push(kaal_schedule_rows *out, const kaal_schedule_row *row, kaal_error *err)
{
    kaal_schedule_row *d = kaal_schedule_rows_push(out);
    if (!d) return oom(err);
    if (!sched_copy(d, row)) return oom(err);
    return KAAL_OK;
}

static int mem_sched_get(kaal_backend *b, const char *key, kaal_schedule_rows *out, kaal_error *err)
{
    sched_store *st = sched_of(b, err);
    sched_ent *e;
    if (!st) return KAAL_ENOMEM;
    e = (sched_ent *)ht_find(&st->by_key, str_hash(key), sched_eq, key);
    return e && !e->row.deleted ? sched_push(out, &e->row, err) : KAAL_OK;
}

typedef struct sched_pick {
    const char *after;
    sched_ent **ents;
    size_t len, cap;
    int oom;
} sched_pick;

static void sched_pick_ent(hent *h, void *ctx)
{
    sched_pick *p = ctx;
    sched_ent *e = (sched_ent *)h;
    if (p->oom || e->row.deleted || (p->after && strcmp(e->row.key, p->after) <= 0)) return;
    if (p->len == p->cap) {
        size_t ncap = p->cap ? p->cap * 2 : 64;
        sched_ent **n = realloc(p->ents, ncap * sizeof *n);
        if (!n) {
            p->oom = 1;
            return;
        }
        p->ents = n;
        p->cap = ncap;
    }
    p->ents[p->len++] = e;
}

static int sched_by_key(const void *a, const void *b)
{
    return strcmp((*(sched_ent *const *)a)->row.key, (*(sched_ent *const *)b)->row.key);
}

static int mem_sched_list(kaal_backend *b, const char *after, size_t limit, kaal_schedule_rows *out,
                          kaal_error *err)
{
    sched_store *st = sched_of(b, err);
    sched_pick p;
    size_t i;
    int rc = KAAL_OK;
    if (!st) return KAAL_ENOMEM;
    memset(&p, 0, sizeof p);
    p.after = after;
    ht_each(&st->by_key, sched_pick_ent, &p);
    if (p.oom) {
        free(p.ents);
        return oom(err);
    }
    if (p.len > 1) qsort(p.ents, p.len, sizeof *p.ents, sched_by_key);
    for (i = 0; i < p.len && i < limit && rc == KAAL_OK; i++) rc = sched_push(out, &p.ents[i]->row, err);
    free(p.ents);
    return rc;
}

static int mem_sched_changes(kaal_backend *b, int64_t since, size_t limit, kaal_schedule_rows *out,
                             int64_t *version, kaal_error *err)
{
    sched_store *st = sched_of(b, err);
    sched_ent *e;
    size_t n = 0;
    int rc = KAAL_OK;
    if (!st) return KAAL_ENOMEM;
    *version = st->version;
    if (st->version <= since) return KAAL_OK;
    /* Back from the newest to the first entry changed after since. */
    for (e = st->newest; e && e->older && e->older->row.version > since; e = e->older) {
    }
    for (; e && n < limit && rc == KAAL_OK; e = e->newer, n++) rc = sched_push(out, &e->row, err);
    return rc;
}

static int mem_sched_count(kaal_backend *b, size_t *count, kaal_error *err)
{
    sched_store *st = sched_of(b, err);
    *count = st ? st->live : 0;
    return st ? KAAL_OK : KAAL_ENOMEM;
}

static const kaal_schedule_ops mem_schedule_ops = {
    mem_sched_upsert, mem_sched_remove, mem_sched_get, mem_sched_list, mem_sched_changes, mem_sched_count,
};

static int mem_schema_version(kaal_backend *b, int *version, kaal_error *err)
{
    (void)b;
    (void)err;
    *version = KAAL_SCHEMA_VERSION;
    return KAAL_OK;
}

const kaal_backend_vtable kaal_backend_memory = KAAL_BACKEND_VTABLE("memory", mem);
