/* kaal: the PostgreSQL backend on libpq (PostgreSQL 9.5 or newer: it needs
 * ON CONFLICT and FOR UPDATE SKIP LOCKED).
 *
 * Pure C, no ruby.h: every function here runs WITHOUT the GVL (the binding
 * releases it around each vtable call), so it uses malloc/free only.
 *
 * Session: PQconnectStartParams with keyword arrays (the password is never
 * put into a conninfo string), application_name "kaal", then SET
 * statement_timeout to the command timeout. The connection is non-blocking:
 * the handshake (PQconnectPoll), sending (PQflush) and every result are
 * waited for with kaal_wait on the socket against a client-side deadline
 * (statement_timeout + a grace period), so a server that stops answering
 * cannot hang a call forever, and an interrupt from Ruby ends the wait at
 * once (the session is then dropped, as after a timeout).
 *
 * Statements: every value is a bound parameter. The hot statements are
 * prepared once per connection on first use (named "kaal_<n>"). A claim batch
 * is ONE statement whatever its size:
 *
 *   INSERT INTO kaal_dispatches (...)
 *   SELECT $1, k, f, 'claimed', ... FROM unnest($2::text[], $3::bigint[]) AS t(k, f)
 *   ON CONFLICT DO NOTHING RETURNING job_key, fire_time
 *
 * with the keys and fire times sent as array literals built here (every
 * element double-quoted, '"' and '\' backslash-escaped), sorted by (fire
 * time, key) so that concurrent claimers lock rows in the same order and
 * never deadlock each other (a deadlock victim is retried anyway). Returned
 * rows are mapped back to the input pairs by binary search.
 *
 * Delayed jobs are claimed with one DELETE ... WHERE (namespace, job_id) IN
 * (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING ..., so concurrent claimers
 * never wait for each other and each job goes to exactly one of them.
 *
 * Errors: a broken connection (PQstatus CONNECTION_BAD, SQLSTATE class 08,
 * 57P01-57P03, or the client deadline passing) closes the session, sets
 * b->connected = 0 and returns KAAL_ECONNECT; the binding reconnects on the
 * next call. A unique violation (23505) on delayed_add returns
 * KAAL_EDUPLICATE. Anything else is KAAL_EBACKEND with the server's primary
 * message and SQLSTATE. libpq's messages never contain the password.
 *
 * Fork: discard() points the libpq socket at /dev/null (dup2) before
 * PQfinish, so the Terminate message PQfinish sends goes nowhere and the
 * parent's session, which shares the original socket, is untouched. */
#include "backend.h"
#include "schema.h"

#ifdef KAAL_HAVE_POSTGRES

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_COMMAND_TIMEOUT_MS 10000
/* The client waits this much longer than statement_timeout, so a slow
 * statement normally ends with the server's clean error, not a dropped
 * connection. */
#define CLIENT_GRACE_MS 2000
/* client_connection_check_interval (text: it is spliced into a SET). */
#define ORPHAN_CHECK_MS "100"

/* Prepared statements ($1 is always the namespace). */
enum {
    Q_CLAIM,
    Q_RECORD,
    Q_CLEANUP,
    Q_SET_ENABLED,
    Q_STATES,
    Q_DELAYED_ADD,
    Q_DELAYED_CLAIM,
    Q_DELAYED_CANCEL,
    Q_DELAYED_COUNT,
    Q_DELAYED_LIST,
    Q_HEARTBEAT,
    Q_NODES,
    Q_DELAYED_LIST_AFTER,
    Q_SCHED_VERSION,
    Q_SCHED_UPSERT,
    Q_SCHED_REMOVE,
    Q_SCHED_GET,
    Q_SCHED_LIST,
    Q_SCHED_LIST_AFTER,
    Q_SCHED_CHANGES,
    Q_SCHED_COUNT,
    Q_LATEST_FIRES,
    Q_RECORD_MANY,
    Q_COUNT
};

#define SCHED_COLS \
    "job_key, cron, job_class, args, kwargs, time_zone, queue, enabled::int, deleted::int, version, updated_at"
/* The namespace's counter, bumped by the statement that changes a schedule
 * first (the row lock on it is held to the commit, so changes commit in
 * version order, and every writer locks in the same order). */
#define SCHED_BUMP(FROM_WHERE)                                                              \
    "WITH v AS (INSERT INTO kaal_schedule_versions (namespace, version) SELECT $1::text, 1" FROM_WHERE \
    " ON CONFLICT (namespace) DO UPDATE SET version = kaal_schedule_versions.version + 1"     \
    " RETURNING version) "

