/* Fuzz target "redis_reply": every Redis backend operation, and the
 * replies read while connecting (AUTH, SELECT, ROLE, SCRIPT LOAD), on a
 * session whose server answers with the fuzz bytes. The first byte picks
 * the operation; the rest is what the "server" sends, read by hiredis's
 * reader into reply objects that backend_redis.c interprets (arrays of the
 * wrong shape, nil or integer elements, error replies, NOSCRIPT, READONLY,
 * truncated payloads, ...). The connection is one end of a socketpair whose
 * other end holds the bytes and then closes, so every exchange ends at once:
 * with a reply, or with "connection lost". backend_redis.c and redis_io.c
 * (without TLS) are compiled into this file; only fuzz_attach below knows
 * their structs. */
#include "backend_redis.c"
#include "redis_io.c"

#include <fcntl.h>
#include <signal.h>

#include "fuzz.h"

/* hiredis allocates 8 bytes per element an array reply announces before
 * any element arrives ("*444444441" asks for 3.5 GB): a server can exhaust
 * a client's memory that way. The fuzzer's memory limit would report it on
 * every such input, so arrays here are capped (beyond the cap the reader
 * fails as "out of memory", which the backend reports as a lost
 * connection). */
#define FUZZ_MAX_ARRAY 65536
static redisReplyObjectFunctions capped;
static void *(*create_array)(const redisReadTask *, int);

static void *capped_array(const redisReadTask *task, int elements)
{
    return elements > FUZZ_MAX_ARRAY ? NULL : create_array(task, elements);
}

/* A connected session on fd, as redis_connect leaves it. */
static void fuzz_attach(kaal_backend *b, int fd)
{
    kaal_error err;
    redis_impl *r;
    int i;
    FUZZ_CHECK(ensure_impl(b, &err) == KAAL_OK, "ensure_impl");
    r = impl_of(b);
    r->timeout_ms = 2000;
    for (i = 0; i < S_COUNT; i++) {
        memset(r->sha[i], 'a', 40);
        r->sha[i][40] = '\0';
    }
    r->io = io_new(fd);
    FUZZ_CHECK(r->io != NULL, "io_new");
    if (!create_array) {
        capped = *r->io->reader->fn;
        create_array = capped.createArray;
        capped.createArray = capped_array;
    }
    r->io->reader->fn = &capped;
    b->connected = 1;
}

static void check_result(int rc, const kaal_error *err)
{
    if (rc == KAAL_OK) return;
    /* no allocation fails here: KAAL_ENOMEM would misname a bad reply */
    FUZZ_CHECK(rc == KAAL_EBACKEND || rc == KAAL_ECONNECT || rc == KAAL_EDUPLICATE ||
                   rc == KAAL_ECONFIG /* SELECT refused */,
               "unexpected status %d: %s", rc, err->message);
    FUZZ_CHECK(err->code == (kaal_status)rc && err->message[0], "status %d without its error", rc);
}

static void check_dispatch_rows(const kaal_dispatch_rows *rows, size_t limit)
{
    size_t i;
    FUZZ_CHECK(rows->len <= limit, "%zu rows for a limit of %zu", rows->len, limit);
    for (i = 0; i < rows->len; i++)
        FUZZ_CHECK(rows->rows[i].key && rows->rows[i].status, "row without key or status");
}

static void check_delayed_rows(const kaal_delayed_rows *rows)
{
    size_t i;
    for (i = 0; i < rows->len; i++)
        FUZZ_CHECK(rows->rows[i].job_id && rows->rows[i].args, "job without id or args");
}

static void run_op(kaal_backend *b, int op)
{
    const kaal_backend_vtable *vt = &kaal_backend_redis;
    kaal_error err;
    kaal_dispatch_rows drows = {0};
    kaal_delayed_rows jrows = {0};
    kaal_node_rows nrows = {0};
    kaal_state_rows srows = {0};
    kaal_dispatch_query q = {NULL, NULL, NULL, 5};
    kaal_claim items[3] = {{"a", 1, 60, 0}, {"b:c", 3, 120, 0}, {"a", 1, 60, 0}};
    kaal_delayed_row job = {"j1", 1000, "Job", NULL, "[1]"};
    size_t n = 0;
    int found = 0, rc;

    memset(&err, 0, sizeof err);
    switch (op) {
    case 0: rc = vt->claim(b, items, 3, 30000, "node-1", 100, &err); break;
    case 1: rc = vt->record(b, "a", 60, "failed", "node-1", "boom", 100, &err); break;
    case 2: rc = vt->dispatches(b, &q, &drows, &err); break;
    case 3:
        q.key = "a";
        q.status = "dispatched";
        q.node = "node-1";
        rc = vt->dispatches(b, &q, &drows, &err);
        break;
    case 4: rc = vt->cleanup(b, 1000, 10, &n, &err); break;
    case 5: rc = vt->set_enabled(b, "a", 0, &err); break;
    case 6: rc = vt->states(b, &srows, &err); break;
    case 7: rc = vt->delayed_add(b, &job, &err); break;
    case 8: rc = vt->delayed_claim(b, 5000, 10, &jrows, &err); break;
    case 9: rc = vt->delayed_cancel(b, "j1", &found, &err); break;
    case 10: rc = vt->delayed_count(b, &n, &err); break;
    case 11: rc = vt->delayed_list(b, 10, &jrows, &err); break;
    case 12: rc = vt->heartbeat(b, "node-1", "{\"pid\":1}", 100, 60, &err); break;
    case 13: rc = vt->nodes(b, 0, &nrows, &err); break;
    case 14: rc = vt->dispatches_before(b, &q, 100, "b", &drows, &err); break;
    case 15: rc = vt->delayed_list_after(b, 10, "j0", 10, &jrows, &err); break;
    /* the steps of redis_connect after the socket is open */
    case 16: rc = authenticate(b, "user", "secret", "fuzz", &err); break;
    case 17: rc = select_db(b, 3, "fuzz", &err); break;
    case 18: rc = check_master(b, "fuzz", &err); break;
    default:
        rc = load_scripts(b, "fuzz", &err);
        if (rc == KAAL_OK) rc = vt->cleanup(b, 1000, 10, &n, &err);
        break;
    }
    check_result(rc, &err);
    if (rc == KAAL_OK) { /* a failed call's rows are never read */
        check_dispatch_rows(&drows, q.limit);
        check_delayed_rows(&jrows);
    }
    kaal_dispatch_rows_free(&drows);
    kaal_delayed_rows_free(&jrows);
    kaal_node_rows_free(&nrows);
    kaal_state_rows_free(&srows);
}

#define N_OPS 20

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static kaal_backend *b;
    int sv[2];
    size_t off = 0;

    if (size < 1) return 0;
    if (!b) {
        signal(SIGPIPE, SIG_IGN); /* as in Ruby */
        b = kaal_backend_new(&kaal_backend_redis, "fz", 2);
        FUZZ_CHECK(b != NULL, "kaal_backend_new");
    }
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    while (off < size - 1) {
        ssize_t w = write(sv[1], data + 1 + off, size - 1 - off);
        FUZZ_CHECK(w > 0, "write to the socketpair");
        off += (size_t)w;
    }
    shutdown(sv[1], SHUT_WR);
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK); /* as redis_io opens it */
    fuzz_attach(b, sv[0]);
    run_op(b, data[0] % N_OPS);
    kaal_backend_redis.close(b); /* closes sv[0] when still open */
    FUZZ_CHECK(b->impl == NULL && !b->connected, "close left a session");
    close(sv[1]);
    return 0;
}
