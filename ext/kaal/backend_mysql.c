/* kaal: the MySQL / MariaDB backend on MariaDB Connector/C (MySQL 8.0 or
 * MariaDB 10.3 or newer; FOR UPDATE SKIP LOCKED is used from MySQL 8.0.1 and
 * MariaDB 10.6 on, plain FOR UPDATE before).
 *
 * Pure C, no ruby.h: every function here runs WITHOUT the GVL (the binding
 * releases it around each vtable call), so it uses malloc/free only.
 *
 * Session: mysql_real_connect with connect/read/write timeouts, utf8mb4,
 * autocommit on, automatic reconnect OFF (a silent reconnect would hide a
 * lost claim); then the session is set to strict SQL mode, READ COMMITTED
 * (fewer gap locks on the delayed-job range) and an InnoDB lock wait timeout
 * equal to the command timeout (the client read timeout is 2 s longer, so a
 * lock wait ends with the server's clean error first).
 *
 * Statements: every value is a bound parameter of a server-side prepared
 * statement (mysql_stmt_*), prepared once per connection on first use.
 * A claim batch is one
 *
 *   INSERT IGNORE INTO kaal_dispatches (...) VALUES (?,...),(?,...),...
 *
 * per 256 distinct pairs, sorted by (fire time, key) so concurrent claimers
 * lock rows in the same order (a batch is padded to the next power of two
 * rows by repeating its last pair, so at most 9 claim statements are ever
 * prepared), carrying a claim token of 32 random hex digits made for this
 * call; then one
 *
 *   SELECT job_key, fire_time FROM kaal_dispatches
 *   WHERE namespace = ? AND fire_time BETWEEN ? AND ? AND claim_token = ?
 *
 * reads back exactly the rows this call inserted (the fire-time range lets
 * it use the (namespace, fire_time) index). INSERT IGNORE turns data errors
 * into warnings, so keys and node ids are checked here first (valid UTF-8,
 * no NUL, at most 255 characters): a truncated key could never collide.
 *
 * Delayed claim: START TRANSACTION; SELECT ... ORDER BY run_at_ms LIMIT ?
 * FOR UPDATE [SKIP LOCKED] (forced onto the run_at index); DELETE each of
 * those rows by primary key; COMMIT. A deadlock victim retries (up to 5x).
 *
 * Errors: a lost connection (2006, 2013, 2055, connect errors, 1927 killed,
 * 1053 shutdown, 2014 out of sync) closes the session, sets b->connected = 0
 * and returns KAAL_ECONNECT; the binding reconnects on the next call.
 * Duplicate key 1062 on delayed_add is KAAL_EDUPLICATE. Anything else is
 * KAAL_EBACKEND with the server's message and error number. Connector/C's
 * messages never contain the password.
 *
 * Fork: discard() points the connection's socket at /dev/null (dup2) before
 * mysql_stmt_close / mysql_close, so COM_STMT_CLOSE and COM_QUIT go nowhere
 * and the parent's session, which shares the original socket, is untouched. */
#include "backend.h"
#include "schema.h"

#ifdef KAAL_HAVE_MYSQL

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <errmsg.h>
#include <mysql.h>

#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_COMMAND_TIMEOUT_MS 10000
#define CLIENT_GRACE_MS 2000
#define SLOTS 9                        /* statements for 1, 2, 4, ... 256 rows */
#define CHUNK ((size_t)1 << (SLOTS - 1)) /* rows per multi-row statement */
#define CELL 256                       /* result bytes read inline per column */

/* Fixed statements ("?" 1 is always the namespace). Q_DISPATCHES + mask is
 * the dispatch query with filters key (1), status (2), node (4). */
enum {
    Q_READBACK,
    Q_RELEASE,
    Q_RECORD,
    Q_CLEANUP,
    Q_SET_ENABLED,
    Q_STATES,
    Q_DELAYED_ADD,
    Q_DELAYED_PICK_SKIP,
    Q_DELAYED_PICK_WAIT,
    Q_DELAYED_CANCEL,
    Q_DELAYED_COUNT,
    Q_DELAYED_LIST,
    Q_HEARTBEAT,
    Q_NODES_EXPIRE,
    Q_NODES,
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
    Q_DISPATCHES,
    Q_DISPATCHES_BEFORE = Q_DISPATCHES + 8, /* + the same mask: keyset pages */
    Q_COUNT = Q_DISPATCHES_BEFORE + 8
};

#define DELAYED_COLS "job_id, run_at_ms, job_class, queue, args"
/* Walk the due jobs in run_at order so only the rows returned get locked
 * (a primary-key scan plus filesort would lock every due row). */
#define PICK_INDEX " FORCE INDEX (index_kaal_delayed_jobs_on_namespace_and_run_at_ms)"

static const char *const SQL[Q_DISPATCHES] = {
    [Q_READBACK] =
        "SELECT job_key, fire_time FROM kaal_dispatches"
        " WHERE namespace = ? AND fire_time BETWEEN ? AND ? AND claim_token = ?",
    [Q_RELEASE] =
        "DELETE FROM kaal_dispatches"
        " WHERE namespace = ? AND fire_time BETWEEN ? AND ? AND claim_token = ? AND status = 'claimed'",
    [Q_RECORD] =
        "INSERT INTO kaal_dispatches"
        " (namespace, job_key, fire_time, status, node, error, claimed_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON DUPLICATE KEY UPDATE status = VALUES(status),"
        " node = COALESCE(VALUES(node), node), error = VALUES(error),"
        " updated_at = VALUES(updated_at)",
    [Q_CLEANUP] =
        "DELETE FROM kaal_dispatches WHERE namespace = ? AND fire_time < ?"
        " ORDER BY fire_time LIMIT ?",
    [Q_SET_ENABLED] =
        "INSERT INTO kaal_job_states (namespace, job_key, enabled, updated_at)"
        " VALUES (?, ?, ?, ?)"
        " ON DUPLICATE KEY UPDATE enabled = VALUES(enabled), updated_at = VALUES(updated_at)",
    [Q_STATES] = "SELECT job_key, enabled FROM kaal_job_states WHERE namespace = ? ORDER BY job_key",
    [Q_DELAYED_ADD] =
        "INSERT INTO kaal_delayed_jobs"
        " (namespace, job_id, run_at_ms, job_class, queue, args, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
    [Q_DELAYED_PICK_SKIP] =
        "SELECT " DELAYED_COLS " FROM kaal_delayed_jobs" PICK_INDEX
        " WHERE namespace = ? AND run_at_ms <= ? ORDER BY run_at_ms, job_id LIMIT ? FOR UPDATE SKIP LOCKED",
    [Q_DELAYED_PICK_WAIT] =
        "SELECT " DELAYED_COLS " FROM kaal_delayed_jobs" PICK_INDEX
        " WHERE namespace = ? AND run_at_ms <= ? ORDER BY run_at_ms, job_id LIMIT ? FOR UPDATE",
    [Q_DELAYED_CANCEL] = "DELETE FROM kaal_delayed_jobs WHERE namespace = ? AND job_id = ?",
    [Q_DELAYED_COUNT] = "SELECT COUNT(*) FROM kaal_delayed_jobs WHERE namespace = ?",
    [Q_DELAYED_LIST] =
        "SELECT " DELAYED_COLS " FROM kaal_delayed_jobs WHERE namespace = ?"
        " ORDER BY run_at_ms, job_id LIMIT ?",
    [Q_DELAYED_LIST_AFTER] =
        "SELECT " DELAYED_COLS " FROM kaal_delayed_jobs WHERE namespace = ?"
        " AND (run_at_ms > ? OR (run_at_ms = ? AND job_id > ?))"
        " ORDER BY run_at_ms, job_id LIMIT ?",
    [Q_HEARTBEAT] =
        "INSERT INTO kaal_nodes (namespace, node, info, last_seen) VALUES (?, ?, ?, ?)"
        " ON DUPLICATE KEY UPDATE info = VALUES(info), last_seen = VALUES(last_seen)",
    [Q_NODES_EXPIRE] =
        "DELETE FROM kaal_nodes WHERE namespace = ? AND last_seen < ? AND node <> ?",
    [Q_NODES] =
        "SELECT node, info, last_seen FROM kaal_nodes"
        " WHERE namespace = ? AND last_seen >= ? ORDER BY node",
    /* Stored schedules: every change bumps the counter row first, in its
     * transaction (changes commit in version order; writers lock in the
     * same order). */
    [Q_SCHED_BUMP] =
        "INSERT INTO kaal_schedule_versions (namespace, version) VALUES (?, 1)"
        " ON DUPLICATE KEY UPDATE version = version + 1",
    [Q_SCHED_VERSION] = "SELECT version FROM kaal_schedule_versions WHERE namespace = ?",
    [Q_SCHED_UPSERT] =
        "INSERT INTO kaal_schedules (namespace, " KAAL_SCHEDULE_COLS ")"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)"
        " ON DUPLICATE KEY UPDATE cron = VALUES(cron), job_class = VALUES(job_class),"
        " args = VALUES(args), kwargs = VALUES(kwargs), time_zone = VALUES(time_zone),"
        " queue = VALUES(queue), enabled = VALUES(enabled), deleted = 0,"
        " version = VALUES(version), updated_at = VALUES(updated_at)",
    [Q_SCHED_REMOVE] =
        "UPDATE kaal_schedules SET deleted = 1, version = ?, updated_at = ?"
        " WHERE namespace = ? AND job_key = ? AND deleted = 0",
    [Q_SCHED_GET] =
        "SELECT " KAAL_SCHEDULE_COLS " FROM kaal_schedules"
        " WHERE namespace = ? AND job_key = ? AND deleted = 0",
    [Q_SCHED_LIST] =
        "SELECT " KAAL_SCHEDULE_COLS " FROM kaal_schedules"
        " WHERE namespace = ? AND deleted = 0 ORDER BY job_key LIMIT ?",
    [Q_SCHED_LIST_AFTER] =
        "SELECT " KAAL_SCHEDULE_COLS " FROM kaal_schedules"
        " WHERE namespace = ? AND deleted = 0 AND job_key > ? ORDER BY job_key LIMIT ?",
    [Q_SCHED_CHANGES] =
        "SELECT " KAAL_SCHEDULE_COLS " FROM kaal_schedules"
        " WHERE namespace = ? AND version > ? ORDER BY version LIMIT ?",
    [Q_SCHED_COUNT] = "SELECT COUNT(*) FROM kaal_schedules WHERE namespace = ? AND deleted = 0",
};