static const char *const SQL[Q_COUNT] = {
    [Q_CLAIM] =
        "INSERT INTO kaal_dispatches"
        " (namespace, job_key, fire_time, status, node, claimed_at, updated_at)"
        " SELECT $1, t.k, t.f, 'claimed', $4, $5, $5"
        " FROM unnest($2::text[], $3::bigint[]) AS t(k, f)"
        " ON CONFLICT DO NOTHING RETURNING job_key, fire_time",
    [Q_RECORD] =
        "INSERT INTO kaal_dispatches"
        " (namespace, job_key, fire_time, status, node, error, claimed_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $7)"
        " ON CONFLICT (namespace, job_key, fire_time) DO UPDATE SET"
        " status = EXCLUDED.status, node = COALESCE(EXCLUDED.node, kaal_dispatches.node),"
        " error = EXCLUDED.error, updated_at = EXCLUDED.updated_at",
    [Q_CLEANUP] =
        "DELETE FROM kaal_dispatches WHERE ctid = ANY(ARRAY("
        " SELECT ctid FROM kaal_dispatches WHERE namespace = $1 AND fire_time < $2"
        " ORDER BY fire_time LIMIT $3))",
    [Q_SET_ENABLED] =
        "INSERT INTO kaal_job_states (namespace, job_key, enabled, updated_at)"
        " VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (namespace, job_key) DO UPDATE SET"
        " enabled = EXCLUDED.enabled, updated_at = EXCLUDED.updated_at",
    [Q_STATES] =
        "SELECT job_key, enabled::int FROM kaal_job_states WHERE namespace = $1"
        " ORDER BY job_key COLLATE \"C\"",
    [Q_DELAYED_ADD] =
        "INSERT INTO kaal_delayed_jobs"
        " (namespace, job_id, run_at_ms, job_class, queue, args, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
    [Q_DELAYED_CLAIM] =
        "WITH claimed AS ("
        " DELETE FROM kaal_delayed_jobs WHERE (namespace, job_id) IN ("
        "  SELECT namespace, job_id FROM kaal_delayed_jobs"
        "  WHERE namespace = $1 AND run_at_ms <= $2"
        "  ORDER BY run_at_ms, job_id COLLATE \"C\" LIMIT $3 FOR UPDATE SKIP LOCKED)"
        " RETURNING job_id, run_at_ms, job_class, queue, args)"
        " SELECT job_id, run_at_ms, job_class, queue, args FROM claimed"
        " ORDER BY run_at_ms, job_id COLLATE \"C\"",
    [Q_DELAYED_CANCEL] = "DELETE FROM kaal_delayed_jobs WHERE namespace = $1 AND job_id = $2",
    [Q_DELAYED_COUNT] = "SELECT COUNT(*) FROM kaal_delayed_jobs WHERE namespace = $1",
    [Q_DELAYED_LIST] =
        "SELECT job_id, run_at_ms, job_class, queue, args FROM kaal_delayed_jobs"
        " WHERE namespace = $1 ORDER BY run_at_ms, job_id COLLATE \"C\" LIMIT $2",
    [Q_DELAYED_LIST_AFTER] =
        "SELECT job_id, run_at_ms, job_class, queue, args FROM kaal_delayed_jobs"
        " WHERE namespace = $1 AND (run_at_ms > $3::bigint OR (run_at_ms = $3::bigint AND job_id COLLATE \"C\" > $4))"
        " ORDER BY run_at_ms, job_id COLLATE \"C\" LIMIT $2",
    [Q_RECORD_MANY] =
        "INSERT INTO kaal_dispatches"
        " (namespace, job_key, fire_time, status, node, error, claimed_at, updated_at)"
        " SELECT $1, t.k, t.f, t.s, $5, t.e, $6, $6"
        " FROM unnest($2::text[], $3::bigint[], $4::text[], $7::text[]) AS t(k, f, s, e)"
        " ON CONFLICT (namespace, job_key, fire_time) DO UPDATE SET"
        " status = EXCLUDED.status, node = COALESCE(EXCLUDED.node, kaal_dispatches.node),"
        " error = EXCLUDED.error, updated_at = EXCLUDED.updated_at",
    /* One index probe per key (the primary key's order), numbered so the
     * answer needs no key comparison. */
    [Q_LATEST_FIRES] =
        "SELECT t.i, (SELECT d.fire_time FROM kaal_dispatches d"
        " WHERE d.namespace = $1 AND d.job_key = t.k ORDER BY d.fire_time DESC LIMIT 1)"
        " FROM unnest($2::text[]) WITH ORDINALITY AS t(k, i)",
    /* The stale-node DELETE spares the node being written, so the two parts
     * of this one statement never touch the same row. */
    [Q_HEARTBEAT] =
        "WITH gone AS (DELETE FROM kaal_nodes WHERE namespace = $1 AND $5::bigint > 0"
        " AND last_seen < $4::bigint - $5::bigint AND node <> $2)"
        " INSERT INTO kaal_nodes (namespace, node, info, last_seen) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (namespace, node) DO UPDATE SET"
        " info = EXCLUDED.info, last_seen = EXCLUDED.last_seen",
    [Q_NODES] =
        "SELECT node, info, last_seen FROM kaal_nodes"
        " WHERE namespace = $1 AND last_seen >= $2 ORDER BY node COLLATE \"C\"",
    [Q_SCHED_VERSION] = "SELECT version FROM kaal_schedule_versions WHERE namespace = $1",
    [Q_SCHED_UPSERT] =
        SCHED_BUMP("")
        "INSERT INTO kaal_schedules (namespace, " KAAL_SCHEDULE_COLS ")"
        " SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9::boolean, false, v.version, $10::bigint FROM v"
        " ON CONFLICT (namespace, job_key) DO UPDATE SET cron = EXCLUDED.cron,"
        " job_class = EXCLUDED.job_class, args = EXCLUDED.args, kwargs = EXCLUDED.kwargs,"
        " time_zone = EXCLUDED.time_zone, queue = EXCLUDED.queue, enabled = EXCLUDED.enabled,"
        " deleted = false, version = EXCLUDED.version, updated_at = EXCLUDED.updated_at"
        " RETURNING version",
    [Q_SCHED_REMOVE] =
        SCHED_BUMP("")
        "UPDATE kaal_schedules s SET deleted = true, version = v.version, updated_at = $3::bigint FROM v"
        " WHERE s.namespace = $1 AND s.job_key = $2 AND NOT s.deleted RETURNING s.version",
    [Q_SCHED_GET] =
        "SELECT " SCHED_COLS " FROM kaal_schedules WHERE namespace = $1 AND job_key = $2 AND NOT deleted",
    /* Pages by key: without and with a cursor (an "IS NULL OR" would keep
     * the planner from starting the scan at the cursor). */
    [Q_SCHED_LIST] =
        "SELECT " SCHED_COLS " FROM kaal_schedules WHERE namespace = $1 AND NOT deleted"
        " ORDER BY job_key COLLATE \"C\" LIMIT $2",
    [Q_SCHED_LIST_AFTER] =
        "SELECT " SCHED_COLS " FROM kaal_schedules WHERE namespace = $1 AND NOT deleted"
        " AND job_key COLLATE \"C\" > $2 ORDER BY job_key COLLATE \"C\" LIMIT $3",
    [Q_SCHED_CHANGES] =
        "SELECT " SCHED_COLS " FROM kaal_schedules WHERE namespace = $1 AND version > $2::bigint"
        " ORDER BY version LIMIT $3",
    [Q_SCHED_COUNT] = "SELECT COUNT(*) FROM kaal_schedules WHERE namespace = $1 AND NOT deleted",
};

typedef struct pg_impl {
    PGconn *conn;
    unsigned prepared; /* bit q set: SQL[q] is prepared on this connection */
    int timeout_ms;    /* statement_timeout; the client waits CLIENT_GRACE_MS more */
    char sqlstate[6];  /* of the last failed statement ("" when none) */
} pg_impl;

#define IMPL(b) ((pg_impl *)(b)->impl)

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */

static int oom(kaal_error *err)
{
    return kaal_error_set(err, KAAL_ENOMEM, NULL, -1, "postgres: out of memory");
}

static int check_opt(const char *what, const char *s, kaal_error *err)
{
    return kaal_check_varchar_opt("postgres", what, s, err);
}

static char *dup_value(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col)) return NULL;
    return kaal_strndup(PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
}

static int64_t int_value(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : (int64_t)strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* The result rows of r through the shared row readers (backend.h). */
typedef struct pg_row {
    const PGresult *r;
    int row;
} pg_row;

static char *pg_text(const void *src, int col)
{
    const pg_row *x = src;
    return dup_value(x->r, x->row, col);
}

static const char *pg_view(const void *src, int col, size_t *len)
{
    const pg_row *x = src;
    if (PQgetisnull(x->r, x->row, col)) {
        *len = 0;
        return NULL;
    }
    *len = (size_t)PQgetlength(x->r, x->row, col);
    return PQgetvalue(x->r, x->row, col);
}

static int64_t pg_num(const void *src, int col)
{
    const pg_row *x = src;
    return int_value(x->r, x->row, col);
}

static int pg_null(const void *src, int col)
{
    const pg_row *x = src;
    return PQgetisnull(x->r, x->row, col);
}

static int read_rows(const PGresult *r, kaal_row_reader read, void *out, kaal_error *err)
{
    pg_row x;
    kaal_columns c;
    c.text = pg_text;
    c.view = pg_view;
    c.is_null = pg_null;
    c.num = pg_num;
    c.src = &x;
    x.r = r;
    for (x.row = 0; x.row < PQntuples(r); x.row++)
        if (read(out, &c) != KAAL_OK) return oom(err);
    return KAAL_OK;
}

/* One array element, double-quoted with '"' and '\' escaped. */
static void sb_quoted(kaal_buf *o, const char *s, size_t n)
{
    size_t i, from = 0;
    kaal_buf_put(o, "\"", 1);
    for (i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            kaal_buf_put(o, s + from, i - from);
            kaal_buf_put(o, "\\", 1);
            from = i;
        }
    }
    kaal_buf_put(o, s + from, n - from);
    kaal_buf_put(o, "\"", 1);
}

