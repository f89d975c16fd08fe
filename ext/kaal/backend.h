/* kaal: the backend interface. Pure C (no ruby.h). Every function here may
 * run WITHOUT the Ruby GVL: no Ruby API, plain malloc/free only.
 *
 * The binding (rb_backend.c) owns a kaal_backend, serialises calls on it
 * (kaal_backend_acquire), connects lazily (vt->connect when !b->connected), remembers the pid
 * (a forked child calls vt->discard, then reconnects), and turns a non-OK
 * status into a Ruby exception. A backend that loses its connection returns
 * KAAL_ECONNECT and sets b->connected = 0 so the next call reconnects.
 *
 * Times: instants are Unix seconds (int64) unless the name ends in _ms. */
#ifndef KAAL_BACKEND_H
#define KAAL_BACKEND_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "status.h"

/* Connection parameters, normalised in Ruby (Kaal::Backend.connection_params).
 * Any field may be NULL / 0 when not given. Strings are owned by the struct. */
typedef struct kaal_conn_params {
    char *host;
    int port;
    char *socket;     /* unix socket path (redis unix://, mysql/pg socket dir) */
    char *database;   /* pg/mysql database name; redis db number as text */
    char *username;
    char *password;
    char *path;       /* sqlite file path */
    char *sslmode;    /* pg sslmode / "required" for rediss:// and mysql ssl */
    int connect_timeout_ms;
    int command_timeout_ms;
    int log_ttl_s;    /* redis: life of a dispatch-log entry (0: 7 days) */
    /* postgres: the user's libpq URI or keyword string, handed to libpq
     * intact (multi-host, sslrootcert, target_session_attrs, ...); when set,
     * host/port/database/username/password above are for display only. */
    char *conninfo;
    char *ssl_ca;     /* mysql, redis: CA certificate file for TLS (ssl-ca, ca_file) */
    /* redis: more TLS settings (sslmode: verify-full, verify-ca or no-verify;
     * cert and key: a PEM file path or PEM text), and Sentinel: the sentinels
     * ("host:port,host:port") and the name of the master they watch. */
    char *ssl_ca_path;
    char *ssl_cert;
    char *ssl_key;
    char *ssl_hostname;
    char *sentinels;
    char *sentinel_master;
    char *sentinel_username;
    char *sentinel_password;
    /* redis: after each write, WAIT for this many replicas (0: do not wait),
     * at most wait_timeout_ms (0: the default) */
    int wait_replicas;
    int wait_timeout_ms;
} kaal_conn_params;

/* One (job key, fire time) pair of a claim batch. `claimed` is the output:
 * 1 when this call won the pair, 0 when another claim or the dispatch log
 * already has it. */
typedef struct kaal_claim {
    const char *key;
    size_t key_len;
    int64_t fire_time;
    int claimed;
} kaal_claim;

/* What claim_push writes for a won pair, next to its claim (a job queue in
 * the same store: Sidekiq's list and "queues" set). op 'l': push payload onto
 * the list `target` and, when set is not NULL, add `extra` to the set `set`;
 * op 'z': add payload to the sorted set `target` with score `extra` (text);
 * op '-': nothing. Strings are not NUL-terminated: lengths count. */
typedef struct kaal_push {
    char op;
    const char *target;
    size_t target_len;
    const char *payload;
    size_t payload_len;
    const char *set;
    size_t set_len;
    const char *extra;
    size_t extra_len;
} kaal_push;

/* A dispatch-log row. status: "claimed", "dispatched" or "failed". */
typedef struct kaal_dispatch_row {
    char *key;
    int64_t fire_time;
    char *status;
    char *node;       /* may be NULL */
    char *error;      /* may be NULL */
    int64_t claimed_at;
    int64_t updated_at;
} kaal_dispatch_row;

typedef struct kaal_dispatch_query {
    const char *key;    /* NULL = any */
    const char *status; /* NULL = any */
    const char *node;   /* NULL = any */
    size_t limit;       /* > 0 */
} kaal_dispatch_query;

/* A delayed job. run_at_ms: Unix milliseconds. queue may be NULL.
 * args: JSON text of the positional argument array. */