/* A failed claim's rows: its token and the fire times of its batch. */
typedef struct held_claim {
    char token[33];
    int64_t lo, hi;
} held_claim;
#define HELD_MAX 8

typedef struct my_impl {
    MYSQL *conn;
    MYSQL_STMT *st[Q_COUNT];
    MYSQL_STMT *claim[SLOTS]; /* claim[i] inserts 1 << i rows */
    MYSQL_STMT *latest;       /* latest_fires for CHUNK keys */
    MYSQL_STMT *record_many;  /* record_many for CHUNK rows */
    int skip_locked;
    unsigned int last_errno; /* of the last failure (deadlock retries) */
    /* Claims that failed after some of their INSERTs committed, whose rows
     * could not be released yet (see release_held). */
    held_claim held[HELD_MAX];
    int nheld;
} my_impl;

#define IMPL(b) ((my_impl *)(b)->impl)

/* A bound parameter. */
enum { P_NULL, P_STR, P_INT };
typedef struct param {
    int type;
    const char *s;
    unsigned long len;
    long long i;
} param;

static param p_str(const char *s)
{
    param p;
    p.type = s ? P_STR : P_NULL;
    p.s = s;
    p.len = s ? (unsigned long)strlen(s) : 0;
    p.i = 0;
    return p;
}

static param p_strn(const char *s, size_t n)
{
    param p;
    p.type = P_STR;
    p.s = s;
    p.len = (unsigned long)n;
    p.i = 0;
    return p;
}

static param p_int(int64_t v)
{
    param p;
    p.type = P_INT;
    p.s = NULL;
    p.len = 0;
    p.i = (long long)v;
    return p;
}

/* One result cell (s is NUL-terminated). fetch hands a row reader
 * (backend.h) the row's cells as its kaal_columns src. */
typedef struct cell {
    const char *s;
    unsigned long len;
    int null;
} cell;

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */

static int oom(kaal_error *err)
{
    return kaal_error_set(err, KAAL_ENOMEM, NULL, -1, "mysql: out of memory");
}

static int check_opt(const char *what, const char *s, kaal_error *err)
{
    return kaal_check_varchar_opt("mysql", what, s, err);
}

static int64_t cell_int(const cell *c)
{
    return c->null ? 0 : (int64_t)strtoll(c->s, NULL, 10);
}

static char *cells_text(const void *src, int col)
{
    const cell *c = (const cell *)src + col;
    return c->null ? NULL : kaal_strndup(c->s, c->len);
}

static const char *cells_view(const void *src, int col, size_t *len)
{
    const cell *c = (const cell *)src + col;
    *len = c->null ? 0 : (size_t)c->len;
    return c->null ? NULL : c->s;
}

static int64_t cells_num(const void *src, int col) { return cell_int((const cell *)src + col); }

static int cells_null(const void *src, int col) { return ((const cell *)src + col)->null; }

/* 32 random hex digits. */
static int make_token(char out[33])
{
    static const char HEX[] = "0123456789abcdef";
    unsigned char raw[16];
    size_t got = 0;
    int i;
    while (got < sizeof raw) {
        ssize_t r = getrandom(raw + got, sizeof raw - got, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        got += (size_t)r;
    }
    if (got < sizeof raw) { /* no getrandom (old kernel): /dev/urandom */
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd < 0) return 0;
        while (got < sizeof raw) {
            ssize_t r = read(fd, raw + got, sizeof raw - got);
            if (r <= 0) {
                if (r < 0 && errno == EINTR) continue;
                close(fd);
                return 0;
            }
            got += (size_t)r;
        }
        close(fd);
    }
    for (i = 0; i < 16; i++) {
        out[2 * i] = HEX[raw[i] >> 4];
        out[2 * i + 1] = HEX[raw[i] & 15];
    }
    out[32] = '\0';
    return 1;
}

/* ------------------------------------------------------------------ */
/* Session and errors                                                  */

static void close_stmts(my_impl *m)
{
    int i;
    for (i = 0; i < Q_COUNT; i++) {
        if (m->st[i]) mysql_stmt_close(m->st[i]);
        m->st[i] = NULL;
    }
    for (i = 0; i < SLOTS; i++) {
        if (m->claim[i]) mysql_stmt_close(m->claim[i]);
        m->claim[i] = NULL;
    }
    if (m->latest) mysql_stmt_close(m->latest);
    m->latest = NULL;
    if (m->record_many) mysql_stmt_close(m->record_many);
    m->record_many = NULL;
}

static void drop_conn(kaal_backend *b)
{
    my_impl *m = IMPL(b);
    if (m) {
        if (m->conn) {
            kaal_backend_set_io_fd(b, -1); /* before the socket is closed */
            close_stmts(m);
            mysql_close(m->conn);
            m->conn = NULL;
        }
    }
    b->connected = 0;
}

static int is_lost(unsigned int no)
{
    switch (no) {
    case CR_CONNECTION_ERROR:
    case CR_CONN_HOST_ERROR:
    case CR_SERVER_GONE_ERROR:
    case CR_SERVER_LOST:
    case CR_SERVER_LOST_EXTENDED:
    case CR_COMMANDS_OUT_OF_SYNC:
    case 1053: /* ER_SERVER_SHUTDOWN */
    case 1927: /* ER_CONNECTION_KILLED (MariaDB) */
    case 4031: /* ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8) */
        return 1;
    default:
        return 0;
    }
}

/* Map an error number and message to a status; drops the session when the
 * connection is gone. */
