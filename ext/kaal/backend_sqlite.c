/* kaal: the SQLite backend (sqlite3). Pure C, runs without the GVL.
 *
 * One database file shared by every process of a host (several `kaal start`
 * processes on one machine). The file is opened in WAL mode with
 * synchronous=NORMAL and a busy timeout (command_timeout_ms, default 5000), so
 * writers from different processes queue on SQLite's lock instead of failing.
 * The binding serialises calls on one handle, hence NOMUTEX.
 *
 * Decisions:
 * - connect creates the tables in a file that has none (every schema step),
 *   so `kaal start` on a fresh file works without `kaal migrate`; a file at
 *   an older step is upgraded by `kaal migrate` only (the start check says so).
 * - An in-memory database (":memory:", "file::memory:", "mode=memory") is
 *   refused: it would be private to one connection and guarantee nothing.
 * - Claims are one INSERT ... ON CONFLICT DO NOTHING RETURNING per chunk of up
 *   to CLAIM_CHUNK pairs. The statement for a chunk of n rows is prepared for
 *   the next power of two and padded by repeating the last pair (a repeated
 *   pair conflicts with itself and is returned once), so at most
 *   log2(CLAIM_CHUNK)+1 claim statements are ever prepared per connection.
 *   A batch that would need much padding is split (next_chunk); several
 *   chunks run inside one BEGIN IMMEDIATE transaction.
 * - Delayed claims are one DELETE ... RETURNING inside BEGIN IMMEDIATE: the
 *   write lock is held from the selection of due rows to the commit, so each
 *   job goes to exactly one caller.
 * - Interrupts (Thread#raise, Timeout, ... through the handle's interrupt
 *   flag, docs/architecture.md): SQLite's own busy timeout sleeps through
 *   them, so waits for another connection's lock go through busy_wait, which
 *   sleeps on the handle's wake-up pipe and gives up when the call is
 *   interrupted; a running statement checks the flag every PROGRESS_OPS
 *   virtual-machine steps (progress) and stops with SQLITE_INTERRUPT. Either
 *   way the statement fails, its transaction is rolled back, and the binding
 *   reports the interrupt. Nothing here touches the connection from another
 *   thread.
 * - lease_ms is not used: on SQL stores the claim is the dispatch-log row,
 *   kept until cleanup removes it.
 * - Fork: a connection inherited from the parent is never sqlite3_close'd in
 *   the child (that could checkpoint or unlink the WAL the parent is using);
 *   its files are closed through the VFS and the rest is leaked (see
 *   close_inherited_files). The first connect in a child does this for every
 *   inherited session, also of handles the child never uses (see the
 *   open-session registry). */
#include "backend.h"

#ifdef KAAL_HAVE_SQLITE

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "schema.h"

#define CLAIM_CHUNK 4096 /* pairs per INSERT: 2 * 4096 + 3 variables */
#define CLAIM_SLOTS 13  /* statements for 1, 2, 4, ... 4096 rows */
#define DEFAULT_BUSY_MS 5000
#define PROGRESS_OPS 1000 /* statement steps between interrupt checks */

/* Cached statements (prepared on first use, finalised on close). */
enum {
    Q_BEGIN,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_RECORD,
    Q_DISPATCHES,
    Q_DISPATCHES_KEY,
    Q_CLEANUP,
    Q_SET_ENABLED,
    Q_STATES,
    Q_DELAYED_ADD,
    Q_DELAYED_CLAIM,
    Q_DELAYED_CANCEL,
    Q_DELAYED_COUNT,
    Q_DELAYED_LIST,
    Q_HEARTBEAT,
    Q_NODES_EXPIRE,
    Q_NODES,
    Q_DISPATCHES_BEFORE,
    Q_DISPATCHES_KEY_BEFORE,
    Q_DELAYED_LIST_AFTER,
    Q_SCHED_BUMP,
    Q_SCHED_VERSION,
    Q_SCHED_UPSERT,
    Q_SCHED_REMOVE,
    Q_SCHED_GET,
    Q_SCHED_LIST,
    Q_SCHED_LIST_AFTER,
    Q_SCHED_CHANGES,
    Q_SCHED_COUNT,
    Q_LATEST_FIRE,
    Q_COUNT
};