/* Array literals ("{a,b}") built side by side, one element of each per
 * row: arrays_next starts the next element of the n arrays, arrays_close
 * ends them (0 when one ran out of memory), arrays_free frees them. */
static void arrays_next(kaal_buf *a, size_t n)
{
    size_t k;
    for (k = 0; k < n; k++) kaal_buf_put(&a[k], a[k].len ? "," : "{", 1);
}

static int arrays_close(kaal_buf *a, size_t n)
{
    size_t k;
    int ok = 1;
    for (k = 0; k < n; k++) {
        kaal_buf_put(&a[k], a[k].len ? "}" : "{}", a[k].len ? 1 : 2);
        ok = ok && !a[k].oom;
    }
    return ok;
}

static void arrays_free(kaal_buf *a, size_t n)
{
    size_t k;
    for (k = 0; k < n; k++) free(a[k].p);
}

/* ------------------------------------------------------------------ */
/* Session                                                             */

static void quiet_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message; /* "relation already exists, skipping" and friends */
}

static void drop_conn(kaal_backend *b)
{
    pg_impl *s = IMPL(b);
    if (s && s->conn) {
        PQfinish(s->conn);
        s->conn = NULL;
    }
    if (s) s->prepared = 0;
    b->connected = 0;
}

/* Copy libpq's message (first line, trailing newline dropped). */
static void first_line(char *dst, size_t cap, const char *msg)
{
    size_t n = 0;
    if (!msg) msg = "";
    if (strncmp(msg, "FATAL:  ", 8) == 0 || strncmp(msg, "ERROR:  ", 8) == 0) msg += 8;
    while (msg[n] && msg[n] != '\n' && n + 1 < cap) n++;
    memcpy(dst, msg, n);
    dst[n] = '\0';
}

static int lost(kaal_backend *b, kaal_error *err, const char *what, const char *detail)
{
    char line[200];
    if (!detail) {
        pg_impl *s = IMPL(b);
        first_line(line, sizeof line,
                   s && s->conn ? PQerrorMessage(s->conn) : "connection lost");
        detail = line[0] ? line : "connection lost";
    }
    kaal_error_set(err, KAAL_ECONNECT, NULL, -1, "postgres: %s: %s", what, detail);
    drop_conn(b);
    return KAAL_ECONNECT;
}

static int connection_sqlstate(const char *st)
{
    if (!st) return 0;
    return strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0 || strcmp(st, "57P02") == 0 ||
           strcmp(st, "57P03") == 0;
}

/* Turn a failed result into a status (and clear it). */
static int result_error(kaal_backend *b, PGresult *r, kaal_error *err, const char *what)
{
    pg_impl *s = IMPL(b);
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char line[200];
    int rc;

    if (s) snprintf(s->sqlstate, sizeof s->sqlstate, "%s", st ? st : "");
    if (!r || !s->conn || PQstatus(s->conn) != CONNECTION_OK || connection_sqlstate(st)) {
        if (msg) first_line(line, sizeof line, msg);
        PQclear(r);
        return lost(b, err, what, msg ? line : NULL);
    }
    first_line(line, sizeof line, msg ? msg : PQresultErrorMessage(r));
    if (st && strcmp(st, "23505") == 0) {
        rc = kaal_error_set(err, KAAL_EDUPLICATE, NULL, -1, "postgres: %s: %s", what, line);
    } else if (st && strcmp(st, "42P01") == 0) {
        rc = kaal_error_set(err, KAAL_EBACKEND, NULL, -1,
                            "postgres: %s: %s (run `kaal migrate` to create kaal's tables)", what,
                            line);
    } else {
        rc = kaal_error_set(err, KAAL_EBACKEND, NULL, -1, "postgres: %s: %s [%s]", what, line,
                            st ? st : "?");
    }
    PQclear(r);
    return rc;
}

/* Wait for the statement just sent and return its result (the first error,
 * or the last result). NULL with *rc set on failure. */
/* A wait that ended early (timeout, interrupt): the session goes. */
static int wait_failed(kaal_backend *b, int rc)
{
    drop_conn(b);
    return rc;
}

/* Sends what libpq has buffered (the connection is non-blocking). */
static int flush_out(kaal_backend *b, int64_t deadline, kaal_error *err, const char *what)
{
    PGconn *c = IMPL(b)->conn;
    int f, rc;
    while ((f = PQflush(c)) == 1) {
        short ev = 0;
        rc = kaal_wait(b, PQsocket(c), POLLIN | POLLOUT, deadline, &ev, what, err);
        if (rc != KAAL_OK) return wait_failed(b, rc);
        if ((ev & POLLIN) && !PQconsumeInput(c)) return lost(b, err, what, NULL);
    }
    return f == 0 ? KAAL_OK : lost(b, err, what, NULL);
}

static PGresult *wait_result(kaal_backend *b, kaal_error *err, const char *what, int *rc)
{
    pg_impl *s = IMPL(b);
    PGconn *c = s->conn;
    int64_t deadline = kaal_mono_ms() + s->timeout_ms + CLIENT_GRACE_MS;
    PGresult *keep = NULL, *r;

    if ((*rc = flush_out(b, deadline, err, what)) != KAAL_OK) return NULL;
    for (;;) {
        while (PQisBusy(c)) {
            *rc = kaal_wait(b, PQsocket(c), POLLIN, deadline, NULL, what, err);
            if (*rc != KAAL_OK) {
                PQclear(keep);
                wait_failed(b, *rc);
                return NULL;
            }
            if (!PQconsumeInput(c)) {
                PQclear(keep);
                *rc = lost(b, err, what, NULL);
                return NULL;
            }
        }
        r = PQgetResult(c);
        if (!r) break;
        if (!keep) {
            keep = r;
        } else {
            ExecStatusType ks = PQresultStatus(keep);
            if (ks == PGRES_FATAL_ERROR || ks == PGRES_BAD_RESPONSE) {
                PQclear(r);
            } else {
                PQclear(keep);
                keep = r;
            }
        }
    }
    if (!keep || PQresultStatus(keep) == PGRES_FATAL_ERROR ||
        PQresultStatus(keep) == PGRES_BAD_RESPONSE || PQresultStatus(keep) == PGRES_NONFATAL_ERROR) {
        *rc = result_error(b, keep, err, what);
        return NULL;
    }
    *rc = KAAL_OK;
    return keep;
}

static int usable(kaal_backend *b, kaal_error *err, const char *what)
{
    pg_impl *s = IMPL(b);
    if (!s || !s->conn || PQstatus(s->conn) != CONNECTION_OK) {
        return lost(b, err, what, s && s->conn ? NULL : "not connected");
    }
    return KAAL_OK;
}