typedef struct kaal_delayed_row {
    char *job_id;
    int64_t run_at_ms;
    char *job_class;
    char *queue;
    char *args;
} kaal_delayed_row;

typedef struct kaal_node_row {
    char *node;
    char *info;       /* JSON text, may be NULL */
    int64_t last_seen;
} kaal_node_row;

/* One job key of a latest_fires batch. Output: found is 1 and fire_time the
 * latest fire time the dispatch log has for the key (any status, any node),
 * or found is 0 when the log has none. */
typedef struct kaal_latest {
    const char *key;
    size_t key_len;
    int64_t fire_time;
    int found;
} kaal_latest;

/* One outcome of a record_many batch: as record's arguments (error may be
 * NULL). Strings are NUL-terminated. */
typedef struct kaal_outcome {
    const char *key;
    int64_t fire_time;
    const char *status;
    const char *error;
} kaal_outcome;

/* The most outcomes the binding hands to one record_many call. A batch never
 * holds one (key, fire_time) twice (the binding keeps the last). */
#define KAAL_RECORD_BATCH 500

/* The most keys the binding hands to one latest_fires call (a longer list is
 * several calls): bounds a statement's parameters and a script's arguments. */
#define KAAL_LATEST_BATCH 1000

typedef struct kaal_state_row {
    char *key;
    int enabled;
} kaal_state_row;

/* A stored schedule (kaal_schedules). args, kwargs: JSON text; time_zone and
 * queue may be NULL. version: the namespace's change counter at the row's
 * last change. deleted: 1 for a removed key (the change feed reports it). */
typedef struct kaal_schedule_row {
    char *key;
    char *cron;
    char *job_class;
    char *args;
    char *kwargs;
    char *time_zone;
    char *queue;
    int enabled;
    int deleted;
    int64_t version;
    int64_t updated_at;
    char *block; /* when set: the texts above point into it (one allocation) */
} kaal_schedule_row;

/* Growable arrays filled by the backends with the push helpers below, then
 * read and freed by the binding. */
#define KAAL_ROWS(T) struct { T *rows; size_t len, cap; }
typedef KAAL_ROWS(kaal_dispatch_row) kaal_dispatch_rows;
typedef KAAL_ROWS(kaal_delayed_row) kaal_delayed_rows;
typedef KAAL_ROWS(kaal_node_row) kaal_node_rows;
typedef KAAL_ROWS(kaal_state_row) kaal_state_rows;
typedef KAAL_ROWS(kaal_schedule_row) kaal_schedule_rows;

typedef struct kaal_backend kaal_backend;

/* Stored schedules, shared by every node of a namespace. Every change bumps
 * the namespace's version counter; the row keeps the counter's value, and a
 * removed key stays as a row with deleted = 1, so a node asks for what
 * changed since the version it last saw (one cheap read when nothing did). */
typedef struct kaal_schedule_ops {
    /* Insert or replace key's schedule (a removed key comes back).
     * *version: the counter after the change. */
    int (*upsert)(kaal_backend *b, const kaal_schedule_row *row, int64_t now, int64_t *version,
                  kaal_error *err);
    /* Remove key: *found = 0 (and nothing changes) when it is not stored. */
    int (*remove)(kaal_backend *b, const char *key, int64_t now, int *found, int64_t *version,
                  kaal_error *err);
    /* Appends key's schedule to out, when it is stored. */
    int (*get)(kaal_backend *b, const char *key, kaal_schedule_rows *out, kaal_error *err);
    /* Up to limit stored schedules with key > after (after NULL: from the
     * first), by key bytes. */
    int (*list)(kaal_backend *b, const char *after, size_t limit, kaal_schedule_rows *out,
                kaal_error *err);
    /* The change feed. *version: the counter now. When it is above since:
     * the rows (removed ones too) whose version is above since, by version,
     * up to limit. Writers bump the counter inside their transaction, so
     * changes become visible in version order. */
    int (*changes)(kaal_backend *b, int64_t since, size_t limit, kaal_schedule_rows *out,
                   int64_t *version, kaal_error *err);
    int (*count)(kaal_backend *b, size_t *count, kaal_error *err);
} kaal_schedule_ops;