static const char *const sql_text[Q_COUNT] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_RECORD] =
        "INSERT INTO kaal_dispatches"
        " (namespace, job_key, fire_time, status, node, error, claimed_at, updated_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)"
        " ON CONFLICT (namespace, job_key, fire_time) DO UPDATE SET"
        " status = excluded.status, node = COALESCE(excluded.node, kaal_dispatches.node),"
        " error = excluded.error, updated_at = excluded.updated_at",
    [Q_DISPATCHES] =
        "SELECT job_key, fire_time, status, node, error, claimed_at, updated_at"
        " FROM kaal_dispatches WHERE namespace = ?1"
        " AND (?2 IS NULL OR job_key = ?2) AND (?3 IS NULL OR status = ?3)"
        " AND (?4 IS NULL OR node = ?4)"
        " ORDER BY fire_time DESC, job_key DESC LIMIT ?5",
    /* The same with a job key: "job_key = ?2" (not "?2 IS NULL OR ...") lets
     * the planner walk the primary key instead of scanning the whole log. */
    [Q_DISPATCHES_KEY] =
        "SELECT job_key, fire_time, status, node, error, claimed_at, updated_at"
        " FROM kaal_dispatches WHERE namespace = ?1 AND job_key = ?2"
        " AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR node = ?4)"
        " ORDER BY fire_time DESC, job_key DESC LIMIT ?5",
    [Q_CLEANUP] =
        "DELETE FROM kaal_dispatches WHERE rowid IN"
        " (SELECT rowid FROM kaal_dispatches WHERE namespace = ?1 AND fire_time < ?2"
        " ORDER BY fire_time LIMIT ?3)",
    [Q_SET_ENABLED] =
        "INSERT INTO kaal_job_states (namespace, job_key, enabled, updated_at)"
        " VALUES (?1, ?2, ?3, ?4)"
        " ON CONFLICT (namespace, job_key) DO UPDATE SET"
        " enabled = excluded.enabled, updated_at = excluded.updated_at",
    [Q_STATES] =
        "SELECT job_key, enabled FROM kaal_job_states WHERE namespace = ?1 ORDER BY job_key",
    [Q_DELAYED_ADD] =
        "INSERT INTO kaal_delayed_jobs"
        " (namespace, job_id, run_at_ms, job_class, queue, args, created_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [Q_DELAYED_CLAIM] =
        "DELETE FROM kaal_delayed_jobs WHERE rowid IN"
        " (SELECT rowid FROM kaal_delayed_jobs WHERE namespace = ?1 AND run_at_ms <= ?2"
        " ORDER BY run_at_ms, job_id LIMIT ?3)"
        " RETURNING job_id, run_at_ms, job_class, queue, args",
    [Q_DELAYED_CANCEL] = "DELETE FROM kaal_delayed_jobs WHERE namespace = ?1 AND job_id = ?2",
    [Q_DELAYED_COUNT] = "SELECT COUNT(*) FROM kaal_delayed_jobs WHERE namespace = ?1",
    [Q_DELAYED_LIST] =
        "SELECT job_id, run_at_ms, job_class, queue, args FROM kaal_delayed_jobs"
        " WHERE namespace = ?1 ORDER BY run_at_ms, job_id LIMIT ?2",
    [Q_HEARTBEAT] =
        "INSERT INTO kaal_nodes (namespace, node, info, last_seen) VALUES (?1, ?2, ?3, ?4)"
        " ON CONFLICT (namespace, node) DO UPDATE SET"
        " info = excluded.info, last_seen = excluded.last_seen",
    [Q_NODES_EXPIRE] = "DELETE FROM kaal_nodes WHERE namespace = ?1 AND last_seen < ?2",
    [Q_NODES] =
        "SELECT node, info, last_seen FROM kaal_nodes"
        " WHERE namespace = ?1 AND last_seen >= ?2 ORDER BY node",
    /* Keyset pages of the log: rows after (?6, ?7) in the order above. */
    [Q_DISPATCHES_BEFORE] =
        "SELECT job_key, fire_time, status, node, error, claimed_at, updated_at"
        " FROM kaal_dispatches WHERE namespace = ?1"
        " AND (?2 IS NULL OR job_key = ?2) AND (?3 IS NULL OR status = ?3)"
        " AND (?4 IS NULL OR node = ?4) AND (fire_time < ?6 OR (fire_time = ?6 AND job_key < ?7))"
        " ORDER BY fire_time DESC, job_key DESC LIMIT ?5",
    [Q_DISPATCHES_KEY_BEFORE] =
        "SELECT job_key, fire_time, status, node, error, claimed_at, updated_at"
        " FROM kaal_dispatches WHERE namespace = ?1 AND job_key = ?2"
        " AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR node = ?4)"
        " AND (fire_time < ?6 OR (fire_time = ?6 AND job_key < ?7))"
        " ORDER BY fire_time DESC, job_key DESC LIMIT ?5",
    [Q_LATEST_FIRE] =
        "SELECT MAX(fire_time) FROM kaal_dispatches WHERE namespace = ?1 AND job_key = ?2",
    [Q_DELAYED_LIST_AFTER] =
        "SELECT job_id, run_at_ms, job_class, queue, args FROM kaal_delayed_jobs"
        " WHERE namespace = ?1 AND (run_at_ms > ?3 OR (run_at_ms = ?3 AND job_id > ?4))"
        " ORDER BY run_at_ms, job_id LIMIT ?2",
    /* Stored schedules: the counter row is bumped first in every change's
     * transaction. */
    [Q_SCHED_BUMP] =
        "INSERT INTO kaal_schedule_versions (namespace, version) VALUES (?1, 1)"
        " ON CONFLICT (namespace) DO UPDATE SET version = kaal_schedule_versions.version + 1"
        " RETURNING version",
    [Q_SCHED_VERSION] = "SELECT version FROM kaal_schedule_versions WHERE namespace = ?1",
    [Q_SCHED_UPSERT] =
        "INSERT INTO kaal_schedules (namespace, " KAAL_SCHEDULE_COLS ")"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, ?10, ?11)"
        " ON CONFLICT (namespace, job_key) DO UPDATE SET cron = excluded.cron,"
        " job_class = excluded.job_class, args = excluded.args, kwargs = excluded.kwargs,"
        " time_zone = excluded.time_zone, queue = excluded.queue, enabled = excluded.enabled,"
        " deleted = 0, version = excluded.version, updated_at = excluded.updated_at",
    [Q_SCHED_REMOVE] =
        "UPDATE kaal_schedules SET deleted = 1, version = ?3, updated_at = ?4"
        " WHERE namespace = ?1 AND job_key = ?2 AND deleted = 0",
    [Q_SCHED_GET] =
        "SELECT " KAAL_SCHEDULE_COLS " FROM kaal_schedules"
        " WHERE namespace = ?1 AND job_key = ?2 AND deleted = 0",
    [Q_SCHED_LIST] =
        "SELECT " KAAL_SCHEDULE_COLS " FROM kaal_schedules"
        " WHERE namespace = ?1 AND deleted = 0 ORDER BY job_key LIMIT ?3",
    [Q_SCHED_LIST_AFTER] =
        "SELECT " KAAL_SCHEDULE_COLS " FROM kaal_schedules"
        " WHERE namespace = ?1 AND deleted = 0 AND job_key > ?2 ORDER BY job_key LIMIT ?3",
    [Q_SCHED_CHANGES] =
        "SELECT " KAAL_SCHEDULE_COLS " FROM kaal_schedules"
        " WHERE namespace = ?1 AND version > ?2 ORDER BY version LIMIT ?3",
    [Q_SCHED_COUNT] = "SELECT COUNT(*) FROM kaal_schedules WHERE namespace = ?1 AND deleted = 0",
};

typedef struct sqlite_impl {
    sqlite3 *db;
    sqlite3_stmt *stmt[Q_COUNT];
    sqlite3_stmt *claim[CLAIM_SLOTS]; /* claim[i] inserts 1 << i rows */
    int busy_ms;
    int64_t busy_until;               /* kaal_mono_ms deadline of the current lock wait */
    int unwinding;                    /* a ROLLBACK runs: never cut it short */
    pid_t pid;                        /* process that opened db */
    int listed;                       /* in the open-session registry */
    struct sqlite_impl *prev, *next;
} sqlite_impl;