static int fail(kaal_backend *b, unsigned int no, const char *msg, kaal_error *err,
                const char *what)
{
    char text[200];
    snprintf(text, sizeof text, "%s", msg && *msg ? msg : "unknown error");
    if (IMPL(b)) IMPL(b)->last_errno = no;
    if (no == 0 || is_lost(no)) {
        kaal_error_set(err, KAAL_ECONNECT, NULL, -1, "mysql: %s: %s", what,
                       no == 0 ? "not connected" : text);
        drop_conn(b);
        return KAAL_ECONNECT;
    }
    if (no == 1062) /* ER_DUP_ENTRY */
        return kaal_error_set(err, KAAL_EDUPLICATE, NULL, -1, "mysql: %s: %s", what, text);
    if (no == 1146) /* ER_NO_SUCH_TABLE */
        return kaal_error_set(err, KAAL_EBACKEND, NULL, -1,
                              "mysql: %s: %s (run `kaal migrate` to create kaal's tables)", what,
                              text);
    return kaal_error_set(err, KAAL_EBACKEND, NULL, -1, "mysql: %s: %s [%u]", what, text, no);
}

static int stmt_fail(kaal_backend *b, MYSQL_STMT *st, kaal_error *err, const char *what)
{
    return fail(b, mysql_stmt_errno(st), mysql_stmt_error(st), err, what);
}

static int conn_fail(kaal_backend *b, kaal_error *err, const char *what)
{
    my_impl *m = IMPL(b);
    if (!m || !m->conn) return fail(b, 0, NULL, err, what);
    return fail(b, mysql_errno(m->conn), mysql_error(m->conn), err, what);
}

/* A plain statement without values (DDL, SET, transaction control). */
static int simple(kaal_backend *b, const char *sql, kaal_error *err, const char *what)
{
    my_impl *m = IMPL(b);
    if (!m || !m->conn) return fail(b, 0, NULL, err, what);
    if (mysql_real_query(m->conn, sql, (unsigned long)strlen(sql)) != 0)
        return conn_fail(b, err, what);
    /* statements here return no rows; free one defensively */
    {
        MYSQL_RES *res = mysql_store_result(m->conn);
        if (res) mysql_free_result(res);
    }
    return KAAL_OK;
}

/* The statement in *slot, prepared from sql when not yet prepared. */
static int prepared(kaal_backend *b, MYSQL_STMT **slot, const char *sql, kaal_error *err,
                    const char *what)
{
    my_impl *m = IMPL(b);
    MYSQL_STMT *st;
    if (!m || !m->conn) return fail(b, 0, NULL, err, what);
    if (*slot) return KAAL_OK;
    st = mysql_stmt_init(m->conn);
    if (!st) return oom(err);
    if (mysql_stmt_prepare(st, sql, (unsigned long)strlen(sql)) != 0) {
        unsigned int no = mysql_stmt_errno(st);
        char msg[200];
        snprintf(msg, sizeof msg, "%s", mysql_stmt_error(st));
        mysql_stmt_close(st);
        return fail(b, no, msg, err, what);
    }
    *slot = st;
    return KAAL_OK;
}

/* Bind n params and execute. */
static int execute(kaal_backend *b, MYSQL_STMT *st, param *ps, size_t n, kaal_error *err,
                   const char *what)
{
    MYSQL_BIND stack[16], *bind = n <= 16 ? stack : calloc(n, sizeof *bind);
    size_t i;
    int rc = KAAL_OK;
    if (!bind) return oom(err);
    memset(bind, 0, n * sizeof *bind);
    for (i = 0; i < n; i++) {
        switch (ps[i].type) {
        case P_STR:
            bind[i].buffer_type = MYSQL_TYPE_STRING;
            bind[i].buffer = (void *)ps[i].s;
            bind[i].buffer_length = ps[i].len;
            bind[i].length = &ps[i].len;
            break;
        case P_INT:
            bind[i].buffer_type = MYSQL_TYPE_LONGLONG;
            bind[i].buffer = &ps[i].i;
            break;
        default:
            bind[i].buffer_type = MYSQL_TYPE_NULL;
            break;
        }
    }
    if (mysql_stmt_bind_param(st, bind) != 0 || mysql_stmt_execute(st) != 0)
        rc = stmt_fail(b, st, err, what);
    if (bind != stack) free(bind);
    return rc;
}

/* Read every row of an executed statement, every column as text. */
static int fetch(kaal_backend *b, MYSQL_STMT *st, kaal_row_reader fn, void *ctx,
                 kaal_error *err, const char *what)
{
    unsigned int ncols = mysql_stmt_field_count(st), c;
    MYSQL_BIND *bind;
    char (*small)[CELL + 1];
    unsigned long *lens;
    my_bool *nulls, *errs;
    cell *cells;
    kaal_columns cols;
    char **big;
    int frc, rc = KAAL_OK;

    if (ncols == 0) return KAAL_OK;
    bind = calloc(ncols, sizeof *bind);
    small = calloc(ncols, sizeof *small);
    lens = calloc(ncols, sizeof *lens);
    nulls = calloc(ncols, sizeof *nulls);
    errs = calloc(ncols, sizeof *errs);
    cells = calloc(ncols, sizeof *cells);
    big = calloc(ncols, sizeof *big);
    if (!bind || !small || !lens || !nulls || !errs || !cells || !big) {
        rc = oom(err);
        goto drain;
    }
    cols.text = cells_text;
    cols.view = cells_view;
    cols.is_null = cells_null;
    cols.num = cells_num;
    cols.src = cells;
    for (c = 0; c < ncols; c++) {
        bind[c].buffer_type = MYSQL_TYPE_STRING;
        bind[c].buffer = small[c];
        bind[c].buffer_length = CELL;
        bind[c].length = &lens[c];
        bind[c].is_null = &nulls[c];
        bind[c].error = &errs[c];
    }
    if (mysql_stmt_bind_result(st, bind) != 0) {
        rc = stmt_fail(b, st, err, what);
        goto done;
    }
    while ((frc = mysql_stmt_fetch(st)) == 0 || frc == MYSQL_DATA_TRUNCATED) {
        if (rc != KAAL_OK) continue; /* drain after a callback failure */
        for (c = 0; c < ncols; c++) {
            cells[c].null = nulls[c];
            cells[c].len = nulls[c] ? 0 : lens[c];
            if (!nulls[c] && lens[c] > CELL) {
                MYSQL_BIND one;
                unsigned long got = 0;
                my_bool one_null = 0, one_err = 0;
                big[c] = malloc(lens[c] + 1);
                if (!big[c]) {
                    rc = oom(err);
                    break;
                }
                memset(&one, 0, sizeof one);
                one.buffer_type = MYSQL_TYPE_STRING;
                one.buffer = big[c];
                one.buffer_length = lens[c];
                one.length = &got;
                one.is_null = &one_null;
                one.error = &one_err;
                if (mysql_stmt_fetch_column(st, &one, c, 0) != 0) {
                    rc = stmt_fail(b, st, err, what);
                    break;
                }
                big[c][lens[c]] = '\0';
                cells[c].s = big[c];
            } else {
                small[c][nulls[c] ? 0 : lens[c]] = '\0';
                cells[c].s = small[c];
            }
        }
        if (rc == KAAL_OK) rc = fn(ctx, &cols);
        for (c = 0; c < ncols; c++) {
            free(big[c]);
            big[c] = NULL;
        }
        if (rc != KAAL_OK && !b->connected) goto done; /* the session is gone */
    }
    if (frc == 1 && rc == KAAL_OK) rc = stmt_fail(b, st, err, what);
done:
    if (b->connected) mysql_stmt_free_result(st);
    goto out;
drain:
    if (b->connected) mysql_stmt_free_result(st);
out:
    free(bind);
    free(small);
    free(lens);
    free(nulls);
    free(errs);
    free(cells);
    free(big);
    return rc;
}

/* Prepare (once), bind, execute statement q; rows go to fn when given. */
static int run(kaal_backend *b, int q, param *ps, size_t n, kaal_row_reader fn, void *ctx,
               kaal_error *err, const char *what, unsigned long long *affected)
{
    my_impl *m = IMPL(b);
    int rc;
    if (!m || !m->conn) return fail(b, 0, NULL, err, what);
    rc = prepared(b, &m->st[q], q >= Q_DISPATCHES ? NULL : SQL[q], err, what);
    if (rc != KAAL_OK) return rc;
    rc = execute(b, m->st[q], ps, n, err, what);
    if (rc != KAAL_OK) return rc;
    if (affected) *affected = mysql_stmt_affected_rows(m->st[q]);
    return fn ? fetch(b, m->st[q], fn, ctx, err, what) : KAAL_OK;
}