typedef struct kaal_backend_vtable {
    const char *name; /* "memory", "redis", "sqlite", "postgres", "mysql" */

    /* Open the session (b->impl may be NULL on the first call). */
    int (*connect)(kaal_backend *b, kaal_error *err);
    /* Close the session and free b->impl (also on a never-connected handle). */
    void (*close)(kaal_backend *b);
    /* In a forked child: drop b->impl WITHOUT closing or talking to the
     * parent's session (free memory, close no sockets the parent uses). */
    void (*discard)(kaal_backend *b);
    /* Create tables / nothing (idempotent). */
    int (*migrate)(kaal_backend *b, kaal_error *err);

    /* Claim all n pairs in one round trip. A pair is won only if neither a
     * live claim nor a dispatch-log row exists for it. Winning records a
     * dispatch-log row with status "claimed", node, claimed_at = now; on
     * lease-based stores the claim itself lives lease_ms. */
    int (*claim)(kaal_backend *b, kaal_claim *items, size_t n, int64_t lease_ms,
                 const char *node, int64_t now, kaal_error *err);
    /* Set the outcome of a claimed pair: status "dispatched" or "failed". */
    int (*record)(kaal_backend *b, const char *key, int64_t fire_time, const char *status,
                  const char *node, const char *error, int64_t now, kaal_error *err);
    /* Newest first (by fire_time, then key). */
    int (*dispatches)(kaal_backend *b, const kaal_dispatch_query *q, kaal_dispatch_rows *out,
                      kaal_error *err);
    /* Delete at most `limit` dispatch-log rows with fire_time < before. */
    int (*cleanup)(kaal_backend *b, int64_t before, size_t limit, size_t *deleted,
                   kaal_error *err);

    /* Persisted enable/disable overrides (a key never set is not listed). */
    int (*set_enabled)(kaal_backend *b, const char *key, int enabled, kaal_error *err);
    int (*states)(kaal_backend *b, kaal_state_rows *out, kaal_error *err);

    /* Delayed jobs. add: KAAL_EDUPLICATE when job_id is pending. */
    int (*delayed_add)(kaal_backend *b, const kaal_delayed_row *job, kaal_error *err);
    /* Atomically remove and return up to `limit` jobs with run_at_ms <= now_ms,
     * oldest run_at first (equal run_at: by job_id bytes); each job goes to
     * exactly one caller. */
    int (*delayed_claim)(kaal_backend *b, int64_t now_ms, size_t limit, kaal_delayed_rows *out,
                         kaal_error *err);
    int (*delayed_cancel)(kaal_backend *b, const char *job_id, int *found, kaal_error *err);
    int (*delayed_count)(kaal_backend *b, size_t *count, kaal_error *err);
    /* Pending jobs, soonest first (as delayed_claim), up to limit (for `kaal status`). */
    int (*delayed_list)(kaal_backend *b, size_t limit, kaal_delayed_rows *out, kaal_error *err);

    /* Node heartbeats: upsert (node, info, now); nodes seen at or after since. */
    int (*heartbeat)(kaal_backend *b, const char *node, const char *info, int64_t now,
                     int64_t ttl, kaal_error *err);
    int (*nodes)(kaal_backend *b, int64_t since, kaal_node_rows *out, kaal_error *err);

    /* A keyset page of the dispatch log (status pages): as dispatches, but
     * only rows after the cursor in that order, i.e. fire_time < before_fire,
     * or fire_time == before_fire and key < before_key (key bytes). */
    int (*dispatches_before)(kaal_backend *b, const kaal_dispatch_query *q, int64_t before_fire,
                             const char *before_key, kaal_dispatch_rows *out, kaal_error *err);
    /* A keyset page of pending delayed jobs: as delayed_list, but only jobs
     * after the cursor in that order, i.e. run_at_ms > after_ms, or
     * run_at_ms == after_ms and job_id > after_id (job_id bytes). */
    int (*delayed_list_after)(kaal_backend *b, int64_t after_ms, const char *after_id, size_t limit,
                              kaal_delayed_rows *out, kaal_error *err);

    /* Optional (NULL when the store holds no job queue; only redis has it):
     * claim the n pairs as claim does and, in the same atomic step, write
     * pushes[i] for every won pair i, whose log row then says "dispatched"
     * (not "claimed"). Either both the claim and the push happen or neither. */
    int (*claim_push)(kaal_backend *b, kaal_claim *items, const kaal_push *pushes, size_t n,
                      int64_t lease_ms, const char *node, int64_t now, kaal_error *err);

    /* The schema step the store is at (schema.h; KAAL_SCHEMA_VERSION for a
     * store without steps), for the start check. */
    int (*schema_version)(kaal_backend *b, int *version, kaal_error *err);
    const kaal_schedule_ops *schedules;
    /* The latest fire time of each of the n (<= KAAL_LATEST_BATCH) keys in
     * the dispatch log: one query or script for all of them (the start
     * tick's catch-up rule reads it for every job). */
    int (*latest_fires)(kaal_backend *b, kaal_latest *items, size_t n, kaal_error *err);
    /* record for n (<= KAAL_RECORD_BATCH) outcomes, all by node at now: one
     * statement or script (a busy node records thousands of runs a second). */
    int (*record_many)(kaal_backend *b, const kaal_outcome *items, size_t n, const char *node, int64_t now,
                       kaal_error *err);
    /* Optional (NULL: the store has one key layout; only redis has it):
     * the namespace's key layout as it is in the store now, into out (n
     * bytes): "2", or "1+2" while a rolling upgrade from the previous
     * release's keys is in progress (`kaal migrate` ends it). */
    int (*layout)(kaal_backend *b, char *out, size_t n, kaal_error *err);
} kaal_backend_vtable;