#define IMPL(b) ((sqlite_impl *)(b)->impl)

/* ------------------------------------------------------------------ errors */

static int oom(kaal_error *err)
{
    return kaal_error_set(err, KAAL_ENOMEM, NULL, -1, "sqlite: out of memory");
}

/* Turn a sqlite3 result code into a kaal status. Errors that mean the file
 * is gone or unusable drop the session so the next call reconnects. */
static int fail(kaal_backend *b, int rc, const char *what, kaal_error *err)
{
    sqlite_impl *s = IMPL(b);
    const char *msg = (s && s->db) ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
    int prim = rc & 0xff;

    switch (prim) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return kaal_error_set(err, KAAL_EBACKEND, NULL, -1,
                              "sqlite: %s: database is locked (waited %d ms for another "
                              "connection; raise command_timeout if this is expected)",
                              what, s ? s->busy_ms : 0);
    case SQLITE_NOMEM:
        return kaal_error_set(err, KAAL_ENOMEM, NULL, -1, "sqlite: %s: out of memory", what);
    case SQLITE_CANTOPEN:
    case SQLITE_NOTADB:
    case SQLITE_IOERR:
    case SQLITE_CORRUPT:
    case SQLITE_READONLY:
    case SQLITE_FULL:
        b->connected = 0;
        return kaal_error_set(err, KAAL_ECONNECT, NULL, -1, "sqlite: %s: %s (%s)", what, msg,
                              b->params.path ? b->params.path : "");
    default:
        if (strncmp(msg, "no such table", 13) == 0)
            return kaal_error_set(err, KAAL_EBACKEND, NULL, -1,
                                  "sqlite: %s: %s (run `kaal migrate` to create kaal's tables)", what, msg);
        return kaal_error_set(err, KAAL_EBACKEND, NULL, -1, "sqlite: %s: %s", what, msg);
    }
}

static int prepare(kaal_backend *b, const char *sql, sqlite3_stmt **out, const char *what,
                   kaal_error *err)
{
    int rc = sqlite3_prepare_v3(IMPL(b)->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);
    if (rc != SQLITE_OK) {
        *out = NULL;
        return fail(b, rc, what, err);
    }
    return KAAL_OK;
}

/* The cached statement q, reset and with its bindings cleared. */
static int stmt(kaal_backend *b, int q, sqlite3_stmt **out, kaal_error *err)
{
    sqlite_impl *s = IMPL(b);
    if (!s->stmt[q]) {
        int rc = prepare(b, sql_text[q], &s->stmt[q], "prepare", err);
        if (rc != KAAL_OK) return rc;
    }
    sqlite3_reset(s->stmt[q]);
    sqlite3_clear_bindings(s->stmt[q]);
    *out = s->stmt[q];
    return KAAL_OK;
}

static int bind_ns(kaal_backend *b, sqlite3_stmt *st)
{
    return sqlite3_bind_text(st, 1, b->ns, -1, SQLITE_STATIC);
}

static int bind_text(sqlite3_stmt *st, int i, const char *v)
{
    return v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

/* Step a statement that returns no rows, then reset it. */
static int exec_stmt(kaal_backend *b, sqlite3_stmt *st, const char *what, kaal_error *err)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return fail(b, rc, what, err);
    return KAAL_OK;
}

static int exec_q(kaal_backend *b, int q, const char *what, kaal_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = stmt(b, q, &st, err);
    return rc != KAAL_OK ? rc : exec_stmt(b, st, what, err);
}

static void rollback(kaal_backend *b)
{
    sqlite_impl *s = IMPL(b);
    if (sqlite3_get_autocommit(s->db)) return;
    s->unwinding = 1; /* an interrupt must not leave the transaction open */
    exec_q(b, Q_ROLLBACK, "rollback", NULL);
    s->unwinding = 0;
}

static char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? kaal_strndup((const char *)t, (size_t)sqlite3_column_bytes(st, i)) : NULL;
}

static char *cols_text(const void *src, int col) { return col_text((sqlite3_stmt *)src, col); }

static const char *cols_view(const void *src, int col, size_t *len)
{
    const unsigned char *t = sqlite3_column_text((sqlite3_stmt *)src, col);
    *len = t ? (size_t)sqlite3_column_bytes((sqlite3_stmt *)src, col) : 0;
    return (const char *)t;
}

static int64_t cols_num(const void *src, int col)
{
    return sqlite3_column_int64((sqlite3_stmt *)src, col);
}

static int cols_null(const void *src, int col)
{
    return sqlite3_column_type((sqlite3_stmt *)src, col) == SQLITE_NULL;
}

/* Step st to its end, appending every row to out with read (backend.h);
 * then reset it. */