/* Run prepared statement q with text parameters (NULL = SQL NULL). */
static PGresult *run(kaal_backend *b, int q, int n, const char *const *vals, const int *lens,
                     kaal_error *err, const char *what, int *rc)
{
    pg_impl *s = IMPL(b);
    char name[16];
    PGresult *r;

    if ((*rc = usable(b, err, what)) != KAAL_OK) return NULL;
    snprintf(name, sizeof name, "kaal_%d", q);
    if (!(s->prepared & (1u << q))) {
        if (!PQsendPrepare(s->conn, name, SQL[q], 0, NULL)) {
            *rc = result_error(b, NULL, err, what);
            return NULL;
        }
        r = wait_result(b, err, what, rc);
        if (!r) return NULL;
        PQclear(r);
        s->prepared |= 1u << q;
    }
    if (!PQsendQueryPrepared(s->conn, name, n, vals, lens, NULL, 0)) {
        *rc = result_error(b, NULL, err, what);
        return NULL;
    }
    return wait_result(b, err, what, rc);
}

/* Run SQL text once (not prepared), text parameters. */
static PGresult *run_sql(kaal_backend *b, const char *sql, int n, const char *const *vals,
                         kaal_error *err, const char *what, int *rc)
{
    pg_impl *s = IMPL(b);
    if ((*rc = usable(b, err, what)) != KAAL_OK) return NULL;
    if (n == 0 ? !PQsendQuery(s->conn, sql)
               : !PQsendQueryParams(s->conn, sql, n, NULL, vals, NULL, NULL, 0)) {
        *rc = result_error(b, NULL, err, what);
        return NULL;
    }
    return wait_result(b, err, what, rc);
}

/* Runs prepared statement q for one integer: *out the first column of its
 * first row (0 for no row or NULL). */
static int run_int(kaal_backend *b, int q, int n, const char *const *vals, const char *what, int64_t *out,
                   kaal_error *err)
{
    int rc;
    PGresult *r = run(b, q, n, vals, NULL, err, what, &rc);
    *out = 0;
    if (!r) return rc;
    if (PQntuples(r) > 0) *out = int_value(r, 0, 0);
    PQclear(r);
    return KAAL_OK;
}

static int exec_q(kaal_backend *b, int q, int n, const char *const *vals, kaal_error *err,
                  const char *what, long *affected)
{
    int rc;
    PGresult *r = run(b, q, n, vals, NULL, err, what, &rc);
    if (!r) return rc;
    if (affected) *affected = strtol(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return KAAL_OK;
}

/* Run prepared statement q and append its rows to out with read. */
static int query_rows(kaal_backend *b, int q, int n, const char *const *vals, const char *what,
                      kaal_row_reader read, void *out, kaal_error *err)
{
    int rc;
    PGresult *r = run(b, q, n, vals, NULL, err, what, &rc);
    if (!r) return rc;
    rc = read_rows(r, read, out, err);
    PQclear(r);
    return rc;
}

/* The directory of a socket path given as ".../.s.PGSQL.<port>", else the
 * path itself (libpq wants the directory). */
static char *socket_dir(const char *path, int *port)
{
    const char *slash = strrchr(path, '/');
    if (slash && strncmp(slash + 1, ".s.PGSQL.", 9) == 0) {
        if (*port <= 0) *port = atoi(slash + 10);
        return kaal_strndup(path, slash == path ? 1 : (size_t)(slash - path));
    }
    return kaal_strdup(path);
}

/* Drives PQconnectPoll to the end, waiting on the socket (connect timeout
 * cto ms, interruptible); leaves the connection non-blocking. */
static int handshake(kaal_backend *b, int cto, const char *where, kaal_error *err)
{
    PGconn *c = IMPL(b)->conn;
    int64_t deadline = kaal_mono_ms() + cto;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    char line[200];
    int rc;

    while (PQstatus(c) != CONNECTION_BAD && st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        rc = kaal_wait(b, PQsocket(c), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline,
                       NULL, "connect", err);
        if (rc == KAAL_EINTERRUPTED) return wait_failed(b, rc);
        if (rc != KAAL_OK) {
            drop_conn(b);
            return kaal_error_set(err, KAAL_ECONNECT, NULL, -1,
                                  "postgres: cannot connect to %s: timed out after %d ms", where,
                                  cto);
        }
        st = PQconnectPoll(c);
    }
    if (PQstatus(c) != CONNECTION_OK || PQsetnonblocking(c, 1) != 0) {
        first_line(line, sizeof line, PQerrorMessage(c));
        kaal_error_set(err, KAAL_ECONNECT, NULL, -1, "postgres: cannot connect to %s: %s", where,
                       line);
        drop_conn(b);
        return KAAL_ECONNECT;
    }
    return KAAL_OK;
}

/* Starts connecting s->conn: kaal's settings, then the user's conninfo
 * (handed to libpq intact: it parses multi-host, TLS and every other setting
 * itself) or the parameters one by one. where: "host:port" or "unix:dir"
 * for messages. */
static int start_conn(kaal_backend *b, int cto, char *where, size_t wsize, kaal_error *err)
{
    const kaal_conn_params *p = &b->params;
    pg_impl *s = IMPL(b);
    const char *keys[16], *vals[16];
    char port_s[16], cto_s[16];
    char *sock = NULL;
    int n = 0, port = p->port;

    /* libpq takes whole seconds and treats 1 as 2. */
    snprintf(cto_s, sizeof cto_s, "%d", cto < 2000 ? 2 : (cto + 999) / 1000);
    if (p->conninfo && *p->conninfo) {
        /* kaal's defaults come before it so its own settings win;
         * client_encoding comes after. */
        keys[n] = "connect_timeout", vals[n++] = cto_s;
        keys[n] = "application_name", vals[n++] = "kaal";
        keys[n] = "keepalives", vals[n++] = "1";
        keys[n] = "dbname", vals[n++] = p->conninfo;
        keys[n] = "client_encoding", vals[n++] = "UTF8";
        keys[n] = NULL, vals[n] = NULL;
        s->conn = PQconnectStartParams(keys, vals, 1);
        if (!s->conn) return oom(err);
        snprintf(where, wsize, "%s:%s", PQhost(s->conn) ? PQhost(s->conn) : "?",
                 PQport(s->conn) && *PQport(s->conn) ? PQport(s->conn) : "5432");
        return KAAL_OK;
    }
    if (p->socket && *p->socket) {
        sock = socket_dir(p->socket, &port);
        if (!sock) return oom(err);
        keys[n] = "host", vals[n++] = sock;
        snprintf(where, wsize, "unix:%s", sock);
    } else {
        const char *host = p->host && *p->host ? p->host : "127.0.0.1";
        keys[n] = "host", vals[n++] = host;
        snprintf(where, wsize, "%s:%d", host, port > 0 ? port : 5432);
    }
    if (port > 0) {
        snprintf(port_s, sizeof port_s, "%d", port);
        keys[n] = "port", vals[n++] = port_s;
    }
    if (p->database && *p->database) keys[n] = "dbname", vals[n++] = p->database;
    if (p->username && *p->username) keys[n] = "user", vals[n++] = p->username;
    if (p->password && *p->password) keys[n] = "password", vals[n++] = p->password;
    if (p->sslmode && *p->sslmode) {
        const char *m = p->sslmode;
        if (strcmp(m, "required") == 0 || strcmp(m, "true") == 0) m = "require";
        keys[n] = "sslmode", vals[n++] = m;
    }
    keys[n] = "connect_timeout", vals[n++] = cto_s;
    keys[n] = "application_name", vals[n++] = "kaal";
    keys[n] = "keepalives", vals[n++] = "1";
    keys[n] = "client_encoding", vals[n++] = "UTF8";
    keys[n] = NULL, vals[n] = NULL;
    s->conn = PQconnectStartParams(keys, vals, 0);
    free(sock);
    return s->conn ? KAAL_OK : oom(err);
}

/* A session that just connected: a server kaal can use, and its statement
 * timeout (qto ms). */
static int setup_session(kaal_backend *b, int qto, const char *where, kaal_error *err)
{
    pg_impl *s = IMPL(b);
    char set[128];
    PGresult *r;
    int rc;
    PQsetNoticeProcessor(s->conn, quiet_notices, NULL);
    if (PQserverVersion(s->conn) < 90500) {
        kaal_error_set(err, KAAL_EBACKEND, NULL, -1,
                       "postgres: server %s is version %d; kaal needs PostgreSQL 9.5 or newer",
                       where, PQserverVersion(s->conn));
        drop_conn(b);
        return KAAL_EBACKEND;
    }
    b->connected = 1;
    /* A SET rather than the startup "options" parameter, which PgBouncer
     * refuses. From PostgreSQL 14 on, the server also checks every
     * ORPHAN_CHECK_MS whether the client went away during a statement: a
     * call interrupted in Ruby drops its session, and the statement it left
     * (say a claim waiting on a row lock) is then rolled back instead of
     * winning pairs nobody will hand off. */
    snprintf(set, sizeof set, "SET statement_timeout = %d%s", qto,
             PQserverVersion(s->conn) >= 140000 ? "; SET client_connection_check_interval = "
                                                  ORPHAN_CHECK_MS
                                                : "");
    r = run_sql(b, set, 0, NULL, err, "connect", &rc);
    if (!r) {
        if (rc == KAAL_EINTERRUPTED) return rc;
        drop_conn(b);
        return rc == KAAL_ECONNECT ? rc : KAAL_ECONNECT;
    }
    PQclear(r);
    return KAAL_OK;
}

static int pg_connect(kaal_backend *b, kaal_error *err)
{
    const kaal_conn_params *p = &b->params;
    pg_impl *s = IMPL(b);
    int cto = p->connect_timeout_ms > 0 ? p->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    int qto = p->command_timeout_ms > 0 ? p->command_timeout_ms : DEFAULT_COMMAND_TIMEOUT_MS;
    char where[300];
    int rc;

    rc = kaal_check_varchar("postgres", "namespace", b->ns, strlen(b->ns), err);
    if (rc != KAAL_OK) return rc;
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return oom(err);
        b->impl = s;
    }
    drop_conn(b);
    s->timeout_ms = qto;
    if ((rc = start_conn(b, cto, where, sizeof where, err)) != KAAL_OK) return rc;
    if ((rc = handshake(b, cto, where, err)) != KAAL_OK) return rc;
    return setup_session(b, qto, where, err);
}