/* "5.5.5-10.11.4-MariaDB" / "8.0.36" -> 101104 / 80036 */
static unsigned long parse_version(const char *v)
{
    unsigned long a = 0, bb = 0, c = 0;
    if (!v) return 0;
    if (strncmp(v, "5.5.5-", 6) == 0) v += 6;
    if (sscanf(v, "%lu.%lu.%lu", &a, &bb, &c) < 2) return 0;
    return a * 10000 + bb * 100 + c;
}

/* The connection handshake with the non-blocking API, each wait a
 * kaal_wait on the socket (connect timeout cto ms, interruptible). */
static int handshake(kaal_backend *b, const char *host, const char *sock, int cto,
                     const char *where, kaal_error *err)
{
    const kaal_conn_params *p = &b->params;
    my_impl *m = IMPL(b);
    int64_t deadline = kaal_mono_ms() + cto;
    MYSQL *ret = NULL;
    int st, rc;

    mysql_options(m->conn, MYSQL_OPT_NONBLOCK, 0);
    st = mysql_real_connect_start(&ret, m->conn, host, p->username, p->password,
                                  p->database && *p->database ? p->database : NULL,
                                  sock ? 0 : (unsigned int)(p->port > 0 ? p->port : 3306), sock, 0);
    while (st) {
        short ev = 0, want = 0;
        int64_t until = deadline;
        if (st & MYSQL_WAIT_READ) want |= POLLIN;
        if (st & MYSQL_WAIT_WRITE) want |= POLLOUT;
        if (st & MYSQL_WAIT_EXCEPT) want |= POLLPRI;
        if ((st & MYSQL_WAIT_TIMEOUT) && kaal_mono_ms() + mysql_get_timeout_value_ms(m->conn) < until) {
            until = kaal_mono_ms() + mysql_get_timeout_value_ms(m->conn);
        }
        rc = kaal_wait(b, (int)mysql_get_socket(m->conn), want, until, &ev, "connect", err);
        if (rc == KAAL_EINTERRUPTED) {
            drop_conn(b);
            return rc;
        }
        if (rc != KAAL_OK && until == deadline) {
            drop_conn(b);
            return kaal_error_set(err, KAAL_ECONNECT, NULL, -1,
                                  "mysql: cannot connect to %s: timed out after %d ms", where, cto);
        }
        st = mysql_real_connect_cont(&ret, m->conn,
                                     rc != KAAL_OK ? MYSQL_WAIT_TIMEOUT
                                                   : ((ev & POLLIN) ? MYSQL_WAIT_READ : 0) |
                                                         ((ev & POLLOUT) ? MYSQL_WAIT_WRITE : 0) |
                                                         ((ev & POLLPRI) ? MYSQL_WAIT_EXCEPT : 0));
    }
    if (!ret) {
        kaal_error_set(err, KAAL_ECONNECT, NULL, -1, "mysql: cannot connect to %s: %s", where,
                       mysql_error(m->conn));
        drop_conn(b);
        return KAAL_ECONNECT;
    }
    return KAAL_OK;
}