static int read_rows(kaal_backend *b, sqlite3_stmt *st, kaal_row_reader read, void *out,
                     const char *what, kaal_error *err)
{
    kaal_columns c;
    int rc;
    c.text = cols_text;
    c.view = cols_view;
    c.is_null = cols_null;
    c.num = cols_num;
    c.src = st;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (read(out, &c) != KAAL_OK) {
            sqlite3_reset(st);
            return oom(err);
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? KAAL_OK : fail(b, rc, what, err);
}

/* -------------------------------------------------------------- lifecycle */

/* ------------------------------------------------ open-session registry
 *
 * The one piece of mutable global state in this file: the list of sessions
 * this process opened, guarded by registry_lock. It exists for fork(): SQLite
 * keeps lock state per file per process, so a connection inherited from the
 * parent must have its files closed before the child opens a connection of
 * its own, even when the child never touches the inherited handle again
 * (close_inherited_files explains why). sqlite_connect does that for every
 * listed session whose pid is not ours. pthread_atfork handlers hold
 * registry_lock across fork() so the child always sees a consistent list. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t registry_once = PTHREAD_ONCE_INIT;
static sqlite_impl *registry_head;

static void registry_prefork(void) { pthread_mutex_lock(&registry_lock); }
static void registry_postfork(void) { pthread_mutex_unlock(&registry_lock); }
static void registry_init(void)
{
    pthread_atfork(registry_prefork, registry_postfork, registry_postfork);
}

static void registry_unlink_locked(sqlite_impl *s)
{
    if (!s->listed) return;
    if (s->prev) s->prev->next = s->next;
    else registry_head = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = NULL;
    s->listed = 0;
}

static void registry_add(sqlite_impl *s)
{
    pthread_once(&registry_once, registry_init);
    pthread_mutex_lock(&registry_lock);
    s->prev = NULL;
    s->next = registry_head;
    if (registry_head) registry_head->prev = s;
    registry_head = s;
    s->listed = 1;
    pthread_mutex_unlock(&registry_lock);
}

static void registry_remove(sqlite_impl *s)
{
    pthread_mutex_lock(&registry_lock);
    registry_unlink_locked(s);
    pthread_mutex_unlock(&registry_lock);
}

static void close_inherited_files(sqlite3 *db);

/* In a forked child: close the files of every session inherited from an
 * ancestor. Their memory stays until the owning handle is discarded. */
static void registry_close_inherited(void)
{
    pid_t me = getpid();
    sqlite_impl *s, *next;
    pthread_once(&registry_once, registry_init);
    pthread_mutex_lock(&registry_lock);
    for (s = registry_head; s; s = next) {
        next = s->next;
        if (s->pid != me) {
            close_inherited_files(s->db);
            registry_unlink_locked(s);
        }
    }
    pthread_mutex_unlock(&registry_lock);
}

static void impl_free(sqlite_impl *s, int close_db)
{
    size_t i;
    if (!s) return;
    registry_remove(s);
    if (close_db) {
        for (i = 0; i < Q_COUNT; i++) sqlite3_finalize(s->stmt[i]);
        for (i = 0; i < CLAIM_SLOTS; i++) sqlite3_finalize(s->claim[i]);
        sqlite3_close_v2(s->db);
    }
    free(s);
}

static void sqlite_discard(kaal_backend *b);

static void sqlite_close(kaal_backend *b)
{
    if (IMPL(b) && IMPL(b)->pid != getpid()) { /* inherited: never sqlite3_close it */
        sqlite_discard(b);
        return;
    }
    impl_free(IMPL(b), 1);
    b->impl = NULL;
    b->connected = 0;
}

/* Close, in a forked child, the files under the parent's connection without
 * going through sqlite3_close (which could checkpoint, truncate or delete the
 * WAL the parent is using). SQLite keeps lock state per file per process; as
 * long as the inherited connection's files stay open, a new connection in the
 * child would share that state, take no real locks of its own, and the parent
 * could delete the WAL under it (tested in sqlite_fork_spec.rb). Closing
 * through the VFS releases only this process's view: POSIX locks are
 * per-process and the child holds none of the parent's. */
static void close_inherited_files(sqlite3 *db)
{
    sqlite3_file *f = NULL;
    if (!db) return;
    if (sqlite3_file_control(db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &f) == SQLITE_OK && f &&
        f->pMethods) {
        f->pMethods->xClose(f); /* the WAL (or rollback journal) */
        f->pMethods = NULL;
    }
    f = NULL;
    if (sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &f) == SQLITE_OK && f &&
        f->pMethods) {
        if (f->pMethods->iVersion >= 2 && f->pMethods->xShmUnmap)
            f->pMethods->xShmUnmap(f, 0); /* unmap the wal-index; never delete it */
        f->pMethods->xClose(f);
        f->pMethods = NULL;
    }
}

static void sqlite_discard(kaal_backend *b)
{
    sqlite_impl *s = IMPL(b);
    if (s) {
        /* Under the registry lock: another handle's connect may be closing
         * the same inherited files right now (registry_close_inherited). A
         * session no longer listed has had its files closed already. The
         * sqlite3 handle and its statements are leaked on purpose (a few
         * kilobytes per fork): freeing them would run sqlite3_close. */
        pthread_mutex_lock(&registry_lock);
        if (s->listed) {
            close_inherited_files(s->db);
            registry_unlink_locked(s);
        }
        pthread_mutex_unlock(&registry_lock);
        free(s);
    }
    b->impl = NULL;
    b->connected = 0;
}

static int is_memory_path(const char *p)
{
    return strcmp(p, ":memory:") == 0 || strncmp(p, "file::memory:", 13) == 0 ||
           (strncmp(p, "file:", 5) == 0 && strstr(p, "mode=memory") != NULL);
}

/* *out: one integer the query sql (no parameters) returns, 0 for no row
 * or NULL. */
static int scalar(kaal_backend *b, const char *sql, const char *arg, int64_t *out, kaal_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(IMPL(b)->db, sql, -1, &st, NULL);
    *out = 0;
    if (rc != SQLITE_OK) {
        sqlite3_finalize(st);
        return fail(b, rc, "schema version", err);
    }
    if (arg) sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? KAAL_OK : fail(b, rc, "schema version", err);
}

static int sqlite_schema_version(kaal_backend *b, int *version, kaal_error *err)
{
    static const char has_table[] = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1";
    return kaal_schema_version_read(b, scalar, has_table, version, err);
}

/* Applies the schema steps the file lacks, in one transaction; with
 * only_fresh, only to a file without kaal's tables (connect: a file from
 * an older release is left to `kaal migrate`, and the node's start check
 * names it). */
static int run_schema(kaal_backend *b, int only_fresh, kaal_error *err)
{
    sqlite_impl *s = IMPL(b);
    int rc = exec_q(b, Q_BEGIN, "migrate", err), version = 0, step;
    size_t i;
    if (rc != KAAL_OK) return rc;
    rc = sqlite_schema_version(b, &version, err);
    if (only_fresh && version > 0) version = KAAL_SCHEMA_VERSION;
    for (step = version; rc == KAAL_OK && step < KAAL_SCHEMA_VERSION; step++) {
        for (i = 0; kaal_schema_steps_sqlite[step][i]; i++) {
            char *msg = NULL;
            int src = sqlite3_exec(s->db, kaal_schema_steps_sqlite[step][i], NULL, NULL, &msg);
            sqlite3_free(msg);
            if (src != SQLITE_OK) {
                rc = fail(b, src, "migrate", err);
                break;
            }
        }
    }
    if (rc == KAAL_OK) rc = exec_q(b, Q_COMMIT, "migrate", err);
    if (rc != KAAL_OK) rollback(b);
    return rc;
}

/* Called by SQLite while another connection holds the lock it needs (count:
 * calls so far for this lock): waits a little, woken at once by an
 * interrupt, and says whether to try again (0: give up with SQLITE_BUSY).
 * The wait for one lock is bounded by busy_ms, as sqlite3_busy_timeout's. */