static void pg_close(kaal_backend *b)
{
    drop_conn(b);
    free(b->impl);
    b->impl = NULL;
}

/* In a forked child the libpq socket is shared with the parent. PQfinish
 * would send a Terminate message on it and end the PARENT's session, so the
 * descriptor is first pointed at /dev/null: the Terminate goes nowhere,
 * PQfinish frees libpq's memory and closes only our /dev/null copy. */
static void pg_discard(kaal_backend *b)
{
    pg_impl *s = IMPL(b);
    if (s && s->conn) {
        if (kaal_silence_inherited_socket(PQsocket(s->conn))) PQfinish(s->conn);
        s->conn = NULL;
    }
    free(s);
    b->impl = NULL;
    b->connected = 0;
}

/* *out: the integer the one-row query sql returns (0 for no row or NULL). */
static int pg_scalar(kaal_backend *b, const char *sql, const char *arg, int64_t *out, kaal_error *err)
{
    int rc;
    PGresult *r = run_sql(b, sql, arg ? 1 : 0, &arg, err, "schema version", &rc);
    *out = 0;
    if (!r) return rc;
    if (PQntuples(r) > 0) *out = int_value(r, 0, 0);
    PQclear(r);
    return KAAL_OK;
}

static int pg_schema_version(kaal_backend *b, int *version, kaal_error *err)
{
    static const char has_table[] = "SELECT (to_regclass($1) IS NOT NULL)::int";
    return kaal_schema_version_read(b, pg_scalar, has_table, version, err);
}

static int pg_simple(kaal_backend *b, const char *sql, kaal_error *err, const char *what)
{
    int rc;
    PGresult *r = run_sql(b, sql, 0, NULL, err, what, &rc);
    if (!r) return rc;
    PQclear(r);
    return KAAL_OK;
}

/* The steps the database lacks, in one transaction, serialised between
 * concurrent migrators by an advisory lock (concurrent CREATE TABLE IF NOT
 * EXISTS can otherwise fail on pg_type); each step's statements go in one
 * simple-query round trip. */
static int pg_migrate(kaal_backend *b, kaal_error *err)
{
    int version = 0, step, i;
    int rc = pg_simple(b, "BEGIN; SELECT pg_advisory_xact_lock(1801543020)", err, "migrate");
    if (rc != KAAL_OK) return rc;
    rc = pg_schema_version(b, &version, err);
    for (step = version; rc == KAAL_OK && step < KAAL_SCHEMA_VERSION; step++) {
        kaal_buf sql = {0};
        for (i = 0; kaal_schema_steps_postgres[step][i]; i++) {
            if (i) kaal_buf_str(&sql, ";\n");
            kaal_buf_str(&sql, kaal_schema_steps_postgres[step][i]);
        }
        rc = sql.oom ? oom(err) : pg_simple(b, sql.p, err, "migrate");
        free(sql.p);
    }
    if (rc == KAAL_OK) rc = pg_simple(b, "COMMIT", err, "migrate");
    if (rc != KAAL_OK && b->connected) {
        kaal_error ignored;
        pg_simple(b, "ROLLBACK", &ignored, "migrate");
    }
    return rc;
}

/* ------------------------------------------------------------------ */
/* Claims and the dispatch log                                         */

/* Claim attempts when PostgreSQL picks this statement as a deadlock victim
 * (the statement was rolled back whole, so it is safe to send again). */
#define CLAIM_ATTEMPTS 3