/* The vtable of a backend whose functions are named after the members:
 * prefix_connect, prefix_close, ... prefix_nodes. */
#define KAAL_BACKEND_VTABLE(backend_name, prefix)                                               \
    {                                                                                           \
        .name = backend_name, .connect = prefix##_connect, .close = prefix##_close,             \
        .discard = prefix##_discard, .migrate = prefix##_migrate, .claim = prefix##_claim,      \
        .record = prefix##_record, .dispatches = prefix##_dispatches,                           \
        .cleanup = prefix##_cleanup, .set_enabled = prefix##_set_enabled,                       \
        .states = prefix##_states, .delayed_add = prefix##_delayed_add,                         \
        .delayed_claim = prefix##_delayed_claim, .delayed_cancel = prefix##_delayed_cancel,     \
        .delayed_count = prefix##_delayed_count, .delayed_list = prefix##_delayed_list,         \
        .heartbeat = prefix##_heartbeat, .nodes = prefix##_nodes,                               \
        .dispatches_before = prefix##_dispatches_before,                                        \
        .delayed_list_after = prefix##_delayed_list_after,                                      \
        .schema_version = prefix##_schema_version, .schedules = &prefix##_schedule_ops,         \
        .latest_fires = prefix##_latest_fires, .record_many = prefix##_record_many,              \
    }

struct kaal_backend {
    const kaal_backend_vtable *vt;
    char *ns;               /* namespace, non-empty */
    kaal_conn_params params;
    void *impl;             /* backend-private session state */
    int connected;
    pid_t pid;              /* process that opened the session */

    /* Serialisation and interrupts (kaal_backend_acquire and friends). One
     * call runs at a time (busy); gate guards busy, intr, io_fd and the
     * list links, and is held only for a few instructions. */
    pthread_mutex_t gate;
    pthread_cond_t idle;    /* signalled when busy drops or a waiter is interrupted */
    int busy;
    volatile int *intr;     /* the running call's interrupt flag (NULL: none) */
    int wake[2];            /* self-pipe: a byte wakes kaal_wait in the running call */
    int io_fd;              /* a socket a library blocks on by itself (-1: none); an
                             * interrupt shuts it down so that library returns */
    void (*on_interrupt)(kaal_backend *b); /* optional, called under gate */
    struct kaal_backend *prev, *next;       /* every live handle (fork handling) */
    int forked_busy;        /* in a forked child: a parent thread was inside a call at the fork */
    size_t impl_size;       /* the store's bytes when last measured (kaal_backend_memsize) */
};