static int my_connect(kaal_backend *b, kaal_error *err)
{
    const kaal_conn_params *p = &b->params;
    my_impl *m = IMPL(b);
    int cto = p->connect_timeout_ms > 0 ? p->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    int qto = p->command_timeout_ms > 0 ? p->command_timeout_ms : DEFAULT_COMMAND_TIMEOUT_MS;
    unsigned int cto_s = (unsigned int)((cto + 999) / 1000);
    unsigned int rto_s = (unsigned int)((qto + CLIENT_GRACE_MS + 999) / 1000);
    my_bool off = 0, on = 1, tls = 0;
    const char *host = p->host && *p->host ? p->host : "127.0.0.1";
    const char *sock = p->socket && *p->socket ? p->socket : NULL;
    char where[300], set[160];
    const char *info;
    unsigned long ver;
    int rc;

    /* INSERT IGNORE would cut a longer one short: every claim lost */
    rc = kaal_check_varchar("mysql", "namespace", b->ns, strlen(b->ns), err);
    if (rc != KAAL_OK) return rc;
    if (!m) {
        m = calloc(1, sizeof *m);
        if (!m) return oom(err);
        b->impl = m;
    }
    drop_conn(b);
    m->conn = mysql_init(NULL);
    if (!m->conn) return oom(err);
    mysql_options(m->conn, MYSQL_OPT_CONNECT_TIMEOUT, &cto_s);
    mysql_options(m->conn, MYSQL_OPT_READ_TIMEOUT, &rto_s);
    mysql_options(m->conn, MYSQL_OPT_WRITE_TIMEOUT, &rto_s);
    mysql_options(m->conn, MYSQL_OPT_RECONNECT, &off);
    mysql_options(m->conn, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    /* shows up in performance_schema.session_connect_attrs */
    mysql_optionsv(m->conn, MYSQL_OPT_CONNECT_ATTR_ADD, "program_name", "kaal");
    if (p->sslmode && *p->sslmode) {
        const char *s = p->sslmode;
        int verify = strstr(s, "verify") != NULL;
        if (strcmp(s, "disable") != 0 && strcmp(s, "disabled") != 0 &&
            strcmp(s, "preferred") != 0 && strcmp(s, "prefer") != 0 && strcmp(s, "allow") != 0) {
            mysql_options(m->conn, MYSQL_OPT_SSL_ENFORCE, &on);
            if (verify) mysql_options(m->conn, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &on);
            tls = 1;
        }
    }
    if (p->ssl_ca && *p->ssl_ca) { /* ssl-ca: TLS with this CA, as the mysql client does */
        mysql_options(m->conn, MYSQL_OPT_SSL_CA, p->ssl_ca);
        mysql_options(m->conn, MYSQL_OPT_SSL_ENFORCE, &on);
        tls = 1;
    }
    if (sock) snprintf(where, sizeof where, "unix:%s", sock);
    else snprintf(where, sizeof where, "%s:%d", host, p->port > 0 ? p->port : 3306);

    rc = handshake(b, sock ? "localhost" : host, sock, cto, where, err);
    if (rc != KAAL_OK) return rc;
    /* Connector/C falls back to plain text when the server has no TLS even
     * with SSL_ENFORCE set: TLS that was asked for must really be in use. */
    if (tls && !mysql_get_ssl_cipher(m->conn)) {
        kaal_error_set(err, KAAL_ECONNECT, NULL, -1,
                       "mysql: cannot connect to %s: TLS was required (ssl-mode or ssl-ca) but the "
                       "connection is not encrypted (does the server have TLS enabled?)", where);
        drop_conn(b);
        return KAAL_ECONNECT;
    }
    /* From here on the client library waits by itself (read and write
     * timeouts): an interrupt shuts this socket down to end its wait. */
    kaal_backend_set_io_fd(b, (int)mysql_get_socket(m->conn));
    b->connected = 1;
    info = mysql_get_server_info(m->conn);
    ver = parse_version(info);
    if (info && strstr(info, "MariaDB")) m->skip_locked = ver >= 100600;
    else m->skip_locked = ver >= 80001;

    snprintf(set, sizeof set,
             "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION',"
             " SESSION innodb_lock_wait_timeout = %d",
             (qto + 999) / 1000);
    rc = simple(b, set, err, "connect");
    if (rc == KAAL_OK)
        rc = simple(b, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", err, "connect");
    if (rc == KAAL_OK && mysql_autocommit(m->conn, 1) != 0) rc = conn_fail(b, err, "connect");
    if (rc != KAAL_OK) {
        drop_conn(b);
        return rc == KAAL_ECONNECT ? rc : KAAL_ECONNECT;
    }
    return KAAL_OK;
}

static void my_close(kaal_backend *b)
{
    drop_conn(b);
    free(b->impl);
    b->impl = NULL;
}

/* In a forked child the socket is shared with the parent. mysql_close would
 * send COM_QUIT (and mysql_stmt_close COM_STMT_CLOSE) on it and end the
 * PARENT's session, so the descriptor is first pointed at /dev/null: those
 * messages go nowhere, and closing frees only memory and our /dev/null
 * copy. */
static void my_discard(kaal_backend *b)
{
    my_impl *m = IMPL(b);
    if (m && m->conn) {
        if (kaal_silence_inherited_socket((int)mysql_get_socket(m->conn))) {
            close_stmts(m);
            mysql_close(m->conn);
        }
        m->conn = NULL;
    }
    free(m);
    b->impl = NULL;
    b->connected = 0;
}

static int int_row(void *ctx, const kaal_columns *c)
{
    *(int64_t *)ctx = c->is_null(c->src, 0) ? 0 : c->num(c->src, 0);
    return KAAL_OK;
}

/* *out: the integer a one-row query returns (0 for no row or NULL). */
static int my_scalar(kaal_backend *b, const char *sql, const char *arg, int64_t *out, kaal_error *err)
{
    MYSQL_STMT *st = NULL;
    param ps[1];
    int rc = prepared(b, &st, sql, err, "schema version");
    *out = 0;
    if (rc != KAAL_OK) return rc;
    ps[0] = p_str(arg);
    rc = execute(b, st, ps, arg ? 1 : 0, err, "schema version");
    if (rc == KAAL_OK) rc = fetch(b, st, int_row, out, err, "schema version");
    if (IMPL(b) && IMPL(b)->conn) mysql_stmt_close(st);
    return rc;
}

static int my_schema_version(kaal_backend *b, int *version, kaal_error *err)
{
    static const char has_table[] =
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?";
    return kaal_schema_version_read(b, my_scalar, has_table, version, err);
}

/* The steps the database lacks. DDL commits implicitly in MySQL, so a step
 * cut short is finished by the next run (every statement is idempotent). */
static int my_migrate(kaal_backend *b, kaal_error *err)
{
    int version = 0, step, i, rc = my_schema_version(b, &version, err);
    for (step = version; rc == KAAL_OK && step < KAAL_SCHEMA_VERSION; step++)
        for (i = 0; rc == KAAL_OK && kaal_schema_steps_mysql[step][i]; i++)
            rc = simple(b, kaal_schema_steps_mysql[step][i], err, "migrate");
    return rc;
}

/* ------------------------------------------------------------------ */
/* Claims and the dispatch log                                         */

/* The INSERT IGNORE statement for 1 << slot rows. */
static int claim_stmt(kaal_backend *b, int slot, MYSQL_STMT **out, kaal_error *err)
{
    my_impl *m = IMPL(b);
    if (!m->claim[slot]) {
        char *sql = kaal_sql_rows(
            "INSERT IGNORE INTO kaal_dispatches"
            " (namespace, job_key, fire_time, status, node, claim_token, claimed_at, updated_at)"
            " VALUES ",
            "(?, ?, ?, 'claimed', ?, ?, ?, ?)", (size_t)1 << slot, 1, "");
        int rc;
        if (!sql) return oom(err);
        rc = prepared(b, &m->claim[slot], sql, err, "claim");
        free(sql);
        if (rc != KAAL_OK) return rc;
    }
    *out = m->claim[slot];
    return KAAL_OK;
}

typedef struct claim_ctx {
    kaal_claim **order;
    size_t n;
} claim_ctx;

static int claim_row(void *vctx, const kaal_columns *cols)
{
    claim_ctx *x = vctx;
    const cell *cells = cols->src;
    if (!cells[0].null)
        kaal_claims_won(x->order, x->n, cells[0].s, cells[0].len, cell_int(&cells[1]));
    return KAAL_OK;
}

/* INSERT every distinct pair of order[0..n) (sorted) with the token.
 * *committed and *sent (raised, never lowered) end the pairs whose INSERTs
 * committed, and those of the last INSERT sent (committed or not). */
static int claim_insert(kaal_backend *b, kaal_claim **order, size_t n, param *ps,
                        const char *node, const char *token, int64_t now, size_t *committed,
                        size_t *sent, kaal_error *err)
{
    size_t i = 0;
    int rc = KAAL_OK;
    while (rc == KAAL_OK && i < n) {
        const kaal_claim *chunk[CHUNK];
        size_t cnt = 0, rows, j;
        int slot;
        MYSQL_STMT *st = NULL;
        for (; i < n && cnt < CHUNK; i++) {
            if (cnt && kaal_claim_cmp(chunk[cnt - 1], order[i]->key, order[i]->key_len,
                                  order[i]->fire_time) == 0)
                continue; /* a repeat: insert once */
            chunk[cnt++] = order[i];
        }
        slot = kaal_claim_slot(cnt);
        rows = (size_t)1 << slot;
        rc = claim_stmt(b, slot, &st, err);
        if (rc != KAAL_OK) break;
        for (j = 0; j < rows; j++) {
            /* pad with the last pair: INSERT IGNORE skips the repeats */
            const kaal_claim *c = chunk[j < cnt ? j : cnt - 1];
            param *r = ps + 7 * j;
            r[0] = p_str(b->ns);
            r[1] = p_strn(c->key, c->key_len);
            r[2] = p_int(c->fire_time);
            r[3] = p_str(node);
            r[4] = p_strn(token, 32);
            r[5] = p_int(now);
            r[6] = p_int(now);
        }
        if (i > *sent) *sent = i;
        rc = execute(b, st, ps, 7 * rows, err, "claim");
        if (rc == KAAL_OK && i > *committed) *committed = i;
    }
    return rc;
}

#define CLAIM_ATTEMPTS 3

/* Each INSERT of a claim commits on its own: when a later one fails, the
 * claim fails (nothing won, fail closed) but the rows of the earlier ones are
 * in the log under its token, 'claimed' by no one who will run them. The
 * handle holds them and deletes them (releases them) before its next claim,
 * so the scheduler's retry of those runs wins them (docs/architecture.md).
 * Not at once: the failure was most likely a lock wait or a lost
 * connection, which the DELETE would meet again. */
static int release(kaal_backend *b, const held_claim *h, kaal_error *err)
{
    param ps[4];
    ps[0] = p_str(b->ns);
    ps[1] = p_int(h->lo);
    ps[2] = p_int(h->hi);
    ps[3] = p_strn(h->token, 32);
    return run(b, Q_RELEASE, ps, 4, NULL, NULL, err, "claim", NULL);
}

static int release_held(kaal_backend *b, kaal_error *err)
{
    my_impl *m = IMPL(b);
    int rc = KAAL_OK;
    while (rc == KAAL_OK && m->nheld > 0) {
        rc = release(b, &m->held[m->nheld - 1], err);
        if (rc == KAAL_OK) m->nheld--;
    }
    return rc;
}

/* After a failed claim: its rows with fire times lo..hi are held for the
 * next claim (the oldest of HELD_MAX held claims is given up). */
static void hold_failed(kaal_backend *b, const char *token, int64_t lo, int64_t hi)
{
    my_impl *m = IMPL(b);
    held_claim *h;
    if (m->nheld == HELD_MAX) {
        memmove(m->held, m->held + 1, (HELD_MAX - 1) * sizeof *m->held);
        m->nheld--;
    }
    h = &m->held[m->nheld++];
    memcpy(h->token, token, sizeof h->token);
    h->lo = lo;
    h->hi = hi;
}

static int my_claim(kaal_backend *b, kaal_claim *items, size_t n, int64_t lease_ms,
                    const char *node, int64_t now, kaal_error *err)
{
    char token[33];
    param *ps = NULL, rb[4];
    kaal_claim **order = NULL;
    claim_ctx ctx;
    size_t i, committed = 0, sent = 0;
    int rc = KAAL_OK, attempt;

    (void)lease_ms; /* a claim is a dispatch-log row: it never expires */
    for (i = 0; i < n; i++) items[i].claimed = 0;
    if (n == 0) return KAAL_OK;
    if ((rc = kaal_check_claims("mysql", items, n, node, err)) != KAAL_OK) return rc;
    if ((rc = release_held(b, err)) != KAAL_OK) return rc;
    if (!make_token(token))
        return kaal_error_set(err, KAAL_EBACKEND, NULL, -1,
                              "mysql: claim: no random source for the claim token");
    ps = malloc(7 * CHUNK * sizeof *ps);
    order = kaal_claims_sorted(items, n);
    if (!ps || !order) {
        free(ps);
        free(order);
        return oom(err);
    }
    /* Duplicate-key checks still take gap locks, so InnoDB can pick a
     * deadlock victim; each INSERT commits on its own and rows already
     * inserted carry our token, so sending them all again is exact. */
    for (attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
        rc = claim_insert(b, order, n, ps, node, token, now, &committed, &sent, err);
        if (rc != KAAL_EBACKEND || IMPL(b)->last_errno != 1213) break;
        usleep((useconds_t)(500 * (attempt + 1) + (getpid() % 5) * 200));
    }
    free(ps);
    if (rc == KAAL_OK) {
        ctx.order = order;
        ctx.n = n;
        rb[0] = p_str(b->ns);
        rb[1] = p_int(order[0]->fire_time);
        rb[2] = p_int(order[n - 1]->fire_time);
        rb[3] = p_strn(token, 32);
        rc = run(b, Q_READBACK, rb, 4, claim_row, &ctx, err, "claim", NULL);
    }
    /* Not knowing what was won means nothing was won (fail closed), and
     * what the token did win is held for release: the pairs of the INSERTs
     * that committed, and when the server did not answer (a lost connection,
     * an interrupt), those of the last one sent, which may still commit. */
    if (rc != KAAL_OK) {
        size_t end = rc == KAAL_EBACKEND ? committed : sent;
        for (i = 0; i < n; i++) items[i].claimed = 0;
        if (end > 0) hold_failed(b, token, order[0]->fire_time, order[end - 1]->fire_time);
    }
    free(order);
    return rc;
}

static int my_record(kaal_backend *b, const char *key, int64_t fire_time, const char *status,
                     const char *node, const char *error, int64_t now, kaal_error *err)
{
    param ps[8];
    int rc;
    if ((rc = kaal_check_outcome(status, err)) != KAAL_OK) return rc;
    if ((rc = check_opt("job key", key, err)) != KAAL_OK) return rc;
    if ((rc = check_opt("node", node, err)) != KAAL_OK) return rc;
    ps[0] = p_str(b->ns);
    ps[1] = p_str(key);
    ps[2] = p_int(fire_time);
    ps[3] = p_str(status);
    ps[4] = p_str(node);
    ps[5] = p_str(error);
    ps[6] = p_int(now);
    ps[7] = p_int(now);
    return run(b, Q_RECORD, ps, 8, NULL, NULL, err, "record", NULL);
}

/* The log, newest first, with only the filters given (one prepared
 * statement per combination). With before_key, a keyset page: only rows
 * before (before_fire, before_key) in the ORDER BY. */
static int my_dispatch_page(kaal_backend *b, const kaal_dispatch_query *q, int64_t before_fire,
                            const char *before_key, kaal_dispatch_rows *out, kaal_error *err)
{
    my_impl *m = IMPL(b);
    int mask = (q->key ? 1 : 0) | (q->status ? 2 : 0) | (q->node ? 4 : 0), rc;
    int slot = (before_key ? Q_DISPATCHES_BEFORE : Q_DISPATCHES) + mask;
    param ps[8];
    size_t n = 0;
    if (!m || !m->conn) return fail(b, 0, NULL, err, "dispatches");
    if (!m->st[slot]) {
        char sql[480];
        snprintf(sql, sizeof sql,
                 "SELECT job_key, fire_time, status, node, error, claimed_at, updated_at"
                 " FROM kaal_dispatches WHERE namespace = ?%s%s%s%s"
                 " ORDER BY fire_time DESC, job_key DESC LIMIT ?",
                 mask & 1 ? " AND job_key = ?" : "", mask & 2 ? " AND status = ?" : "",
                 mask & 4 ? " AND node = ?" : "",
                 before_key ? " AND (fire_time < ? OR (fire_time = ? AND job_key < ?))" : "");
        rc = prepared(b, &m->st[slot], sql, err, "dispatches");
        if (rc != KAAL_OK) return rc;
    }
    ps[n++] = p_str(b->ns);
    if (q->key) ps[n++] = p_str(q->key);
    if (q->status) ps[n++] = p_str(q->status);
    if (q->node) ps[n++] = p_str(q->node);
    if (before_key) {
        ps[n++] = p_int(before_fire);
        ps[n++] = p_int(before_fire);
        ps[n++] = p_str(before_key);
    }
    ps[n++] = p_int((int64_t)q->limit);
    rc = run(b, slot, ps, n, kaal_read_dispatch_row, out, err, "dispatches", NULL);
    return rc == KAAL_ENOMEM ? oom(err) : rc;
}

static int my_dispatches(kaal_backend *b, const kaal_dispatch_query *q, kaal_dispatch_rows *out,
                         kaal_error *err)
{
    return my_dispatch_page(b, q, 0, NULL, out, err);
}

/* record_many: one INSERT of CHUNK rows (a shorter batch repeats its last
 * row, which updates that row twice to the same values). */
static int record_many_stmt(kaal_backend *b, MYSQL_STMT **out, kaal_error *err)
{
    my_impl *m = IMPL(b);
    if (!m->record_many) {
        char *sql = kaal_sql_rows(
            "INSERT INTO kaal_dispatches"
            " (namespace, job_key, fire_time, status, node, error, claimed_at, updated_at) VALUES ",
            "(?, ?, ?, ?, ?, ?, ?, ?)", CHUNK, 1,
            " ON DUPLICATE KEY UPDATE status = VALUES(status),"
            " node = COALESCE(VALUES(node), node), error = VALUES(error),"
            " updated_at = VALUES(updated_at)");
        int rc;
        if (!sql) return oom(err);
        rc = prepared(b, &m->record_many, sql, err, "record");
        free(sql);
        if (rc != KAAL_OK) return rc;
    }
    *out = m->record_many;
    return KAAL_OK;
}

static int my_record_many(kaal_backend *b, const kaal_outcome *items, size_t n, const char *node,
                          int64_t now, kaal_error *err)
{
    param *ps;
    size_t i, j;
    int rc;
    if (n == 0) return KAAL_OK;
    if ((rc = check_opt("node", node, err)) != KAAL_OK) return rc;
    for (i = 0; i < n; i++) {
        if ((rc = kaal_check_outcome(items[i].status, err)) != KAAL_OK) return rc;
        if ((rc = check_opt("job key", items[i].key, err)) != KAAL_OK) return rc;
    }
    if (!(ps = malloc(8 * CHUNK * sizeof *ps))) return oom(err);
    for (i = 0; rc == KAAL_OK && i < n; i += CHUNK) {
        size_t cnt = n - i < CHUNK ? n - i : CHUNK;
        MYSQL_STMT *st = NULL;
        if ((rc = record_many_stmt(b, &st, err)) != KAAL_OK) break;
        for (j = 0; j < CHUNK; j++) {
            const kaal_outcome *o = items + i + (j < cnt ? j : cnt - 1);
            param *r = ps + 8 * j;
            r[0] = p_str(b->ns);
            r[1] = p_str(o->key);
            r[2] = p_int(o->fire_time);
            r[3] = p_str(o->status);
            r[4] = p_str(node);
            r[5] = p_str(o->error);
            r[6] = p_int(now);
            r[7] = p_int(now);
        }
        rc = execute(b, st, ps, 8 * CHUNK, err, "record");
    }
    free(ps);
    return rc;
}

/* latest_fires: CHUNK numbered subqueries, each one primary-key lookup (a
 * MAX over a prefix of the key is read off the index). */
static int latest_stmt(kaal_backend *b, MYSQL_STMT **out, kaal_error *err)
{
    my_impl *m = IMPL(b);
    static const char part[] =
        "SELECT %zu, (SELECT MAX(fire_time) FROM kaal_dispatches WHERE namespace = ? AND job_key = ?)";
    size_t i, cap = CHUNK * (sizeof part + 16), len = 0;
    char *sql;
    int rc;
    if (!m->latest) {
        if (!(sql = malloc(cap))) return oom(err);
        for (i = 0; i < CHUNK; i++) {
            if (i) len += (size_t)snprintf(sql + len, cap - len, " UNION ALL ");
            len += (size_t)snprintf(sql + len, cap - len, part, i);
        }
        rc = prepared(b, &m->latest, sql, err, "latest_fires");
        free(sql);
        if (rc != KAAL_OK) return rc;
    }
    *out = m->latest;
    return KAAL_OK;
}

typedef struct latest_ctx {
    kaal_latest *items;
    size_t n;
} latest_ctx;

static int latest_row(void *vctx, const kaal_columns *cols)
{
    latest_ctx *x = vctx;
    int64_t at = cols->num(cols->src, 0);
    if (at < 0 || (size_t)at >= x->n || cols->is_null(cols->src, 1)) return KAAL_OK;
    x->items[at].fire_time = cols->num(cols->src, 1);
    x->items[at].found = 1;
    return KAAL_OK;
}

static int my_latest_fires(kaal_backend *b, kaal_latest *items, size_t n, kaal_error *err)
{
    param ps[2 * CHUNK];
    size_t i, j;
    int rc = KAAL_OK;
    for (i = 0; i < n; i++) items[i].found = 0;
    for (i = 0; rc == KAAL_OK && i < n; i += CHUNK) {
        size_t cnt = n - i < CHUNK ? n - i : CHUNK;
        latest_ctx x = {items + i, cnt};
        MYSQL_STMT *st = NULL;
        if ((rc = latest_stmt(b, &st, err)) != KAAL_OK) break;
        for (j = 0; j < CHUNK; j++) {
            /* pad with the last key: its answers past cnt are ignored */
            const kaal_latest *k = items + i + (j < cnt ? j : cnt - 1);
            ps[2 * j] = p_str(b->ns);
            ps[2 * j + 1] = p_strn(k->key, k->key_len);
        }
        rc = execute(b, st, ps, 2 * CHUNK, err, "latest_fires");
        if (rc == KAAL_OK) rc = fetch(b, st, latest_row, &x, err, "latest_fires");
    }
    return rc == KAAL_ENOMEM ? oom(err) : rc;
}

static int my_cleanup(kaal_backend *b, int64_t before, size_t limit, size_t *deleted,
                      kaal_error *err)
{
    param ps[3];
    unsigned long long affected = 0;
    int rc;
    *deleted = 0;
    if (limit == 0) return KAAL_OK;
    ps[0] = p_str(b->ns);
    ps[1] = p_int(before);
    ps[2] = p_int((int64_t)limit);
    rc = run(b, Q_CLEANUP, ps, 3, NULL, NULL, err, "cleanup", &affected);
    if (rc == KAAL_OK) *deleted = (size_t)affected;
    return rc;
}

/* ------------------------------------------------------------------ */
/* States                                                              */

static int my_set_enabled(kaal_backend *b, const char *key, int enabled, kaal_error *err)
{
    param ps[4];
    int rc;
    if ((rc = check_opt("job key", key, err)) != KAAL_OK) return rc;
    ps[0] = p_str(b->ns);
    ps[1] = p_str(key);
    ps[2] = p_int(enabled ? 1 : 0);
    ps[3] = p_int((int64_t)time(NULL));
    return run(b, Q_SET_ENABLED, ps, 4, NULL, NULL, err, "set_enabled", NULL);
}

static int my_states(kaal_backend *b, kaal_state_rows *out, kaal_error *err)
{
    param ps[1];
    int rc;
    ps[0] = p_str(b->ns);
    rc = run(b, Q_STATES, ps, 1, kaal_read_state_row, out, err, "states", NULL);
    return rc == KAAL_ENOMEM ? oom(err) : rc;
}

/* ------------------------------------------------------------------ */
/* Delayed jobs                                                        */

static int my_delayed_add(kaal_backend *b, const kaal_delayed_row *job, kaal_error *err)
{
    param ps[7];
    int rc;
    if (!job->job_id || !job->job_class)
        return kaal_error_set(err, KAAL_EARG, "job_id", -1, "job_id and job_class are required");
    if ((rc = check_opt("job_id", job->job_id, err)) != KAAL_OK) return rc;
    if ((rc = check_opt("job_class", job->job_class, err)) != KAAL_OK) return rc;
    if ((rc = check_opt("queue", job->queue, err)) != KAAL_OK) return rc;
    ps[0] = p_str(b->ns);
    ps[1] = p_str(job->job_id);
    ps[2] = p_int(job->run_at_ms);
    ps[3] = p_str(job->job_class);
    ps[4] = p_str(job->queue);
    ps[5] = p_str(job->args ? job->args : "[]");
    ps[6] = p_int((int64_t)time(NULL));
    rc = run(b, Q_DELAYED_ADD, ps, 7, NULL, NULL, err, "delayed_add", NULL);
    if (rc == KAAL_EDUPLICATE)
        return kaal_error_set(err, KAAL_EDUPLICATE, "job_id", -1,
                              "delayed job %.160s is already pending", job->job_id);
    return rc;
}

/* DELETE the picked jobs out[first..] one by one, by full primary key: a
 * const lookup that can only touch the rows this transaction holds (an IN
 * list may be planned as a scan, which waits on other claimers' rows). */
static int unpick(kaal_backend *b, kaal_delayed_rows *out, size_t first, kaal_error *err)
{
    param ps[2];
    size_t i;
    int rc = KAAL_OK;
    for (i = first; rc == KAAL_OK && i < out->len; i++) {
        ps[0] = p_str(b->ns);
        ps[1] = p_str(out->rows[i].job_id);
        rc = run(b, Q_DELAYED_CANCEL, ps, 2, NULL, NULL, err, "delayed_claim", NULL);
    }
    return rc;
}

static int delayed_claim_once(kaal_backend *b, int64_t now_ms, size_t limit,
                              kaal_delayed_rows *out, kaal_error *err)
{
    my_impl *m = IMPL(b);
    size_t first = out->len;
    param ps[3];
    int rc;
    if (limit == 0) return KAAL_OK;
    if (!m || !m->conn) return fail(b, 0, NULL, err, "delayed_claim");
    rc = simple(b, "START TRANSACTION", err, "delayed_claim");
    if (rc != KAAL_OK) return rc;
    ps[0] = p_str(b->ns);
    ps[1] = p_int(now_ms);
    ps[2] = p_int((int64_t)limit);
    rc = run(b, m->skip_locked ? Q_DELAYED_PICK_SKIP : Q_DELAYED_PICK_WAIT, ps, 3,
             kaal_read_delayed_row, out, err, "delayed_claim", NULL);
    if (rc == KAAL_ENOMEM) rc = oom(err);
    if (rc == KAAL_OK && out->len > first) rc = unpick(b, out, first, err);
    if (rc == KAAL_OK) rc = simple(b, "COMMIT", err, "delayed_claim");
    if (rc != KAAL_OK) {
        if (b->connected) {
            kaal_error ignored;
            simple(b, "ROLLBACK", &ignored, "delayed_claim");
        }
        kaal_delayed_rows_truncate(out, first);
    }
    return rc;
}

/* InnoDB may still pick a deadlock victim among concurrent claimers; the
 * victim's transaction was rolled back whole, so trying again is safe. */
static int my_delayed_claim(kaal_backend *b, int64_t now_ms, size_t limit,
                            kaal_delayed_rows *out, kaal_error *err)
{
    int attempt, rc = KAAL_OK;
    for (attempt = 0; attempt < 5; attempt++) {
        rc = delayed_claim_once(b, now_ms, limit, out, err);
        if (rc != KAAL_EBACKEND || !IMPL(b) || IMPL(b)->last_errno != 1213) break;
        usleep((useconds_t)(1000 * (attempt + 1) + (getpid() % 7) * 300));
    }
    return rc;
}

static int my_delayed_cancel(kaal_backend *b, const char *job_id, int *found, kaal_error *err)
{
    param ps[2];
    unsigned long long affected = 0;
    int rc;
    *found = 0;
    if (!job_id || kaal_utf8_chars(job_id, strlen(job_id)) < 0) return KAAL_OK; /* cannot be stored */
    ps[0] = p_str(b->ns);
    ps[1] = p_str(job_id);
    rc = run(b, Q_DELAYED_CANCEL, ps, 2, NULL, NULL, err, "delayed_cancel", &affected);
    if (rc == KAAL_OK) *found = affected > 0;
    return rc;
}

static int count_row(void *ctx, const kaal_columns *c)
{
    *(size_t *)ctx = (size_t)c->num(c->src, 0);
    return KAAL_OK;
}

static int my_delayed_count(kaal_backend *b, size_t *count, kaal_error *err)
{
    param ps[1];
    *count = 0;
    ps[0] = p_str(b->ns);
    return run(b, Q_DELAYED_COUNT, ps, 1, count_row, count, err, "delayed_count", NULL);
}

static int my_delayed_list(kaal_backend *b, size_t limit, kaal_delayed_rows *out,
                           kaal_error *err)
{
    param ps[2];
    int rc;
    if (limit == 0) return KAAL_OK;
    ps[0] = p_str(b->ns);
    ps[1] = p_int((int64_t)limit);
    rc = run(b, Q_DELAYED_LIST, ps, 2, kaal_read_delayed_row, out, err, "delayed_list", NULL);
    return rc == KAAL_ENOMEM ? oom(err) : rc;
}

/* ------------------------------------------------------------------ */
/* Nodes                                                               */

static int my_heartbeat(kaal_backend *b, const char *node, const char *info, int64_t now,
                        int64_t ttl, kaal_error *err)
{
    param ps[4];
    int rc;
    if (!node) return kaal_error_set(err, KAAL_EARG, "node", -1, "node is required");
    if ((rc = check_opt("node", node, err)) != KAAL_OK) return rc;
    ps[0] = p_str(b->ns);
    ps[1] = p_str(node);
    ps[2] = p_str(info);
    ps[3] = p_int(now);
    rc = run(b, Q_HEARTBEAT, ps, 4, NULL, NULL, err, "heartbeat", NULL);
    if (rc != KAAL_OK || ttl <= 0) return rc;
    ps[0] = p_str(b->ns);
    ps[1] = p_int(now - ttl);
    ps[2] = p_str(node);
    return run(b, Q_NODES_EXPIRE, ps, 3, NULL, NULL, err, "heartbeat", NULL);
}

static int my_nodes(kaal_backend *b, int64_t since, kaal_node_rows *out, kaal_error *err)
{
    param ps[2];
    int rc;
    ps[0] = p_str(b->ns);
    ps[1] = p_int(since);
    rc = run(b, Q_NODES, ps, 2, kaal_read_node_row, out, err, "nodes", NULL);
    return rc == KAAL_ENOMEM ? oom(err) : rc;
}

static int my_dispatches_before(kaal_backend *b, const kaal_dispatch_query *q, int64_t before_fire,
                                const char *before_key, kaal_dispatch_rows *out, kaal_error *err)
{
    return my_dispatch_page(b, q, before_fire, before_key, out, err);
}

static int my_delayed_list_after(kaal_backend *b, int64_t after_ms, const char *after_id, size_t limit,
                                 kaal_delayed_rows *out, kaal_error *err)
{
    param ps[5];
    int rc;
    if (limit == 0) return KAAL_OK;
    ps[0] = p_str(b->ns);
    ps[1] = p_int(after_ms);
    ps[2] = p_int(after_ms);
    ps[3] = p_str(after_id);
    ps[4] = p_int((int64_t)limit);
    rc = run(b, Q_DELAYED_LIST_AFTER, ps, 5, kaal_read_delayed_row, out, err, "delayed_list", NULL);
    return rc == KAAL_ENOMEM ? oom(err) : rc;
}

/* ------------------------------------------------------------------ */
/* Stored schedules                                                    */

static int sched_version(kaal_backend *b, int64_t *version, kaal_error *err)
{
    param ps[1];
    *version = 0;
    ps[0] = p_str(b->ns);
    return run(b, Q_SCHED_VERSION, ps, 1, int_row, version, err, "schedules", NULL);
}

static void sched_rollback(kaal_backend *b)
{
    kaal_error ignored;
    if (b->connected) simple(b, "ROLLBACK", &ignored, "schedules");
}

/* One change: START TRANSACTION, bump the counter, read it, then the
 * upsert (row) or the removal (key); a removal of a key not stored rolls
 * back, so the counter moves only with a change. */
static int sched_write(kaal_backend *b, const kaal_schedule_row *row, const char *key, int64_t now, int *found,
                       int64_t *version, kaal_error *err)
{
    param ps[11];
    unsigned long long affected = 0;
    int rc;
    if (row && ((rc = check_opt("time_zone", row->time_zone, err)) != KAAL_OK ||
                (rc = check_opt("queue", row->queue, err)) != KAAL_OK))
        return rc;
    if ((rc = simple(b, "START TRANSACTION", err, "schedules")) != KAAL_OK) return rc;
    ps[0] = p_str(b->ns);
    rc = run(b, Q_SCHED_BUMP, ps, 1, NULL, NULL, err, "schedules", NULL);
    if (rc == KAAL_OK) rc = sched_version(b, version, err);
    if (rc == KAAL_OK && row) {
        ps[1] = p_str(row->key);
        ps[2] = p_str(row->cron);
        ps[3] = p_str(row->job_class);
        ps[4] = p_str(row->args ? row->args : "[]");
        ps[5] = p_str(row->kwargs ? row->kwargs : "{}");
        ps[6] = p_str(row->time_zone);
        ps[7] = p_str(row->queue);
        ps[8] = p_int(row->enabled ? 1 : 0);
        ps[9] = p_int(*version);
        ps[10] = p_int(now);
        rc = run(b, Q_SCHED_UPSERT, ps, 11, NULL, NULL, err, "schedules", NULL);
    } else if (rc == KAAL_OK) {
        ps[0] = p_int(*version);
        ps[1] = p_int(now);
        ps[2] = p_str(b->ns);
        ps[3] = p_str(key);
        rc = run(b, Q_SCHED_REMOVE, ps, 4, NULL, NULL, err, "schedules", &affected);
        if (rc == KAAL_OK) *found = affected > 0;
        if (rc == KAAL_OK && !*found) {
            sched_rollback(b);
            return sched_version(b, version, err);
        }
    }
    if (rc == KAAL_OK) rc = simple(b, "COMMIT", err, "schedules");
    if (rc != KAAL_OK) sched_rollback(b);
    return rc;
}

static int my_sched_upsert(kaal_backend *b, const kaal_schedule_row *row, int64_t now, int64_t *version,
                           kaal_error *err)
{
    return sched_write(b, row, NULL, now, NULL, version, err);
}

static int my_sched_remove(kaal_backend *b, const char *key, int64_t now, int *found, int64_t *version,
                           kaal_error *err)
{
    *found = 0;
    return sched_write(b, NULL, key, now, found, version, err);
}

static int sched_rows(kaal_backend *b, int q, param *ps, size_t n, kaal_schedule_rows *out, kaal_error *err)
{
    int rc = run(b, q, ps, n, kaal_read_schedule_row, out, err, "schedules", NULL);
    return rc == KAAL_ENOMEM ? oom(err) : rc;
}

static int my_sched_get(kaal_backend *b, const char *key, kaal_schedule_rows *out, kaal_error *err)
{
    param ps[2];
    ps[0] = p_str(b->ns);
    ps[1] = p_str(key);
    return sched_rows(b, Q_SCHED_GET, ps, 2, out, err);
}

static int my_sched_list(kaal_backend *b, const char *after, size_t limit, kaal_schedule_rows *out,
                         kaal_error *err)
{
    param ps[3];
    ps[0] = p_str(b->ns);
    if (!after) {
        ps[1] = p_int((int64_t)limit);
        return sched_rows(b, Q_SCHED_LIST, ps, 2, out, err);
    }
    ps[1] = p_str(after);
    ps[2] = p_int((int64_t)limit);
    return sched_rows(b, Q_SCHED_LIST_AFTER, ps, 3, out, err);
}

static int my_sched_changes(kaal_backend *b, int64_t since, size_t limit, kaal_schedule_rows *out,
                            int64_t *version, kaal_error *err)
{
    param ps[3];
    int rc = sched_version(b, version, err);
    if (rc != KAAL_OK || *version <= since) return rc;
    ps[0] = p_str(b->ns);
    ps[1] = p_int(since);
    ps[2] = p_int((int64_t)limit);
    return sched_rows(b, Q_SCHED_CHANGES, ps, 3, out, err);
}

static int my_sched_count(kaal_backend *b, size_t *count, kaal_error *err)
{
    param ps[1];
    *count = 0;
    ps[0] = p_str(b->ns);
    return run(b, Q_SCHED_COUNT, ps, 1, count_row, count, err, "schedules", NULL);
}

static const kaal_schedule_ops my_schedule_ops = {
    my_sched_upsert, my_sched_remove, my_sched_get, my_sched_list, my_sched_changes, my_sched_count,
};

const kaal_backend_vtable kaal_backend_mysql = KAAL_BACKEND_VTABLE("mysql", my);

#endif /* KAAL_HAVE_MYSQL */