static int pg_claim(kaal_backend *b, kaal_claim *items, size_t n, int64_t lease_ms,
                    const char *node, int64_t now, kaal_error *err)
{
    kaal_buf cols[2] = {{0}}; /* keys, fire times */
    kaal_claim **order = NULL;
    char now_s[24];
    const char *vals[5];
    PGresult *r = NULL;
    size_t i;
    int rc, row, attempt;

    (void)lease_ms; /* a claim is a dispatch-log row: it never expires */
    for (i = 0; i < n; i++) items[i].claimed = 0;
    if (n == 0) return KAAL_OK;
    if ((rc = kaal_check_claims("postgres", items, n, node, err)) != KAAL_OK) return rc;
    order = kaal_claims_sorted(items, n);
    if (!order) return oom(err);
    for (i = 0; i < n; i++) {
        char num[24];
        int len;
        if (i && kaal_claim_cmp(order[i - 1], order[i]->key, order[i]->key_len, order[i]->fire_time) == 0)
            continue; /* a repeat: insert once */
        arrays_next(cols, 2);
        sb_quoted(&cols[0], order[i]->key, order[i]->key_len);
        len = snprintf(num, sizeof num, "%" PRId64, order[i]->fire_time);
        kaal_buf_put(&cols[1], num, (size_t)len);
    }
    if (!arrays_close(cols, 2)) {
        arrays_free(cols, 2);
        free(order);
        return oom(err);
    }
    snprintf(now_s, sizeof now_s, "%" PRId64, now);
    vals[0] = b->ns;
    vals[1] = cols[0].p;
    vals[2] = cols[1].p;
    vals[3] = node;
    vals[4] = now_s;
    for (attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
        r = run(b, Q_CLAIM, 5, vals, NULL, err, "claim", &rc);
        if (r || rc != KAAL_EBACKEND || strcmp(IMPL(b)->sqlstate, "40P01") != 0) break;
    }
    arrays_free(cols, 2);
    if (!r) {
        free(order);
        return rc;
    }
    for (row = 0; row < PQntuples(r); row++)
        kaal_claims_won(order, n, PQgetvalue(r, row, 0), (size_t)PQgetlength(r, row, 0),
                        int_value(r, row, 1));
    PQclear(r);
    free(order);
    return KAAL_OK;
}

static int pg_record(kaal_backend *b, const char *key, int64_t fire_time, const char *status,
                     const char *node, const char *error, int64_t now, kaal_error *err)
{
    char fire_s[24], now_s[24];
    const char *vals[7];
    int rc;
    if ((rc = kaal_check_outcome(status, err)) != KAAL_OK) return rc;
    if ((rc = check_opt("job key", key, err)) != KAAL_OK) return rc;
    if ((rc = check_opt("node", node, err)) != KAAL_OK) return rc;
    if (error && kaal_utf8_chars(error, strlen(error)) < 0)
        return kaal_error_set(err, KAAL_EARG, "error", -1,
                              "postgres: error text must be valid UTF-8");
    snprintf(fire_s, sizeof fire_s, "%" PRId64, fire_time);
    snprintf(now_s, sizeof now_s, "%" PRId64, now);
    vals[0] = b->ns;
    vals[1] = key;
    vals[2] = fire_s;
    vals[3] = status;
    vals[4] = node;
    vals[5] = error;
    vals[6] = now_s;
    return exec_q(b, Q_RECORD, 7, vals, err, "record", NULL);
}

static int pg_record_many(kaal_backend *b, const kaal_outcome *items, size_t n, const char *node,
                          int64_t now, kaal_error *err)
{
    kaal_buf cols[4] = {{0}}; /* keys, fire times, statuses, errors */
    char now_s[24];
    const char *vals[7];
    size_t i;
    int rc = KAAL_OK;

    if (n == 0) return KAAL_OK;
    if ((rc = check_opt("node", node, err)) != KAAL_OK) return rc;
    for (i = 0; i < n; i++) {
        const kaal_outcome *o = items + i;
        if ((rc = kaal_check_outcome(o->status, err)) != KAAL_OK) return rc;
        if ((rc = check_opt("job key", o->key, err)) != KAAL_OK) return rc;
        if (o->error && kaal_utf8_chars(o->error, strlen(o->error)) < 0)
            return kaal_error_set(err, KAAL_EARG, "error", -1, "postgres: error text must be valid UTF-8");
    }
    for (i = 0; i < n; i++) {
        const kaal_outcome *o = items + i;
        char num[24];
        int len = snprintf(num, sizeof num, "%" PRId64, o->fire_time);
        arrays_next(cols, 4);
        sb_quoted(&cols[0], o->key, strlen(o->key));
        kaal_buf_put(&cols[1], num, (size_t)len);
        kaal_buf_str(&cols[2], o->status);
        if (o->error)
            sb_quoted(&cols[3], o->error, strlen(o->error));
        else
            kaal_buf_put(&cols[3], "NULL", 4);
    }
    if (!arrays_close(cols, 4)) {
        rc = oom(err);
    } else {
        snprintf(now_s, sizeof now_s, "%" PRId64, now);
        vals[0] = b->ns;
        vals[1] = cols[0].p;
        vals[2] = cols[1].p;
        vals[3] = cols[2].p;
        vals[4] = node;
        vals[5] = now_s;
        vals[6] = cols[3].p;
        rc = exec_q(b, Q_RECORD_MANY, 7, vals, err, "record", NULL);
    }
    arrays_free(cols, 4);
    return rc;
}

/* Appends text and the next placeholder ($n) to sql, binding v to it. */
static void add_param(kaal_buf *sql, const char *text, const char *v, const char **vals, int *n)
{
    char num[16];
    snprintf(num, sizeof num, "$%d", *n + 1);
    kaal_buf_str(sql, text);
    kaal_buf_str(sql, num);
    vals[(*n)++] = v;
}

/* Dynamic SQL with only the filters given, so the planner can use the
 * primary key for a job key query. With before_key, a keyset page: only rows
 * before (before_fire, before_key) in the ORDER BY (key order in the "C"
 * collation). */
static int pg_dispatch_page(kaal_backend *b, const kaal_dispatch_query *q, int64_t before_fire,
                            const char *before_key, kaal_dispatch_rows *out, kaal_error *err)
{
    kaal_buf sql = {0};
    const char *vals[8];
    char limit_s[24], fire_s[24];
    PGresult *r;
    int n = 0, rc;

    kaal_buf_str(&sql, "SELECT job_key, fire_time, status, node, error, claimed_at, updated_at"
                 " FROM kaal_dispatches WHERE namespace = $1");
    vals[n++] = b->ns;
    if (q->key) add_param(&sql, " AND job_key = ", q->key, vals, &n);
    if (q->status) add_param(&sql, " AND status = ", q->status, vals, &n);
    if (q->node) add_param(&sql, " AND node = ", q->node, vals, &n);
    if (before_key) {
        snprintf(fire_s, sizeof fire_s, "%lld", (long long)before_fire);
        add_param(&sql, " AND (fire_time < ", fire_s, vals, &n);
        add_param(&sql, " OR (fire_time = ", fire_s, vals, &n);
        add_param(&sql, " AND job_key COLLATE \"C\" < ", before_key, vals, &n);
        kaal_buf_str(&sql, "))");
    }
    snprintf(limit_s, sizeof limit_s, "%zu", q->limit);
    add_param(&sql, " ORDER BY fire_time DESC, job_key COLLATE \"C\" DESC LIMIT ", limit_s, vals,
              &n);
    if (sql.oom) {
        free(sql.p);
        return oom(err);
    }
    r = run_sql(b, sql.p, n, vals, err, "dispatches", &rc);
    free(sql.p);
    if (!r) return rc;
    rc = read_rows(r, kaal_read_dispatch_row, out, err);
    PQclear(r);
    return rc;
}