/* Backends compiled into this build (NULL when not built). */
const kaal_backend_vtable *kaal_backend_find(const char *name);
extern const kaal_backend_vtable kaal_backend_memory;
#ifdef KAAL_HAVE_REDIS
extern const kaal_backend_vtable kaal_backend_redis;
#endif
#ifdef KAAL_HAVE_SQLITE
extern const kaal_backend_vtable kaal_backend_sqlite;
#endif
#ifdef KAAL_HAVE_POSTGRES
extern const kaal_backend_vtable kaal_backend_postgres;
#endif
#ifdef KAAL_HAVE_MYSQL
extern const kaal_backend_vtable kaal_backend_mysql;
#endif

/* Helpers (backend.c). kaal_strdup/kaal_strndup return NULL on NULL input. */
char *kaal_strdup(const char *s);
char *kaal_strndup(const char *s, size_t n);
void kaal_conn_params_free(kaal_conn_params *p);

/* Handles, shared by the Ruby binding and the C tests.
 * kaal_backend_new: a handle for vt on namespace ns (n bytes), owned by this
 * process, lock initialised, no params, not connected (NULL on ENOMEM).
 * kaal_backend_ready: before every vtable call, while acquired: in a forked
 * child drops the parent's session without touching it, then connects when
 * not connected.
 * kaal_backend_free: ends the session (close in the owning process, discard
 * in a forked child) and frees the handle and its params; NULL is ignored.
 * kaal_backend_follow_fork: in a forked child, lets go of the parent's
 * session and takes the handle over for this process. When a parent thread
 * was inside a call at the fork (b->forked_busy, set by the fork handler),
 * the session's memory may be half-updated (a reply half-parsed, a buffer
 * being grown): it is left alone (kept, never freed: once per fork), because freeing it
 * can crash; otherwise vt->discard frees it. */
kaal_backend *kaal_backend_new(const kaal_backend_vtable *vt, const char *ns, size_t n);
/* Bytes the handle holds in C: the handle, its namespace and, for the memory
 * backend, the whole store. The store is measured only when no call is
 * running on the handle (else its size when last measured). Never blocks
 * for long: called by Ruby's ObjectSpace.memsize_of. */
size_t kaal_backend_memsize(kaal_backend *b);
/* The memory backend's store in bytes; only while no call runs on b. */
size_t kaal_memory_store_size(kaal_backend *b);
int kaal_backend_ready(kaal_backend *b, kaal_error *err);
void kaal_backend_free(kaal_backend *b);
void kaal_backend_follow_fork(kaal_backend *b);

/* Calls on a handle, and interrupting them (the binding's unblocking
 * function). A call first acquires the handle, giving its own interrupt flag;
 * an interrupt sets that flag and, when the call is the running one, wakes
 * it: a byte on b->wake ends kaal_wait, b->io_fd is shut down, and
 * b->on_interrupt runs. Waiting to acquire is interruptible too.
 * kaal_backend_acquire: KAAL_OK, or KAAL_EINTERRUPTED when *flag was set
 * before the handle became free. kaal_backend_release: ends the call.
 * kaal_backend_interrupt: may run on any thread, any number of times.
 * After fork() the child's copy of every live handle is made idle with a
 * fresh gate and wake pipe (a pthread_atfork handler): a thread of the
 * parent that was inside a call does not exist in the child. */
int kaal_backend_acquire(kaal_backend *b, volatile int *flag);
void kaal_backend_release(kaal_backend *b);
void kaal_backend_interrupt(kaal_backend *b, volatile int *flag);
/* 1 when the running call has been interrupted (always 0 outside a call). */
int kaal_backend_interrupted(const kaal_backend *b);
/* Publishes (fd >= 0) or withdraws (-1) the socket a library blocks on by
 * itself; withdraw it before that socket is closed. */
void kaal_backend_set_io_fd(kaal_backend *b, int fd);

/* Milliseconds on CLOCK_MONOTONIC, for deadlines. */
int64_t kaal_mono_ms(void);