static int busy_wait(void *arg, int count)
{
    kaal_backend *b = arg;
    sqlite_impl *s = IMPL(b);
    int64_t now = kaal_mono_ms(), step = count < 6 ? (int64_t)1 << count : 50; /* 1 .. 32, 50 ms */
    kaal_error ignored;
    if (count == 0) s->busy_until = now + s->busy_ms;
    if (kaal_backend_interrupted(b) || now >= s->busy_until) return 0;
    if (step > s->busy_until - now) step = s->busy_until - now;
    kaal_wait(b, -1, 0, now + step, NULL, "lock", &ignored); /* a pause, or the interrupt */
    return !kaal_backend_interrupted(b);
}

/* Called by SQLite every PROGRESS_OPS steps of a statement: non-zero stops
 * it with SQLITE_INTERRUPT. */
static int progress(void *arg)
{
    kaal_backend *b = arg;
    return kaal_backend_interrupted(b) && !IMPL(b)->unwinding;
}

/* PRAGMA journal_mode=WAL needs a moment of exclusive access the first time
 * (several processes may open a fresh file at once); retry within the busy
 * budget. Returns the sqlite3 result code. */
static int enable_wal(kaal_backend *b)
{
    sqlite_impl *s = IMPL(b);
    int64_t until = kaal_mono_ms() + s->busy_ms;
    kaal_error ignored;
    int rc;
    for (;;) {
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                const char *mode = (const char *)sqlite3_column_text(st, 0);
                rc = (mode && sqlite3_stricmp(mode, "wal") == 0) ? SQLITE_OK : SQLITE_BUSY;
            }
        }
        sqlite3_finalize(st);
        if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) return rc;
        if (kaal_backend_interrupted(b) || kaal_mono_ms() >= until) return rc;
        kaal_wait(b, -1, 0, kaal_mono_ms() + 10, NULL, "lock", &ignored);
    }
}

static int sqlite_connect(kaal_backend *b, kaal_error *err)
{
    const char *path = b->params.path;
    sqlite_impl *s;
    char *msg = NULL;
    int rc;

    /* SQLite keeps longer text; refused as on the other SQL stores */
    rc = kaal_check_varchar("sqlite", "namespace", b->ns, strlen(b->ns), err);
    if (rc != KAAL_OK) return rc;
    if (b->impl) sqlite_close(b);
    if (!path || !*path)
        return kaal_error_set(err, KAAL_ECONFIG, "path", -1,
                              "sqlite: no database file given (set backend_config url "
                              "\"sqlite:///path/to/kaal.sqlite3\" or path:)");
    if (is_memory_path(path))
        return kaal_error_set(err, KAAL_ECONFIG, "path", -1,
                              "sqlite: an in-memory database cannot be shared between "
                              "processes or connections; give a file path");

    registry_close_inherited();
    s = calloc(1, sizeof *s);
    if (!s) return oom(err);
    s->busy_ms = b->params.command_timeout_ms > 0 ? b->params.command_timeout_ms
                                                  : DEFAULT_BUSY_MS;
    s->pid = getpid();
    b->impl = s;

    rc = sqlite3_open_v2(path, &s->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                             SQLITE_OPEN_URI,
                         NULL);
    if (rc != SQLITE_OK) {
        kaal_error_set(err, KAAL_ECONNECT, NULL, -1, "sqlite: cannot open %s: %s", path,
                       s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        sqlite_close(b);
        return KAAL_ECONNECT;
    }
    registry_add(s);
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_handler(s->db, busy_wait, b);
    sqlite3_progress_handler(s->db, PROGRESS_OPS, progress, b);

    rc = enable_wal(b);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, "PRAGMA synchronous=NORMAL", NULL, NULL, &msg);
    sqlite3_free(msg);
    if (rc != SQLITE_OK) {
        int code = (rc & 0xff) == SQLITE_BUSY ? KAAL_EBACKEND : KAAL_ECONNECT;
        kaal_error_set(err, code, NULL, -1, "sqlite: cannot set up %s: %s", path,
                       sqlite3_errmsg(s->db));
        sqlite_close(b);
        return code;
    }
    b->connected = 1;
    rc = run_schema(b, 1, err);
    if (rc != KAAL_OK) {
        sqlite_close(b);
        return rc;
    }
    return KAAL_OK;
}

static int sqlite_migrate(kaal_backend *b, kaal_error *err)
{
    return run_schema(b, 0, err);
}

/* ----------------------------------------------------------------- claims */

/* Prepared INSERT for 1 << slot rows. Variables: ?1 namespace, ?2 node,
 * ?3 now, then (?2i+4 key, ?2i+5 fire_time) per row i. */
static int claim_stmt(kaal_backend *b, int slot, sqlite3_stmt **out, kaal_error *err)
{
    sqlite_impl *s = IMPL(b);
    if (!s->claim[slot]) {
        char *sql = kaal_sql_rows("INSERT INTO kaal_dispatches (namespace, job_key, fire_time,"
                                  " status, node, claimed_at, updated_at) VALUES ",
                                  "(?1, ?#, ?#, 'claimed', ?2, ?3, ?3)", (size_t)1 << slot, 4,
                                  " ON CONFLICT DO NOTHING RETURNING job_key, fire_time");
        int rc;
        if (!sql) return oom(err);
        rc = prepare(b, sql, &s->claim[slot], "claim", err);
        free(sql);
        if (rc != KAAL_OK) return rc;
    }
    sqlite3_reset(s->claim[slot]);
    sqlite3_clear_bindings(s->claim[slot]);
    *out = s->claim[slot];
    return KAAL_OK;
}

/* Claim items[0..n) (n <= CLAIM_CHUNK) with one statement; the rows it
 * inserted are marked won in order[0..all), the whole batch sorted
 * (kaal_claims_sorted: a pair repeated in the batch is won by its first
 * occurrence). */