static int pg_dispatches(kaal_backend *b, const kaal_dispatch_query *q, kaal_dispatch_rows *out,
                         kaal_error *err)
{
    return pg_dispatch_page(b, q, 0, NULL, out, err);
}

static int pg_latest_fires(kaal_backend *b, kaal_latest *items, size_t n, kaal_error *err)
{
    kaal_buf keys = {0};
    const char *vals[2];
    PGresult *r;
    size_t i;
    int rc, row;

    for (i = 0; i < n; i++) items[i].found = 0;
    if (n == 0) return KAAL_OK;
    for (i = 0; i < n; i++) {
        arrays_next(&keys, 1);
        sb_quoted(&keys, items[i].key, items[i].key_len);
    }
    if (!arrays_close(&keys, 1)) {
        free(keys.p);
        return oom(err);
    }
    vals[0] = b->ns;
    vals[1] = keys.p;
    r = run(b, Q_LATEST_FIRES, 2, vals, NULL, err, "latest_fires", &rc);
    free(keys.p);
    if (!r) return rc;
    for (row = 0; row < PQntuples(r); row++) {
        int64_t at = int_value(r, row, 0);
        if (at < 1 || (size_t)at > n || PQgetisnull(r, row, 1)) continue;
        items[at - 1].fire_time = int_value(r, row, 1);
        items[at - 1].found = 1;
    }
    PQclear(r);
    return KAAL_OK;
}

static int pg_cleanup(kaal_backend *b, int64_t before, size_t limit, size_t *deleted,
                      kaal_error *err)
{
    char before_s[24], limit_s[24];
    const char *vals[3];
    long affected = 0;
    int rc;
    *deleted = 0;
    if (limit == 0) return KAAL_OK;
    snprintf(before_s, sizeof before_s, "%" PRId64, before);
    snprintf(limit_s, sizeof limit_s, "%zu", limit);
    vals[0] = b->ns;
    vals[1] = before_s;
    vals[2] = limit_s;
    rc = exec_q(b, Q_CLEANUP, 3, vals, err, "cleanup", &affected);
    if (rc == KAAL_OK) *deleted = (size_t)affected;
    return rc;
}

/* ------------------------------------------------------------------ */
/* States                                                              */

static int pg_set_enabled(kaal_backend *b, const char *key, int enabled, kaal_error *err)
{
    char now_s[24];
    const char *vals[4];
    int rc;
    if ((rc = check_opt("job key", key, err)) != KAAL_OK) return rc;
    snprintf(now_s, sizeof now_s, "%" PRId64, (int64_t)time(NULL));
    vals[0] = b->ns;
    vals[1] = key;
    vals[2] = enabled ? "true" : "false";
    vals[3] = now_s;
    return exec_q(b, Q_SET_ENABLED, 4, vals, err, "set_enabled", NULL);
}

static int pg_states(kaal_backend *b, kaal_state_rows *out, kaal_error *err)
{
    const char *vals[1] = {b->ns};
    return query_rows(b, Q_STATES, 1, vals, "states", kaal_read_state_row, out, err);
}

/* ------------------------------------------------------------------ */
/* Delayed jobs                                                        */

static int pg_delayed_add(kaal_backend *b, const kaal_delayed_row *job, kaal_error *err)
{
    char run_s[24], now_s[24];
    const char *vals[7];
    int rc;
    if (!job->job_id || !job->job_class)
        return kaal_error_set(err, KAAL_EARG, "job_id", -1, "job_id and job_class are required");
    if ((rc = check_opt("job_id", job->job_id, err)) != KAAL_OK) return rc;
    if ((rc = check_opt("job_class", job->job_class, err)) != KAAL_OK) return rc;
    if ((rc = check_opt("queue", job->queue, err)) != KAAL_OK) return rc;
    snprintf(run_s, sizeof run_s, "%" PRId64, job->run_at_ms);
    snprintf(now_s, sizeof now_s, "%" PRId64, (int64_t)time(NULL));
    vals[0] = b->ns;
    vals[1] = job->job_id;
    vals[2] = run_s;
    vals[3] = job->job_class;
    vals[4] = job->queue;
    vals[5] = job->args ? job->args : "[]";
    vals[6] = now_s;
    rc = exec_q(b, Q_DELAYED_ADD, 7, vals, err, "delayed_add", NULL);
    if (rc == KAAL_EDUPLICATE)
        return kaal_error_set(err, KAAL_EDUPLICATE, "job_id", -1,
                              "delayed job %.160s is already pending", job->job_id);
    return rc;
}

static int pg_delayed_claim(kaal_backend *b, int64_t now_ms, size_t limit, kaal_delayed_rows *out,
                            kaal_error *err)
{
    char now_s[24], limit_s[24];
    const char *vals[3];
    if (limit == 0) return KAAL_OK;
    snprintf(now_s, sizeof now_s, "%" PRId64, now_ms);
    snprintf(limit_s, sizeof limit_s, "%zu", limit);
    vals[0] = b->ns;
    vals[1] = now_s;
    vals[2] = limit_s;
    return query_rows(b, Q_DELAYED_CLAIM, 3, vals, "delayed_claim", kaal_read_delayed_row, out,
                      err);
}

static int pg_delayed_cancel(kaal_backend *b, const char *job_id, int *found, kaal_error *err)
{
    const char *vals[2];
    long affected = 0;
    int rc;
    *found = 0;
    if (!job_id || kaal_utf8_chars(job_id, strlen(job_id)) < 0) return KAAL_OK; /* cannot be stored */
    vals[0] = b->ns;
    vals[1] = job_id;
    rc = exec_q(b, Q_DELAYED_CANCEL, 2, vals, err, "delayed_cancel", &affected);
    if (rc == KAAL_OK) *found = affected > 0;
    return rc;
}

static int pg_delayed_count(kaal_backend *b, size_t *count, kaal_error *err)
{
    const char *vals[1] = {b->ns};
    int64_t n;
    int rc = run_int(b, Q_DELAYED_COUNT, 1, vals, "delayed_count", &n, err);
    *count = (size_t)n;
    return rc;
}

static int pg_delayed_list(kaal_backend *b, size_t limit, kaal_delayed_rows *out, kaal_error *err)
{
    char limit_s[24];
    const char *vals[2];
    if (limit == 0) return KAAL_OK;
    snprintf(limit_s, sizeof limit_s, "%zu", limit);
    vals[0] = b->ns;
    vals[1] = limit_s;
    return query_rows(b, Q_DELAYED_LIST, 2, vals, "delayed_list", kaal_read_delayed_row, out, err);
}

/* ------------------------------------------------------------------ */
/* Nodes                                                               */