/* Waits until fd is ready for events (POLLIN / POLLOUT), the running call
 * is interrupted, or deadline_ms (kaal_mono_ms) passes, without spinning.
 * KAAL_OK when ready (*revents, if not NULL, says how), KAAL_EINTERRUPTED,
 * or KAAL_ECONNECT with "<backend>: <what>: timed out waiting for the server"
 * (or the poll error) in err. */
int kaal_wait(kaal_backend *b, int fd, short events, int64_t deadline_ms, short *revents,
              const char *what, kaal_error *err);
/* err = "<backend>: <what>: interrupted"; returns KAAL_EINTERRUPTED. */
int kaal_interrupted_error(kaal_backend *b, const char *what, kaal_error *err);

/* In a forked child, before a client library closes a connection whose
 * socket fd the parent still uses: points fd at /dev/null (dup2 keeps the
 * number), so whatever the library sends on closing goes nowhere. 1 when
 * the connection may now be closed (also when fd < 0: nothing is shared), 0
 * when /dev/null cannot be had and the connection must be leaked instead (a
 * one-off, bounded leak beats ending the parent's session). */
int kaal_silence_inherited_socket(int fd);

/* Text checks of the SQL backends (messages start with "<backend>: ").
 * kaal_utf8_chars: the characters in valid UTF-8 text of n bytes; -1 when it
 * is not valid UTF-8 or contains a NUL byte (a SQL text column can hold
 * neither). kaal_check_varchar: KAAL_EARG unless s (n bytes) fits a
 * VARCHAR(255) column; kaal_check_varchar_opt: the same for a NUL-terminated
 * s, and NULL passes. */
#define KAAL_VARCHAR_CHARS 255
long kaal_utf8_chars(const char *s, size_t n);
int kaal_check_varchar(const char *backend, const char *what, const char *s, size_t n,
                       kaal_error *err);
int kaal_check_varchar_opt(const char *backend, const char *what, const char *s,
                           kaal_error *err);
/* KAAL_EARG unless status is an outcome `record` accepts: "dispatched" or
 * "failed" (every store's record checks it first). */
int kaal_check_outcome(const char *status, kaal_error *err);

/* A growable byte buffer (SQL text, array literals, wire encodings), kept
 * NUL-terminated. After a failed allocation, oom is set and further appends
 * do nothing, so a writer checks once at the end. The caller frees p. */
typedef struct kaal_buf {
    char *p;
    size_t len, cap;
    int oom;
} kaal_buf;
void kaal_buf_put(kaal_buf *o, const char *s, size_t n);
void kaal_buf_str(kaal_buf *o, const char *s);

/* A multi-row statement: head, `rows` copies of row joined by ",", then tail
 * (malloc'd; NULL on ENOMEM). Each '#' in row becomes the next parameter
 * number, counting from first: SQLite's numbered "?#"; MySQL's "?" rows
 * have none. The claim statements are prepared once per power of two of
 * rows and padded by repeating the last pair (kaal_claim_slot). */
char *kaal_sql_rows(const char *head, const char *row, size_t rows, size_t first, const char *tail);
/* The smallest slot with 1 << slot >= n. */
int kaal_claim_slot(size_t n);

/* Claim batches on the SQL stores.
 * kaal_check_claims: the node and every job key fit a VARCHAR(255) column.
 * kaal_claim_cmp: the order of pair a against (fire time f, key k of kl
 * bytes): by fire time, then key bytes.
 * kaal_claims_sorted: a malloc'd array of pointers to items[0..n) in that
 * order, repeats in input order (NULL on ENOMEM). Every claimer inserts in
 * this order, so overlapping batches wait for each other rather than
 * deadlock.
 * kaal_claims_won: marks the first pair of sorted order[0..n) equal to
 * (f, k), a row the store says this call inserted, as claimed. */
int kaal_check_claims(const char *backend, const kaal_claim *items, size_t n, const char *node,
                      kaal_error *err);
int kaal_claim_cmp(const kaal_claim *a, const char *k, size_t kl, int64_t f);
kaal_claim **kaal_claims_sorted(kaal_claim *items, size_t n);
void kaal_claims_won(kaal_claim *const *order, size_t n, const char *k, size_t kl, int64_t f);