static int claim_chunk(kaal_backend *b, const kaal_claim *items, size_t n, kaal_claim *const *order,
                       size_t all, const char *node, int64_t now, kaal_error *err)
{
    sqlite3_stmt *st = NULL;
    size_t i, rows;
    int slot = kaal_claim_slot(n), rc;

    rows = (size_t)1 << slot;
    rc = claim_stmt(b, slot, &st, err);
    if (rc != KAAL_OK) return rc;

    bind_ns(b, st);
    bind_text(st, 2, node);
    sqlite3_bind_int64(st, 3, now);
    for (i = 0; i < rows; i++) {
        const kaal_claim *c = &items[i < n ? i : n - 1]; /* pad with the last pair */
        sqlite3_bind_text(st, (int)(2 * i + 4), c->key, (int)c->key_len, SQLITE_STATIC);
        sqlite3_bind_int64(st, (int)(2 * i + 5), c->fire_time);
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(st, 0);
        size_t kl = (size_t)sqlite3_column_bytes(st, 0);
        if (k) kaal_claims_won(order, all, k, kl, sqlite3_column_int64(st, 1));
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? KAAL_OK : fail(b, rc, "claim", err);
}

/* How many of `rem` pairs the next statement takes. A statement is padded to
 * a power of two rows; when padding would waste more than a quarter of the
 * rows (and more than 32), take the largest power of two below rem instead
 * and leave the rest to the following statements. */
static size_t next_chunk(size_t rem)
{
    size_t p2 = 1;
    if (rem >= CLAIM_CHUNK) return CLAIM_CHUNK;
    while (p2 < rem) p2 <<= 1;
    if (p2 - rem <= 32 || p2 - rem <= rem / 4) return rem;
    return p2 >> 1;
}

static int sqlite_claim(kaal_backend *b, kaal_claim *items, size_t n, int64_t lease_ms,
                        const char *node, int64_t now, kaal_error *err)
{
    kaal_claim **order;
    size_t off;
    int multi, rc = KAAL_OK;

    (void)lease_ms;
    for (off = 0; off < n; off++) items[off].claimed = 0;
    if (n == 0) return KAAL_OK;
    multi = next_chunk(n) < n;
    order = kaal_claims_sorted(items, n);
    if (!order) return oom(err);
    if (multi) rc = exec_q(b, Q_BEGIN, "claim", err);
    for (off = 0; rc == KAAL_OK && off < n;) {
        size_t m = next_chunk(n - off);
        rc = claim_chunk(b, items + off, m, order, n, node, now, err);
        off += m;
    }
    if (multi && rc == KAAL_OK) rc = exec_q(b, Q_COMMIT, "claim", err);
    if (rc != KAAL_OK) {
        if (b->connected) rollback(b);
        for (off = 0; off < n; off++) items[off].claimed = 0;
    }
    free(order);
    return rc;
}

/* ------------------------------------------------------------ dispatch log */

static int sqlite_record(kaal_backend *b, const char *key, int64_t fire_time, const char *status,
                         const char *node, const char *error, int64_t now, kaal_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = kaal_check_outcome(status, err);
    if (rc == KAAL_OK) rc = stmt(b, Q_RECORD, &st, err);
    if (rc != KAAL_OK) return rc;
    bind_ns(b, st);
    bind_text(st, 2, key);
    sqlite3_bind_int64(st, 3, fire_time);
    bind_text(st, 4, status);
    bind_text(st, 5, node);
    bind_text(st, 6, error);
    sqlite3_bind_int64(st, 7, now);
    return exec_stmt(b, st, "record", err);
}

/* One write transaction for the batch (one commit instead of n). */
static int sqlite_record_many(kaal_backend *b, const kaal_outcome *items, size_t n, const char *node,
                              int64_t now, kaal_error *err)
{
    size_t i;
    int rc;
    if (n == 0) return KAAL_OK;
    if ((rc = exec_q(b, Q_BEGIN, "record", err)) != KAAL_OK) return rc;
    for (i = 0; rc == KAAL_OK && i < n; i++)
        rc = sqlite_record(b, items[i].key, items[i].fire_time, items[i].status, node, items[i].error, now, err);
    if (rc == KAAL_OK) rc = exec_q(b, Q_COMMIT, "record", err);
    if (rc != KAAL_OK) rollback(b);
    return rc;
}

/* The dispatch log, newest first: the first page, or (before_key set) the
 * page after the cursor (before_fire, before_key). */
static int dispatch_page(kaal_backend *b, const kaal_dispatch_query *q, int64_t before_fire,
                         const char *before_key, kaal_dispatch_rows *out, kaal_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = stmt(b, before_key ? (q->key ? Q_DISPATCHES_KEY_BEFORE : Q_DISPATCHES_BEFORE)
                                : (q->key ? Q_DISPATCHES_KEY : Q_DISPATCHES),
                  &st, err);
    if (rc != KAAL_OK) return rc;
    bind_ns(b, st);
    bind_text(st, 2, q->key);
    bind_text(st, 3, q->status);
    bind_text(st, 4, q->node);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)q->limit);
    if (before_key) {
        sqlite3_bind_int64(st, 6, before_fire);
        bind_text(st, 7, before_key);
    }
    return read_rows(b, st, kaal_read_dispatch_row, out, "dispatches", err);
}

static int sqlite_dispatches(kaal_backend *b, const kaal_dispatch_query *q, kaal_dispatch_rows *out,
                             kaal_error *err)
{
    return dispatch_page(b, q, 0, NULL, out, err);
}

/* In process, a statement per key costs no round trip: one primary-key
 * lookup each. */
static int sqlite_latest_fires(kaal_backend *b, kaal_latest *items, size_t n, kaal_error *err)
{
    size_t i;
    for (i = 0; i < n; i++) {
        sqlite3_stmt *st = NULL;
        int rc = stmt(b, Q_LATEST_FIRE, &st, err);
        if (rc != KAAL_OK) return rc;
        bind_ns(b, st);
        sqlite3_bind_text(st, 2, items[i].key, (int)items[i].key_len, SQLITE_STATIC);
        rc = sqlite3_step(st);
        items[i].found = rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL;
        items[i].fire_time = items[i].found ? (int64_t)sqlite3_column_int64(st, 0) : 0;
        sqlite3_reset(st);
        if (rc != SQLITE_ROW) return fail(b, rc, "latest_fires", err);
    }
    return KAAL_OK;
}