static int pg_heartbeat(kaal_backend *b, const char *node, const char *info, int64_t now,
                        int64_t ttl, kaal_error *err)
{
    char now_s[24], ttl_s[24];
    const char *vals[5];
    int rc;
    if ((rc = check_opt("node", node, err)) != KAAL_OK) return rc;
    if (!node) return kaal_error_set(err, KAAL_EARG, "node", -1, "node is required");
    if (info && kaal_utf8_chars(info, strlen(info)) < 0)
        return kaal_error_set(err, KAAL_EARG, "info", -1, "postgres: info must be valid UTF-8");
    snprintf(now_s, sizeof now_s, "%" PRId64, now);
    snprintf(ttl_s, sizeof ttl_s, "%" PRId64, ttl > 0 ? ttl : 0);
    vals[0] = b->ns;
    vals[1] = node;
    vals[2] = info;
    vals[3] = now_s;
    vals[4] = ttl_s;
    return exec_q(b, Q_HEARTBEAT, 5, vals, err, "heartbeat", NULL);
}

static int pg_nodes(kaal_backend *b, int64_t since, kaal_node_rows *out, kaal_error *err)
{
    char since_s[24];
    const char *vals[2];
    snprintf(since_s, sizeof since_s, "%" PRId64, since);
    vals[0] = b->ns;
    vals[1] = since_s;
    return query_rows(b, Q_NODES, 2, vals, "nodes", kaal_read_node_row, out, err);
}

static int pg_dispatches_before(kaal_backend *b, const kaal_dispatch_query *q, int64_t before_fire,
                                const char *before_key, kaal_dispatch_rows *out, kaal_error *err)
{
    return pg_dispatch_page(b, q, before_fire, before_key, out, err);
}

static int pg_delayed_list_after(kaal_backend *b, int64_t after_ms, const char *after_id, size_t limit,
                                 kaal_delayed_rows *out, kaal_error *err)
{
    char limit_s[24], after_s[24];
    const char *vals[4];
    if (limit == 0) return KAAL_OK;
    snprintf(limit_s, sizeof limit_s, "%zu", limit);
    snprintf(after_s, sizeof after_s, "%lld", (long long)after_ms);
    vals[0] = b->ns;
    vals[1] = limit_s;
    vals[2] = after_s;
    vals[3] = after_id;
    return query_rows(b, Q_DELAYED_LIST_AFTER, 4, vals, "delayed_list", kaal_read_delayed_row, out, err);
}

/* ------------------------------------------------------------------ */
/* Stored schedules                                                    */

static int sched_version(kaal_backend *b, int64_t *version, kaal_error *err)
{
    const char *vals[1] = {b->ns};
    return run_int(b, Q_SCHED_VERSION, 1, vals, "schedules", version, err);
}

static int pg_sched_upsert(kaal_backend *b, const kaal_schedule_row *row, int64_t now, int64_t *version,
                           kaal_error *err)
{
    char now_s[24];
    const char *vals[10];
    int rc;
    if ((rc = check_opt("time_zone", row->time_zone, err)) != KAAL_OK ||
        (rc = check_opt("queue", row->queue, err)) != KAAL_OK)
        return rc;
    snprintf(now_s, sizeof now_s, "%" PRId64, now);
    vals[0] = b->ns;
    vals[1] = row->key;
    vals[2] = row->cron;
    vals[3] = row->job_class;
    vals[4] = row->args ? row->args : "[]";
    vals[5] = row->kwargs ? row->kwargs : "{}";
    vals[6] = row->time_zone;
    vals[7] = row->queue;
    vals[8] = row->enabled ? "true" : "false";
    vals[9] = now_s;
    return run_int(b, Q_SCHED_UPSERT, 10, vals, "schedules", version, err);
}

static int pg_sched_remove(kaal_backend *b, const char *key, int64_t now, int *found, int64_t *version,
                           kaal_error *err)
{
    char now_s[24];
    const char *vals[3];
    int rc;
    PGresult *r;
    *found = 0;
    snprintf(now_s, sizeof now_s, "%" PRId64, now);
    vals[0] = b->ns;
    vals[1] = key;
    vals[2] = now_s;
    /* In a transaction, rolled back when the key is not stored: the
     * counter moves only with a change. */
    if ((rc = pg_simple(b, "BEGIN", err, "schedules")) != KAAL_OK) return rc;
    r = run(b, Q_SCHED_REMOVE, 3, vals, NULL, err, "schedules", &rc);
    if (r) {
        *found = PQntuples(r) > 0;
        if (*found) *version = int_value(r, 0, 0);
        PQclear(r);
        rc = pg_simple(b, *found ? "COMMIT" : "ROLLBACK", err, "schedules");
    }
    if (rc != KAAL_OK) {
        kaal_error ignored;
        if (b->connected) pg_simple(b, "ROLLBACK", &ignored, "schedules");
        *found = 0;
        return rc;
    }
    return *found ? KAAL_OK : sched_version(b, version, err);
}

static int pg_sched_get(kaal_backend *b, const char *key, kaal_schedule_rows *out, kaal_error *err)
{
    const char *vals[2] = {b->ns, key};
    return query_rows(b, Q_SCHED_GET, 2, vals, "schedules", kaal_read_schedule_row, out, err);
}

static int pg_sched_list(kaal_backend *b, const char *after, size_t limit, kaal_schedule_rows *out,
                         kaal_error *err)
{
    char limit_s[24];
    const char *vals[3];
    snprintf(limit_s, sizeof limit_s, "%zu", limit);
    vals[0] = b->ns;
    if (!after) {
        vals[1] = limit_s;
        return query_rows(b, Q_SCHED_LIST, 2, vals, "schedules", kaal_read_schedule_row, out, err);
    }
    vals[1] = after;
    vals[2] = limit_s;
    return query_rows(b, Q_SCHED_LIST_AFTER, 3, vals, "schedules", kaal_read_schedule_row, out, err);
}

static int pg_sched_changes(kaal_backend *b, int64_t since, size_t limit, kaal_schedule_rows *out,
                            int64_t *version, kaal_error *err)
{
    char since_s[24], limit_s[24];
    const char *vals[3];
    int rc = sched_version(b, version, err);
    if (rc != KAAL_OK || *version <= since) return rc;
    snprintf(since_s, sizeof since_s, "%" PRId64, since);
    snprintf(limit_s, sizeof limit_s, "%zu", limit);
    vals[0] = b->ns;
    vals[1] = since_s;
    vals[2] = limit_s;
    return query_rows(b, Q_SCHED_CHANGES, 3, vals, "schedules", kaal_read_schedule_row, out, err);
}

static int pg_sched_count(kaal_backend *b, size_t *count, kaal_error *err)
{
    const char *vals[1] = {b->ns};
    int64_t n;
    int rc = run_int(b, Q_SCHED_COUNT, 1, vals, "schedules", &n, err);
    *count = (size_t)n;
    return rc;
}

static const kaal_schedule_ops pg_schedule_ops = {
    pg_sched_upsert, pg_sched_remove, pg_sched_get, pg_sched_list, pg_sched_changes, pg_sched_count,
};

const kaal_backend_vtable kaal_backend_postgres = KAAL_BACKEND_VTABLE("postgres", pg);

#endif /* KAAL_HAVE_POSTGRES */