/* Result rows of the SQL backends. Every SQL backend SELECTs a row type's
 * columns in the order its reader below lists them, and hands the reader
 * the current result row as a kaal_columns: is_null(src, i) tells whether
 * column i is SQL NULL, text(src, i) is a malloc'd copy of a column that is
 * not (NULL only when out of memory), num(src, i) its integer value (0 for
 * SQL NULL). A reader appends one row to out (the kaal_*_rows it names) and
 * returns KAAL_ENOMEM when it cannot, also when a copy fails: a failed copy
 * is never mistaken for SQL NULL. view (optional, NULL: text copies) gives a
 * column's text where the result holds it, valid until the next row, and its
 * length; NULL for SQL NULL or when out of memory (is_null tells which). */
typedef struct kaal_columns {
    char *(*text)(const void *src, int col);
    int64_t (*num)(const void *src, int col);
    int (*is_null)(const void *src, int col);
    const void *src;
    const char *(*view)(const void *src, int col, size_t *len);
} kaal_columns;
typedef int (*kaal_row_reader)(void *out, const kaal_columns *c);
/* kaal_dispatch_rows: job_key, fire_time, status, node, error, claimed_at, updated_at */
int kaal_read_dispatch_row(void *out, const kaal_columns *c);
/* kaal_delayed_rows: job_id, run_at_ms, job_class, queue, args */
int kaal_read_delayed_row(void *out, const kaal_columns *c);
/* kaal_state_rows: job_key, enabled (an integer, 0 = disabled) */
int kaal_read_state_row(void *out, const kaal_columns *c);
/* kaal_node_rows: node, info, last_seen */
int kaal_read_node_row(void *out, const kaal_columns *c);
/* kaal_schedule_rows: job_key, cron, job_class, args, kwargs, time_zone,
 * queue, enabled, deleted, version, updated_at (KAAL_SCHEDULE_COLS) */
#define KAAL_SCHEDULE_COLS \
    "job_key, cron, job_class, args, kwargs, time_zone, queue, enabled, deleted, version, updated_at"
int kaal_read_schedule_row(void *out, const kaal_columns *c);

/* dispatches_before for stores without a cursor query (memory, redis): asks
 * vt->dispatches for ever more rows, newest first, until `limit` rows after
 * the cursor are in hand or the log is exhausted, and moves those to out. */
int kaal_dispatches_before_scan(kaal_backend *b, const kaal_dispatch_query *q, int64_t before_fire,
                                const char *before_key, kaal_dispatch_rows *out, kaal_error *err);

/* delayed_list_after for stores without a cursor query (memory, redis):
 * asks vt->delayed_list for ever more jobs, soonest first, until `limit`
 * jobs after the cursor are in hand or none are left, and moves those to out. */
int kaal_delayed_list_after_scan(kaal_backend *b, int64_t after_ms, const char *after_id, size_t limit,
                                 kaal_delayed_rows *out, kaal_error *err);

/* Append one zeroed row and return it (NULL on ENOMEM). */
kaal_dispatch_row *kaal_dispatch_rows_push(kaal_dispatch_rows *r);
kaal_delayed_row *kaal_delayed_rows_push(kaal_delayed_rows *r);
kaal_node_row *kaal_node_rows_push(kaal_node_rows *r);
kaal_state_row *kaal_state_rows_push(kaal_state_rows *r);
kaal_schedule_row *kaal_schedule_rows_push(kaal_schedule_rows *r);
void kaal_schedule_row_clear(kaal_schedule_row *row);
void kaal_schedule_rows_free(kaal_schedule_rows *r);
/* Free the rows appended after the first `keep` (a failed call returns none). */
void kaal_delayed_rows_truncate(kaal_delayed_rows *r, size_t keep);
void kaal_dispatch_rows_free(kaal_dispatch_rows *r);
void kaal_delayed_rows_free(kaal_delayed_rows *r);
void kaal_node_rows_free(kaal_node_rows *r);
void kaal_state_rows_free(kaal_state_rows *r);

#endif