static int sqlite_cleanup(kaal_backend *b, int64_t before, size_t limit, size_t *deleted,
                          kaal_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc;
    *deleted = 0;
    if (limit == 0) return KAAL_OK;
    rc = stmt(b, Q_CLEANUP, &st, err);
    if (rc != KAAL_OK) return rc;
    bind_ns(b, st);
    sqlite3_bind_int64(st, 2, before);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
    rc = exec_stmt(b, st, "cleanup", err);
    if (rc == KAAL_OK) *deleted = (size_t)sqlite3_changes(IMPL(b)->db);
    return rc;
}

/* ------------------------------------------------------------------ states */

static int sqlite_set_enabled(kaal_backend *b, const char *key, int enabled, kaal_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = stmt(b, Q_SET_ENABLED, &st, err);
    if (rc != KAAL_OK) return rc;
    bind_ns(b, st);
    bind_text(st, 2, key);
    sqlite3_bind_int(st, 3, enabled ? 1 : 0);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)time(NULL));
    return exec_stmt(b, st, "set_enabled", err);
}

static int sqlite_states(kaal_backend *b, kaal_state_rows *out, kaal_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = stmt(b, Q_STATES, &st, err);
    if (rc != KAAL_OK) return rc;
    bind_ns(b, st);
    return read_rows(b, st, kaal_read_state_row, out, "states", err);
}

/* ------------------------------------------------------------ delayed jobs */

static int sqlite_delayed_add(kaal_backend *b, const kaal_delayed_row *job, kaal_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = stmt(b, Q_DELAYED_ADD, &st, err);
    if (rc != KAAL_OK) return rc;
    bind_ns(b, st);
    bind_text(st, 2, job->job_id);
    sqlite3_bind_int64(st, 3, job->run_at_ms);
    bind_text(st, 4, job->job_class);
    bind_text(st, 5, job->queue);
    bind_text(st, 6, job->args ? job->args : "[]");
    sqlite3_bind_int64(st, 7, (sqlite3_int64)time(NULL));
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) return KAAL_OK;
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
        return kaal_error_set(err, KAAL_EDUPLICATE, "job_id", -1,
                              "delayed job %s is already pending", job->job_id);
    return fail(b, rc, "delayed_add", err);
}

static int delayed_cmp(const void *pa, const void *pb)
{
    const kaal_delayed_row *a = pa, *b = pb;
    if (a->run_at_ms != b->run_at_ms) return a->run_at_ms < b->run_at_ms ? -1 : 1;
    return strcmp(a->job_id ? a->job_id : "", b->job_id ? b->job_id : "");
}

static int sqlite_delayed_claim(kaal_backend *b, int64_t now_ms, size_t limit,
                                kaal_delayed_rows *out, kaal_error *err)
{
    sqlite3_stmt *st = NULL;
    size_t first = out->len;
    int rc;
    if (limit == 0) return KAAL_OK;
    /* BEGIN IMMEDIATE: the DELETE ... RETURNING below removes every selected
     * row on its first step; the transaction lets a failure while reading the
     * rows (out of memory) put them all back with ROLLBACK. */
    rc = exec_q(b, Q_BEGIN, "delayed_claim", err);
    if (rc != KAAL_OK) return rc;
    rc = stmt(b, Q_DELAYED_CLAIM, &st, err);
    if (rc == KAAL_OK) {
        bind_ns(b, st);
        sqlite3_bind_int64(st, 2, now_ms);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
        rc = read_rows(b, st, kaal_read_delayed_row, out, "delayed_claim", err);
    }
    if (rc == KAAL_OK) rc = exec_q(b, Q_COMMIT, "delayed_claim", err);
    if (rc != KAAL_OK) {
        if (b->connected) rollback(b);
        kaal_delayed_rows_truncate(out, first);
        return rc;
    }
    /* RETURNING order is unspecified: oldest run_at first. */
    if (out->len - first > 1)
        qsort(out->rows + first, out->len - first, sizeof *out->rows, delayed_cmp);
    return KAAL_OK;
}

static int sqlite_delayed_cancel(kaal_backend *b, const char *job_id, int *found, kaal_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = stmt(b, Q_DELAYED_CANCEL, &st, err);
    *found = 0;
    if (rc != KAAL_OK) return rc;
    bind_ns(b, st);
    bind_text(st, 2, job_id);
    rc = exec_stmt(b, st, "delayed_cancel", err);
    if (rc == KAAL_OK) *found = sqlite3_changes(IMPL(b)->db) > 0;
    return rc;
}

/* Runs q, whose one parameter is the namespace, for one integer: *out the
 * first column of its row (0 without one; no row is an error unless
 * none_ok). */
static int ns_int(kaal_backend *b, int q, int none_ok, const char *what, int64_t *out, kaal_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = stmt(b, q, &st, err);
    *out = 0;
    if (rc != KAAL_OK) return rc;
    bind_ns(b, st);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *out = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW || (none_ok && rc == SQLITE_DONE) ? KAAL_OK : fail(b, rc, what, err);
}

static int sqlite_delayed_count(kaal_backend *b, size_t *count, kaal_error *err)
{
    int64_t n;
    int rc = ns_int(b, Q_DELAYED_COUNT, 0, "delayed_count", &n, err);
    *count = (size_t)n;
    return rc;
}

static int sqlite_delayed_list(kaal_backend *b, size_t limit, kaal_delayed_rows *out,
                               kaal_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = stmt(b, Q_DELAYED_LIST, &st, err);
    if (rc != KAAL_OK) return rc;
    bind_ns(b, st);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
    return read_rows(b, st, kaal_read_delayed_row, out, "delayed_list", err);
}

/* ------------------------------------------------------------------- nodes */

static int sqlite_heartbeat(kaal_backend *b, const char *node, const char *info, int64_t now,
                            int64_t ttl, kaal_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = exec_q(b, Q_BEGIN, "heartbeat", err);
    if (rc != KAAL_OK) return rc;
    rc = stmt(b, Q_HEARTBEAT, &st, err);
    if (rc == KAAL_OK) {
        bind_ns(b, st);
        bind_text(st, 2, node);
        bind_text(st, 3, info);
        sqlite3_bind_int64(st, 4, now);
        rc = exec_stmt(b, st, "heartbeat", err);
    }
    if (rc == KAAL_OK && ttl > 0) { /* forget nodes silent for longer than ttl */
        rc = stmt(b, Q_NODES_EXPIRE, &st, err);
        if (rc == KAAL_OK) {
            bind_ns(b, st);
            sqlite3_bind_int64(st, 2, now - ttl);
            rc = exec_stmt(b, st, "heartbeat", err);
        }
    }
    if (rc == KAAL_OK) rc = exec_q(b, Q_COMMIT, "heartbeat", err);
    if (rc != KAAL_OK && b->connected) rollback(b);
    return rc;
}

static int sqlite_nodes(kaal_backend *b, int64_t since, kaal_node_rows *out, kaal_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = stmt(b, Q_NODES, &st, err);
    if (rc != KAAL_OK) return rc;
    bind_ns(b, st);
    sqlite3_bind_int64(st, 2, since);
    return read_rows(b, st, kaal_read_node_row, out, "nodes", err);
}

static int sqlite_dispatches_before(kaal_backend *b, const kaal_dispatch_query *q, int64_t before_fire,
                                    const char *before_key, kaal_dispatch_rows *out, kaal_error *err)
{
    return dispatch_page(b, q, before_fire, before_key, out, err);
}

static int sqlite_delayed_list_after(kaal_backend *b, int64_t after_ms, const char *after_id, size_t limit,
                                     kaal_delayed_rows *out, kaal_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc;
    if (limit == 0) return KAAL_OK;
    rc = stmt(b, Q_DELAYED_LIST_AFTER, &st, err);
    if (rc != KAAL_OK) return rc;
    bind_ns(b, st);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
    sqlite3_bind_int64(st, 3, after_ms);
    bind_text(st, 4, after_id);
    return read_rows(b, st, kaal_read_delayed_row, out, "delayed_list", err);
}

/* -------------------------------------------------------- stored schedules */

static int sched_bump(kaal_backend *b, int64_t *version, kaal_error *err)
{
    return ns_int(b, Q_SCHED_BUMP, 0, "schedules", version, err);
}

static int sched_version(kaal_backend *b, int64_t *version, kaal_error *err)
{
    return ns_int(b, Q_SCHED_VERSION, 1, "schedules", version, err);
}

static int sched_write(kaal_backend *b, const kaal_schedule_row *row, const char *key, int64_t now, int *found,
                       int64_t *version, kaal_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = exec_q(b, Q_BEGIN, "schedules", err);
    if (rc != KAAL_OK) return rc;
    rc = sched_bump(b, version, err);
    if (rc == KAAL_OK) rc = stmt(b, row ? Q_SCHED_UPSERT : Q_SCHED_REMOVE, &st, err);
    if (rc == KAAL_OK) {
        bind_ns(b, st);
        if (row) {
            bind_text(st, 2, row->key);
            bind_text(st, 3, row->cron);
            bind_text(st, 4, row->job_class);
            bind_text(st, 5, row->args ? row->args : "[]");
            bind_text(st, 6, row->kwargs ? row->kwargs : "{}");
            bind_text(st, 7, row->time_zone);
            bind_text(st, 8, row->queue);
            sqlite3_bind_int(st, 9, row->enabled ? 1 : 0);
            sqlite3_bind_int64(st, 10, *version);
            sqlite3_bind_int64(st, 11, now);
        } else {
            bind_text(st, 2, key);
            sqlite3_bind_int64(st, 3, *version);
            sqlite3_bind_int64(st, 4, now);
        }
        rc = exec_stmt(b, st, "schedules", err);
    }
    if (rc == KAAL_OK && found) *found = sqlite3_changes(IMPL(b)->db) > 0;
    if (rc == KAAL_OK && found && !*found) {
        rollback(b); /* nothing removed: the counter stays */
        return sched_version(b, version, err);
    }
    if (rc == KAAL_OK) rc = exec_q(b, Q_COMMIT, "schedules", err);
    if (rc != KAAL_OK && b->connected) rollback(b);
    return rc;
}

static int sqlite_sched_upsert(kaal_backend *b, const kaal_schedule_row *row, int64_t now, int64_t *version,
                               kaal_error *err)
{
    return sched_write(b, row, NULL, now, NULL, version, err);
}

static int sqlite_sched_remove(kaal_backend *b, const char *key, int64_t now, int *found, int64_t *version,
                               kaal_error *err)
{
    *found = 0;
    return sched_write(b, NULL, key, now, found, version, err);
}

static int sqlite_sched_get(kaal_backend *b, const char *key, kaal_schedule_rows *out, kaal_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = stmt(b, Q_SCHED_GET, &st, err);
    if (rc != KAAL_OK) return rc;
    bind_ns(b, st);
    bind_text(st, 2, key);
    return read_rows(b, st, kaal_read_schedule_row, out, "schedules", err);
}

static int sqlite_sched_list(kaal_backend *b, const char *after, size_t limit, kaal_schedule_rows *out,
                             kaal_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = stmt(b, after ? Q_SCHED_LIST_AFTER : Q_SCHED_LIST, &st, err);
    if (rc != KAAL_OK) return rc;
    bind_ns(b, st);
    if (after) bind_text(st, 2, after);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
    return read_rows(b, st, kaal_read_schedule_row, out, "schedules", err);
}

static int sqlite_sched_changes(kaal_backend *b, int64_t since, size_t limit, kaal_schedule_rows *out,
                                int64_t *version, kaal_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sched_version(b, version, err);
    if (rc != KAAL_OK || *version <= since) return rc;
    rc = stmt(b, Q_SCHED_CHANGES, &st, err);
    if (rc != KAAL_OK) return rc;
    bind_ns(b, st);
    sqlite3_bind_int64(st, 2, since);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
    return read_rows(b, st, kaal_read_schedule_row, out, "schedules", err);
}

static int sqlite_sched_count(kaal_backend *b, size_t *count, kaal_error *err)
{
    int64_t n;
    int rc = ns_int(b, Q_SCHED_COUNT, 0, "schedules", &n, err);
    *count = (size_t)n;
    return rc;
}

static const kaal_schedule_ops sqlite_schedule_ops = {
    sqlite_sched_upsert, sqlite_sched_remove, sqlite_sched_get,
    sqlite_sched_list,   sqlite_sched_changes, sqlite_sched_count,
};

const kaal_backend_vtable kaal_backend_sqlite = KAAL_BACKEND_VTABLE("sqlite", sqlite);

#endif /* KAAL_HAVE_SQLITE */
