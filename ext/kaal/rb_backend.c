/* kaal: the Kaal::Native::Backend class, the binding around the C vtable in
 * backend.h. The public keyword API is in lib/kaal/backend.rb; the methods
 * here are private primitives taking plain, validated values:
 *
 *   Kaal::Native::Backend.new(kind, namespace, params)  params: Hash, String keys
 *   #kind -> Symbol, #namespace -> String, #connected? (public)
 *   #_connect, #_close, #_ping, #_migrate
 *   #_claim([[key, fire_time], ...], lease_ms, node, now) -> [true/false, ...]
 *   #_claim_push(keys, fire_times, pushes, lease_ms, node, now) -> the same; #claim_push? (public)
 *   #_record(key, fire_time, status, node, error, now)
 *   #_dispatches(key, status, node, limit) -> [{key:, fire_time:, ...}]
 *   #_dispatches_before(key, status, node, limit, before_fire, before_key) -> the same, a keyset page
 *   #_latest_fires([key, ...]) -> [latest fire_time or nil, ...] (the dispatch log, per key)
 *   #_record_many([[key, fire_time, status, error], ...], node, now) (distinct pairs)
 *   #_delayed_list_after(after_ms, after_id, limit) -> a keyset page of #_delayed_list
 *   #_cleanup(before, limit) -> Integer
 *   #_set_enabled(key, enabled), #_states -> {key => bool}
 *   #_delayed_add(job_id, run_at_ms, job_class, queue, args_json)
 *   #_delayed_claim(now_ms, limit), #_delayed_list(limit) -> [{job_id:, ...}]
 *   #_delayed_cancel(job_id) -> bool, #_delayed_count -> Integer
 *   #_heartbeat(node, info, now, ttl), #_nodes(since) -> [{node:, info:, last_seen:}]
 *   #_schema_version -> Integer (the store's schema step)
 *   #_layout -> "2" or "1+2" (redis: the namespace's key layout), nil for other stores
 *   #_schedule_upsert(key, cron, job_class, args_json, kwargs_json, time_zone, queue, enabled, now) -> version
 *   #_schedule_remove(key, now) -> [found, version], #_schedule_get(key) -> {key:, cron:, ...} or nil
 *   #_schedule_list(after, limit) -> [{...}] by key, #_schedule_changes(since, limit) -> [version, [{...}]]
 *   #_schedule_change_columns(since, limit) -> the same rows as columns (build_schedule_columns)
 *   #_schedule_count -> Integer
 *   #_target -> {"host"=>, "port"=>, ...} (never the password; for #inspect)
 *   Kaal::Native.stored_jobs(klass, keys, args, def_of, specs) -> [jobs, rest] (native_stored_jobs)
 *   Kaal::Native.backends -> ["memory", ...], Kaal::Native.schema(dialect) -> [step 1's DDL],
 *   Kaal::Native.schema_steps(dialect) -> [[step 1's], [step 2's], ...], Kaal::Native::SCHEMA_VERSION
 *
 * Every call: Ruby arguments are checked with the GVL held, then copied into
 * malloc'd C memory (a Ruby String may be moved or changed by another thread
 * while we run without the GVL); then, WITHOUT the GVL, the handle is
 * acquired (one call at a time), a handle used in a forked child drops the
 * parent's session (vt->discard), the session is opened when needed, and the
 * vtable function runs. Back with the GVL, the rows become Ruby objects and a
 * non-OK status is raised. All C memory is released in an rb_ensure.
 *
 * Interrupts (Thread#raise, Thread#kill, Timeout, exit, a signal): the
 * unblocking function (call_ubf) wakes the call wherever it waits: for the
 * handle, or on the server's socket (kaal_wait in backend.c). A call cut
 * short raises the interrupt, or is retried when the interrupt turns out to
 * be a trap handler that returned. When the interrupt is raised after the
 * call completed, its results cannot reach Ruby: delayed jobs it took go
 * back to the store and pairs it won are recorded "failed" with the reason
 * (call_ensure; neither may vanish silently). See docs/architecture.md.
 *
 * Adding a method: every method that talks to the store is written the same
 * way. The Ruby method fills a call with its checked arguments and runs it;
 * its op (an OP_ value) names the vtable call, made in run_op without the
 * GVL, which reads the arguments from the call and writes the results into
 * it:
 *
 *   static VALUE backend_thing(VALUE self, VALUE key, VALUE since, VALUE limit)
 *   {
 *       call c;
 *       call_init(&c, self, OP_THING);      // may raise
 *       arg_name(&c, key, "job key", 0);    // -> s[0] in run_op (nil -> NULL when nullable)
 *       arg_i64(&c, since, "since");        // -> n[0]
 *       arg_limit(&c, limit, "limit");      // -> c->limit
 *       c.build = build_dispatches;         // optional: the result for Ruby
 *       return run_call(&c);                // or: run_call(&c); return SIZET2NUM(c.count);
 *   }
 *
 *   in run_op:  case OP_THING: return vt->thing(b, s[0], n[0], c->limit, &c->dispatches, err);
 *
 * The arg_* functions check (arg_str: text without NUL bytes; arg_name: a
 * name for a VARCHAR(255) column) and may raise; they copy nothing, so
 * raising leaks nothing. An array argument (arg_claims, arg_latest,
 * arg_outcomes) is checked whole first, then copied into memory from
 * call_alloc, which cannot raise. run_call copies the Strings into C memory, runs the
 * op, hands the call to build (with the GVL), and frees every copy and every
 * row list of the call (dispatches, delayed, nodes, states, schedules) whatever
 * happened. An op whose results must never vanish (taken jobs, won claims)
 * also sets c.give_back: run when an interrupt kept them from Ruby. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include <ruby/thread.h>

#include "backend.h"
#include "rb_kaal.h"
#include "schema.h"

static VALUE cBackend;
static ID id_key, id_fire_time, id_status, id_node, id_error, id_claimed_at, id_updated_at;
static ID id_job_id, id_run_at_ms, id_job_class, id_queue, id_args_json, id_info, id_last_seen;
static ID id_cron, id_kwargs_json, id_time_zone, id_enabled, id_deleted, id_version;

/* Every kind kaal knows, with the Debian package its client library is in. */
static const struct known_kind {
    const char *name;
    const char *package;
} KNOWN_KINDS[] = {
    {"memory", NULL},
    {"redis", "libhiredis-dev"},
    {"sqlite", "libsqlite3-dev"},
    {"postgres", "libpq-dev"},
    {"mysql", "libmariadb-dev"},
};
#define N_KINDS (sizeof KNOWN_KINDS / sizeof KNOWN_KINDS[0])

/* ------------------------------------------------------------------ */
/* The object                                                          */

typedef struct backend_obj {
    kaal_backend *b;  /* NULL until initialize */
} backend_obj;

static void backend_free(void *p)
{
    backend_obj *o = p;
    /* No call can be running: a thread inside a call keeps the object
     * alive. Never raise or call Ruby here. */
    kaal_backend_free(o->b);
    xfree(o);
}

static size_t backend_memsize(const void *p)
{
    const backend_obj *o = p;
    return sizeof *o + (o->b ? kaal_backend_memsize(o->b) : 0);
}

static const rb_data_type_t backend_type = {
    "Kaal::Native::Backend",
    {NULL, backend_free, backend_memsize, NULL, {0}},
    0,
    0,
    RUBY_TYPED_WB_PROTECTED,
};

static VALUE backend_alloc(VALUE klass)
{
    backend_obj *o;
    return TypedData_Make_Struct(klass, backend_obj, &backend_type, o);
}

static kaal_backend *get_backend(VALUE self)
{
    backend_obj *o;
    TypedData_Get_Struct(self, backend_obj, &backend_type, o);
    if (!o->b) rb_raise(rb_eTypeError, "uninitialized Kaal::Native::Backend");
    return o->b;
}

/* ------------------------------------------------------------------ */
/* Argument checks (with the GVL; they may raise)                      */

static const char *kind_name(VALUE kind)
{
    if (SYMBOL_P(kind)) kind = rb_sym2str(kind);
    if (!RB_TYPE_P(kind, T_STRING)) {
        rb_raise(rb_eArgError, "backend kind must be a String or Symbol, got %" PRIsVALUE,
                 rb_obj_class(kind));
    }
    return StringValueCStr(kind);
}

/* A String without NUL bytes; nil allowed when nullable. */
static VALUE check_str(VALUE v, const char *what, int nullable)
{
    if (NIL_P(v) && nullable) return v;
    if (SYMBOL_P(v)) v = rb_sym2str(v);
    if (!RB_TYPE_P(v, T_STRING)) {
        rb_raise(rb_eArgError, "%s must be a String%s, got %" PRIsVALUE, what,
                 nullable ? " or nil" : "", rb_obj_class(v));
    }
    if (memchr(RSTRING_PTR(v), '\0', (size_t)RSTRING_LEN(v))) {
        rb_raise(rb_eArgError, "%s must not contain NUL bytes", what);
    }
    return v;
}

/* A String for a VARCHAR(255) column (job keys, node names, delayed job ids,
 * class and queue names): as check_str, not empty, and valid UTF-8 of at
 * most 255 characters. Checked here for every backend, so a name that works on one
 * works on all (memory and Redis have no column, SQLite does not enforce it).
 * kind: the backend's name, for the message (looked up once per call, not per key). */
static VALUE check_name(const char *kind, VALUE v, const char *what, int nullable)
{
    kaal_error err;
    v = check_str(v, what, nullable);
    if (NIL_P(v)) return v;
    if (RSTRING_LEN(v) == 0) rb_raise(rb_eArgError, "%s must not be empty", what);
    memset(&err, 0, sizeof err);
    if (kaal_check_varchar(kind, what, RSTRING_PTR(v),
                           (size_t)RSTRING_LEN(v), &err) != KAAL_OK) {
        kaal_raise(&err);
    }
    return v;
}

static int64_t check_i64(VALUE v, const char *what)
{
    if (!RB_INTEGER_TYPE_P(v)) {
        rb_raise(rb_eArgError, "%s must be an Integer, got %" PRIsVALUE, what, rb_obj_class(v));
    }
    return (int64_t)NUM2LL(v);
}

static size_t check_limit(VALUE v, const char *what)
{
    int64_t n = check_i64(v, what);
    if (n <= 0) rb_raise(rb_eArgError, "%s must be > 0, got %" PRId64, what, n);
    return (size_t)n;
}

/* ------------------------------------------------------------------ */
/* One call on the handle (the pattern is described at the top)        */

#define MAX_STRS 7
#define MAX_NUMS 4
#define MAX_OWNED 4

/* What a call runs (run_op). */
typedef enum op {
    OP_CONNECT, OP_CLOSE, OP_PING, OP_MIGRATE,
    OP_CLAIM, OP_RECORD, OP_DISPATCHES, OP_DISPATCHES_BEFORE, OP_CLEANUP,
    OP_SET_ENABLED, OP_STATES,
    OP_DELAYED_ADD, OP_DELAYED_CLAIM, OP_DELAYED_LIST, OP_DELAYED_LIST_AFTER,
    OP_DELAYED_CANCEL, OP_DELAYED_COUNT,
    OP_HEARTBEAT, OP_NODES, OP_CLAIM_PUSH,
    OP_SCHEMA_VERSION, OP_SCHEDULE_UPSERT, OP_SCHEDULE_REMOVE, OP_SCHEDULE_GET, OP_SCHEDULE_LIST,
    OP_SCHEDULE_CHANGES, OP_SCHEDULE_COUNT, OP_LATEST_FIRES, OP_RECORD_MANY, OP_LAYOUT,
} op;

typedef struct call call;
/* A hand-back (see give_back below), run without the GVL. */
typedef int (*give_back_fn)(kaal_backend *b, call *c, kaal_error *err);

struct call {
    kaal_backend *b;
    op op;
    int rc;
    int oom;
    volatile int interrupted; /* set by call_ubf */
    int delivered;            /* the results reached Ruby */
    kaal_error err;

    /* Arguments, in the order the method gave them (arg_*). */
    VALUE str_args[MAX_STRS]; /* checked Strings (or nil), copied by run_call */
    char *str[MAX_STRS];      /* their C copies, NULL for nil */
    int nstrs;
    int64_t num[MAX_NUMS];
    int nnums;
    size_t limit;
    /* Array arguments, copied into memory from call_alloc (their texts
     * back to back in one block). */
    kaal_claim *claims; /* #_claim */
    size_t nclaims;
    kaal_push *pushes; /* #_claim_push: one per claim */
    kaal_latest *latest; /* #_latest_fires: the keys, then the answers */
    size_t nlatest;
    kaal_outcome *outcomes; /* #_record_many */
    size_t noutcomes;
    void *owned[MAX_OWNED]; /* what call_alloc gave, freed by call_ensure */
    int nowned;

    /* Results, freed by call_ensure. */
    kaal_dispatch_rows dispatches;
    kaal_delayed_rows delayed;
    kaal_node_rows nodes;
    kaal_state_rows states;
    kaal_schedule_rows schedules;
    size_t count;
    int64_t version; /* the stored schedules' change counter */
    char layout[8];  /* #_layout ("" when the store has none) */
    int found;

    VALUE (*build)(call *c); /* the Ruby result (with the GVL); NULL: nil */
    /* Run (under Thread.handle_interrupt, without the GVL) when the op
     * completed but its results never reached Ruby (an interrupt was
     * raised instead): hands back what the op took. */
    give_back_fn give_back;
};

static void call_init(call *c, VALUE self, op op)
{
    memset(c, 0, sizeof *c);
    c->b = get_backend(self);
    c->op = op;
    kaal_error_clear(&c->err);
}

static void arg_push(call *c, VALUE s)
{
    if (c->nstrs == MAX_STRS) rb_bug("kaal: raise MAX_STRS in rb_backend.c");
    c->str_args[c->nstrs++] = s;
}

/* Any text without NUL bytes (check_str). */
static void arg_str(call *c, VALUE v, const char *what, int nullable)
{
    arg_push(c, check_str(v, what, nullable));
}

/* A name for a VARCHAR(255) column (check_name). */
static void arg_name(call *c, VALUE v, const char *what, int nullable)
{
    arg_push(c, check_name(c->b->vt->name, v, what, nullable));
}

static void arg_i64(call *c, VALUE v, const char *what)
{
    if (c->nnums == MAX_NUMS) rb_bug("kaal: raise MAX_NUMS in rb_backend.c");
    c->num[c->nnums++] = check_i64(v, what);
}

static void arg_limit(call *c, VALUE v, const char *what) { c->limit = check_limit(v, what); }

/* Memory for copied array arguments, freed by call_ensure. Never raises: a
 * failed malloc sets c->oom (reported inside the ensure block) and gives
 * NULL. */
static void *call_alloc(call *c, size_t bytes)
{
    void *p;
    if (c->oom) return NULL;
    if (c->nowned == MAX_OWNED) rb_bug("kaal: raise MAX_OWNED in rb_backend.c");
    p = malloc(bytes ? bytes : 1);
    if (p) c->owned[c->nowned++] = p;
    else c->oom = 1;
    return p;
}

/* Copies s (checked text) to *at with a NUL, and moves *at past it. */
static const char *copy_text(char **at, VALUE s)
{
    char *dst = *at;
    size_t len = (size_t)RSTRING_LEN(s);
    memcpy(dst, RSTRING_PTR(s), len);
    dst[len] = '\0';
    *at = dst + len + 1;
    return dst;
}

/* The C copies of the String arguments. Never raises: a failed copy sets
 * c->oom, reported inside the ensure block. */
static void copy_strs(call *c)
{
    int i;
    for (i = 0; i < c->nstrs; i++) {
        VALUE s = c->str_args[i];
        if (NIL_P(s)) continue;
        c->str[i] = kaal_strndup(RSTRING_PTR(s), (size_t)RSTRING_LEN(s));
        if (!c->str[i]) c->oom = 1;
    }
}

/* The memory backend keeps its store on close (its "server" is this
 * process): only the session flag drops, and the next call reconnects to the
 * same data. The store is freed with the handle. */
static void close_session(kaal_backend *b)
{
    if (b->pid != getpid()) {
        kaal_backend_follow_fork(b);
    } else if (b->vt != &kaal_backend_memory && b->vt->close) {
        b->vt->close(b);
    }
    b->connected = 0;
}

/* Reachability: ask the server something trivial. An answer, even an error
 * one (say, tables not migrated yet), means reachable; a session that turns
 * out dead is reopened once. */
static int ping(kaal_backend *b, size_t *count, kaal_error *err)
{
    int rc = b->vt->delayed_count(b, count, err);
    if (rc == KAAL_ECONNECT) {
        kaal_error_clear(err);
        b->connected = 0;
        rc = kaal_backend_ready(b, err);
        if (rc == KAAL_OK) rc = b->vt->delayed_count(b, count, err);
    }
    if (rc == KAAL_EBACKEND) {
        kaal_error_clear(err);
        rc = KAAL_OK;
    }
    return rc;
}

static int latest_fires(kaal_backend *b, kaal_latest *items, size_t n, kaal_error *err)
{
    size_t i;
    int rc = KAAL_OK;
    for (i = 0; rc == KAAL_OK && i < n; i += KAAL_LATEST_BATCH)
        rc = b->vt->latest_fires(b, items + i, n - i < KAAL_LATEST_BATCH ? n - i : KAAL_LATEST_BATCH, err);
    return rc;
}

static int record_many(kaal_backend *b, const kaal_outcome *items, size_t n, const char *node, int64_t now,
                       kaal_error *err)
{
    size_t i;
    int rc = KAAL_OK;
    for (i = 0; rc == KAAL_OK && i < n; i += KAAL_RECORD_BATCH)
        rc = b->vt->record_many(b, items + i, n - i < KAAL_RECORD_BATCH ? n - i : KAAL_RECORD_BATCH, node, now,
                                err);
    return rc;
}

/* The vtable call of each op on an open session, without the GVL. s and n:
 * the String and Integer arguments in the order the method gave them. */
static int run_op(kaal_backend *b, call *c, kaal_error *err)
{
    const kaal_backend_vtable *vt = b->vt;
    char *const *s = c->str;
    const int64_t *n = c->num;
    switch (c->op) {
    case OP_CONNECT:
        return KAAL_OK;
    case OP_CLOSE: /* run by call_nogvl without opening the session */
        close_session(b);
        return KAAL_OK;
    case OP_PING:
        return ping(b, &c->count, err);
    case OP_MIGRATE:
        return vt->migrate(b, err);
    case OP_CLAIM: /* node; lease_ms, now */
        if (c->nclaims == 0) return KAAL_OK;
        return vt->claim(b, c->claims, c->nclaims, n[0], s[0], n[1], err);
    case OP_RECORD: /* key, status, node, error; fire_time, now */
        return vt->record(b, s[0], n[0], s[1], s[2], s[3], n[1], err);
    case OP_DISPATCHES: /* key, status, node */
        return vt->dispatches(b, &(kaal_dispatch_query){s[0], s[1], s[2], c->limit}, &c->dispatches,
                              err);
    case OP_DISPATCHES_BEFORE: /* key, status, node, before_key; before_fire */
        return vt->dispatches_before(b, &(kaal_dispatch_query){s[0], s[1], s[2], c->limit}, n[0],
                                     s[3], &c->dispatches, err);
    case OP_CLEANUP: /* before */
        return vt->cleanup(b, n[0], c->limit, &c->count, err);
    case OP_SET_ENABLED: /* key; enabled */
        return vt->set_enabled(b, s[0], (int)n[0], err);
    case OP_STATES:
        return vt->states(b, &c->states, err);
    case OP_DELAYED_ADD: /* job_id, job_class, queue, args_json; run_at_ms */
        return vt->delayed_add(b, &(kaal_delayed_row){s[0], n[0], s[1], s[2], s[3]}, err);
    case OP_DELAYED_CLAIM: /* now_ms */
        return vt->delayed_claim(b, n[0], c->limit, &c->delayed, err);
    case OP_DELAYED_LIST:
        return vt->delayed_list(b, c->limit, &c->delayed, err);
    case OP_DELAYED_LIST_AFTER: /* after_id; after_ms */
        return vt->delayed_list_after(b, n[0], s[0], c->limit, &c->delayed, err);
    case OP_DELAYED_CANCEL: /* job_id */
        return vt->delayed_cancel(b, s[0], &c->found, err);
    case OP_DELAYED_COUNT:
        return vt->delayed_count(b, &c->count, err);
    case OP_HEARTBEAT: /* node, info; now, ttl */
        return vt->heartbeat(b, s[0], s[1], n[0], n[1], err);
    case OP_NODES: /* since */
        return vt->nodes(b, n[0], &c->nodes, err);
    case OP_LATEST_FIRES: /* c->latest, KAAL_LATEST_BATCH keys per vtable call */
        return latest_fires(b, c->latest, c->nlatest, err);
    case OP_RECORD_MANY: /* node; now; c->outcomes, KAAL_RECORD_BATCH per vtable call */
        return record_many(b, c->outcomes, c->noutcomes, s[0], n[0], err);
    case OP_CLAIM_PUSH: /* node; lease_ms, now */
        if (c->nclaims == 0) return KAAL_OK;
        return vt->claim_push(b, c->claims, c->pushes, c->nclaims, n[0], s[0], n[1], err);
    case OP_SCHEMA_VERSION: {
        int version = 0;
        int rc = vt->schema_version(b, &version, err);
        c->count = (size_t)version;
        return rc;
    }
    case OP_SCHEDULE_UPSERT: /* key, cron, job_class, args, kwargs, time_zone, queue; now, enabled */
        return vt->schedules->upsert(
            b, &(kaal_schedule_row){s[0], s[1], s[2], s[3], s[4], s[5], s[6], (int)n[1], 0, 0, 0, NULL}, n[0],
            &c->version, err);
    case OP_SCHEDULE_REMOVE: /* key; now */
        return vt->schedules->remove(b, s[0], n[0], &c->found, &c->version, err);
    case OP_SCHEDULE_GET: /* key */
        return vt->schedules->get(b, s[0], &c->schedules, err);
    case OP_SCHEDULE_LIST: /* after */
        return vt->schedules->list(b, s[0], c->limit, &c->schedules, err);
    case OP_SCHEDULE_CHANGES: /* since */
        return vt->schedules->changes(b, n[0], c->limit, &c->schedules, &c->version, err);
    case OP_SCHEDULE_COUNT:
        return vt->schedules->count(b, &c->count, err);
    case OP_LAYOUT:
        return vt->layout ? vt->layout(b, c->layout, sizeof c->layout, err) : KAAL_OK;
    }
    return kaal_error_set(err, KAAL_EBACKEND, NULL, -1, "kaal: unknown op %d", (int)c->op);
}

/* Acquire the handle, follow a fork, (re)connect, run the op. No GVL here. */
static void *call_nogvl(void *p)
{
    call *c = p;
    kaal_backend *b = c->b;
    if (kaal_backend_acquire(b, &c->interrupted) != KAAL_OK) {
        c->rc = kaal_interrupted_error(b, "waiting for the handle", &c->err);
        return NULL;
    }
    kaal_error_clear(&c->err);
    c->rc = c->op == OP_CLOSE ? KAAL_OK : kaal_backend_ready(b, &c->err);
    if (c->rc == KAAL_OK) c->rc = run_op(b, c, &c->err);
    /* A library woken by shutdown() reports a lost connection. */
    if (c->rc != KAAL_OK && c->interrupted) c->rc = KAAL_EINTERRUPTED;
    kaal_backend_release(b);
    return NULL;
}

/* The unblocking function: may run on another thread, any number of times. */
static void call_ubf(void *p)
{
    call *c = p;
    kaal_backend_interrupt(c->b, &c->interrupted);
}

/* The hand-back of an interrupted call, run with interrupts deferred (the
 * pending one is raised when Thread.handle_interrupt's block ends). */
static void *give_back_nogvl(void *p)
{
    call *c = p;
    volatile int never = 0;
    kaal_error err;
    kaal_error_clear(&err);
    if (kaal_backend_acquire(c->b, &never) != KAAL_OK) return NULL;
    if (kaal_backend_ready(c->b, &err) == KAAL_OK) c->give_back(c->b, c, &err);
    kaal_backend_release(c->b);
    return NULL;
}

static VALUE give_back_i(RB_BLOCK_CALL_FUNC_ARGLIST(yielded, arg))
{
    (void)yielded;
    rb_thread_call_without_gvl(give_back_nogvl, (void *)arg, NULL, NULL);
    return Qnil;
}

/* {Object => :never}, built once: building it here would call #hash, and
 * a method call raises the pending interrupt. */
static VALUE defer_all;
static ID id_handle_interrupt;

static void give_back(call *c)
{
    rb_block_call(rb_cThread, id_handle_interrupt, 1, &defer_all, give_back_i, (VALUE)c);
}

static VALUE call_body(VALUE arg)
{
    call *c = (call *)arg;
    VALUE out = Qnil;
    if (c->oom) rb_memerror();
    /* Ruby raises a pending interrupt before the call (nothing done) or
     * after it (the results are then handed back by call_ensure). A call cut
     * short by an interrupt that raised nothing (a trap handler that
     * returned) runs again. */
    do {
        c->interrupted = 0;
        c->rc = kaal_interrupted_error(c->b, "call", &c->err);
        rb_thread_call_without_gvl(call_nogvl, c, call_ubf, c);
    } while (c->rc == KAAL_EINTERRUPTED);
    if (c->rc != KAAL_OK) {
        if (c->err.message[0] == '\0') {
            kaal_error_set(&c->err, (kaal_status)c->rc, NULL, -1, "%s backend: error %d", c->b->vt->name,
                           c->rc);
        }
        kaal_raise(&c->err);
    }
    if (c->build) out = c->build(c);
    c->delivered = 1;
    return out;
}

static VALUE call_ensure(VALUE arg)
{
    call *c = (call *)arg;
    int i;
    if (c->rc == KAAL_OK && !c->delivered && c->give_back) give_back(c);
    for (i = 0; i < c->nstrs; i++) free(c->str[i]);
    c->nstrs = 0;
    for (i = 0; i < c->nowned; i++) free(c->owned[i]);
    c->nowned = 0;
    c->claims = NULL;
    c->pushes = NULL;
    c->latest = NULL;
    c->outcomes = NULL;
    kaal_dispatch_rows_free(&c->dispatches);
    kaal_delayed_rows_free(&c->delayed);
    kaal_node_rows_free(&c->nodes);
    kaal_state_rows_free(&c->states);
    kaal_schedule_rows_free(&c->schedules);
    return Qnil;
}

/* Copies the String arguments (cannot raise), then runs the call; every C
 * copy and result row is freed whatever happens. */
static VALUE run_call(call *c)
{
    copy_strs(c);
    return rb_ensure(call_body, (VALUE)c, call_ensure, (VALUE)c);
}

static VALUE str_or_nil(const char *s) { return s ? rb_utf8_str_new_cstr(s) : Qnil; }

/* ------------------------------------------------------------------ */
/* new / kind / namespace / connect / close / ping / migrate            */

typedef struct param_spec {
    const char *name;
    size_t offset;
    int is_int;
} param_spec;

static const param_spec PARAMS[] = {
    {"host", offsetof(kaal_conn_params, host), 0},
    {"port", offsetof(kaal_conn_params, port), 1},
    {"socket", offsetof(kaal_conn_params, socket), 0},
    {"database", offsetof(kaal_conn_params, database), 0},
    {"username", offsetof(kaal_conn_params, username), 0},
    {"password", offsetof(kaal_conn_params, password), 0},
    {"path", offsetof(kaal_conn_params, path), 0},
    {"sslmode", offsetof(kaal_conn_params, sslmode), 0},
    {"connect_timeout_ms", offsetof(kaal_conn_params, connect_timeout_ms), 1},
    {"command_timeout_ms", offsetof(kaal_conn_params, command_timeout_ms), 1},
    {"log_ttl_s", offsetof(kaal_conn_params, log_ttl_s), 1},
    {"conninfo", offsetof(kaal_conn_params, conninfo), 0},
    {"ssl_ca", offsetof(kaal_conn_params, ssl_ca), 0},
    {"ssl_ca_path", offsetof(kaal_conn_params, ssl_ca_path), 0},
    {"ssl_cert", offsetof(kaal_conn_params, ssl_cert), 0},
    {"ssl_key", offsetof(kaal_conn_params, ssl_key), 0},
    {"ssl_hostname", offsetof(kaal_conn_params, ssl_hostname), 0},
    {"sentinels", offsetof(kaal_conn_params, sentinels), 0},
    {"sentinel_master", offsetof(kaal_conn_params, sentinel_master), 0},
    {"sentinel_username", offsetof(kaal_conn_params, sentinel_username), 0},
    {"sentinel_password", offsetof(kaal_conn_params, sentinel_password), 0},
    {"wait_replicas", offsetof(kaal_conn_params, wait_replicas), 1},
    {"wait_timeout_ms", offsetof(kaal_conn_params, wait_timeout_ms), 1},
};
#define N_PARAMS (sizeof PARAMS / sizeof PARAMS[0])

static int check_param(VALUE key, VALUE val, VALUE unused)
{
    size_t i;
    (void)unused;
    if (!RB_TYPE_P(key, T_STRING)) {
        rb_raise(rb_eArgError, "connection parameter names must be Strings, got %" PRIsVALUE,
                 rb_obj_class(key));
    }
    for (i = 0; i < N_PARAMS; i++) {
        if ((size_t)RSTRING_LEN(key) == strlen(PARAMS[i].name) &&
            memcmp(RSTRING_PTR(key), PARAMS[i].name, strlen(PARAMS[i].name)) == 0) {
            break;
        }
    }
    if (i == N_PARAMS) rb_raise(rb_eArgError, "unknown connection parameter %+" PRIsVALUE, key);
    if (NIL_P(val)) return ST_CONTINUE;
    if (PARAMS[i].is_int) {
        int64_t n = check_i64(val, PARAMS[i].name);
        if (n < 0 || n > INT32_MAX) rb_raise(rb_eArgError, "%s out of range", PARAMS[i].name);
    } else {
        val = check_str(val, PARAMS[i].name, 0);
    }
    return ST_CONTINUE;
}

static void raise_unavailable(const char *name)
{
    size_t i;
    for (i = 0; i < N_KINDS; i++) {
        if (strcmp(KNOWN_KINDS[i].name, name) == 0 && KNOWN_KINDS[i].package) {
            rb_raise(rb_const_get(kaal_mKaal, rb_intern("BackendUnavailableError")),
                     "the %s backend is not compiled into this build of kaal: install %s "
                     "(apt-get install %s) and reinstall kaal (gem pristine kaal, or "
                     "bin/compile in a checkout) so it is built",
                     name, KNOWN_KINDS[i].package, KNOWN_KINDS[i].package);
        }
    }
    {
        kaal_error err; /* through kaal_raise: the name may be non-ASCII text */
        kaal_error_set(&err, KAAL_ECONFIG, NULL, -1,
                       "unknown backend %s (known: memory, redis, sqlite, postgres, mysql)", name);
        kaal_raise(&err);
    }
}

static VALUE backend_initialize(VALUE self, VALUE kind, VALUE ns, VALUE params)
{
    backend_obj *o;
    const kaal_backend_vtable *vt;
    const char *name = kind_name(kind);
    kaal_backend *b;
    size_t i;
    int failed = 0;

    TypedData_Get_Struct(self, backend_obj, &backend_type, o);
    if (o->b) rb_raise(rb_eRuntimeError, "Kaal::Native::Backend already initialized");
    vt = kaal_backend_find(name);
    if (!vt || !vt->connect) raise_unavailable(name);
    ns = check_name(vt->name, ns, "namespace", 0); /* a VARCHAR(255) column on SQL stores */
    if (NIL_P(params)) params = rb_hash_new();
    Check_Type(params, T_HASH);
    rb_hash_foreach(params, check_param, Qnil);

    /* Everything is checked: copy without raising, then publish. */
    b = kaal_backend_new(vt, RSTRING_PTR(ns), (size_t)RSTRING_LEN(ns));
    if (!b) rb_memerror();
    for (i = 0; i < N_PARAMS; i++) {
        VALUE v = rb_hash_lookup(params, rb_str_new_cstr(PARAMS[i].name));
        char *field = (char *)&b->params + PARAMS[i].offset;
        if (NIL_P(v)) continue;
        if (PARAMS[i].is_int) {
            *(int *)field = (int)NUM2LL(v);
        } else {
            if (SYMBOL_P(v)) v = rb_sym2str(v);
            *(char **)field = kaal_strndup(RSTRING_PTR(v), (size_t)RSTRING_LEN(v));
            if (!*(char **)field) failed = 1;
        }
    }
    if (failed) {
        kaal_backend_free(b); /* never connected: close has nothing to end */
        rb_memerror();
    }
    o->b = b;
    return self;
}

static VALUE backend_kind(VALUE self) { return ID2SYM(rb_intern(get_backend(self)->vt->name)); }

static VALUE backend_namespace(VALUE self)
{
    return rb_obj_freeze(rb_utf8_str_new_cstr(get_backend(self)->ns));
}

static VALUE backend_connected_p(VALUE self)
{
    kaal_backend *b = get_backend(self);
    return b->connected && b->pid == getpid() ? Qtrue : Qfalse;
}

/* A method without arguments: runs op, returns build's result (nil without one). */
static VALUE run_plain(VALUE self, op op, VALUE (*build)(call *c))
{
    call c;
    call_init(&c, self, op);
    c.build = build;
    return run_call(&c);
}

static VALUE build_count(call *c) { return SIZET2NUM(c->count); }

static VALUE backend_connect(VALUE self) { run_plain(self, OP_CONNECT, NULL); return self; }
static VALUE backend_close(VALUE self) { return run_plain(self, OP_CLOSE, NULL); }
static VALUE backend_ping(VALUE self) { run_plain(self, OP_PING, NULL); return Qtrue; }
static VALUE backend_migrate(VALUE self) { run_plain(self, OP_MIGRATE, NULL); return Qtrue; }

static VALUE backend_target(VALUE self)
{
    kaal_backend *b = get_backend(self);
    VALUE h = rb_hash_new();
    if (b->params.host) rb_hash_aset(h, rb_str_new_cstr("host"), str_or_nil(b->params.host));
    if (b->params.port) rb_hash_aset(h, rb_str_new_cstr("port"), INT2NUM(b->params.port));
    if (b->params.socket) rb_hash_aset(h, rb_str_new_cstr("socket"), str_or_nil(b->params.socket));
    if (b->params.database) {
        rb_hash_aset(h, rb_str_new_cstr("database"), str_or_nil(b->params.database));
    }
    if (b->params.path) rb_hash_aset(h, rb_str_new_cstr("path"), str_or_nil(b->params.path));
    if (b->params.username) {
        rb_hash_aset(h, rb_str_new_cstr("username"), str_or_nil(b->params.username));
    }
    if (b->params.sentinels) { /* redis: the master is wherever the sentinels say */
        rb_hash_aset(h, rb_str_new_cstr("sentinels"), str_or_nil(b->params.sentinels));
        rb_hash_aset(h, rb_str_new_cstr("sentinel_master"), str_or_nil(b->params.sentinel_master));
    }
    return h;
}


/* ------------------------------------------------------------------ */
/* Claims and the dispatch log                                         */

static VALUE build_claim(call *c)
{
    VALUE out = rb_ary_new_capa((long)c->nclaims);
    size_t i;
    for (i = 0; i < c->nclaims; i++) rb_ary_push(out, c->claims[i].claimed ? Qtrue : Qfalse);
    return out;
}

/* Won pairs of an interrupted claim cannot reach Ruby: they are recorded
 * "failed" with the reason, so the dispatch log tells what happened. */
static int give_back_claims(kaal_backend *b, call *c, kaal_error *err)
{
    size_t i;
    for (i = 0; i < c->nclaims; i++) {
        if (!c->claims[i].claimed) continue;
        kaal_error_clear(err);
        b->vt->record(b, c->claims[i].key, c->claims[i].fire_time, "failed", c->str[0],
                      "interrupted after the claim, before the hand-off (not run)", c->num[1], err);
        c->claims[i].claimed = 0;
    }
    return KAAL_OK;
}

/* Claim i's key and fire time: pairs[i] = [key, fire_time] (fires is nil),
 * or keys[i] and fires[i] (the column form). */
static void claim_arg(VALUE a, VALUE fires, size_t i, VALUE *key, VALUE *fire)
{
    if (NIL_P(fires)) {
        VALUE pair = RARRAY_AREF(a, (long)i);
        if (!RB_TYPE_P(pair, T_ARRAY) || RARRAY_LEN(pair) != 2) {
            rb_raise(rb_eArgError, "claim pair %zu must be [key, fire_time]", i);
        }
        *key = RARRAY_AREF(pair, 0);
        *fire = RARRAY_AREF(pair, 1);
    } else {
        *key = RARRAY_AREF(a, (long)i);
        *fire = RARRAY_AREF(fires, (long)i);
    }
}

/* The pairs into c->claims: every one is checked first (this may raise),
 * then copied (this cannot; a failed malloc sets c->oom). */
static void arg_claims(call *c, VALUE a, VALUE fires)
{
    const char *kind = c->b->vt->name;
    size_t i, n = (size_t)RARRAY_LEN(a), total = 0;
    VALUE key, fire;
    char *at;
    for (i = 0; i < n; i++) {
        claim_arg(a, fires, i, &key, &fire);
        key = check_name(kind, key, "job key", 0);
        check_i64(fire, "fire_time");
        total += (size_t)RSTRING_LEN(key) + 1;
    }
    if (n == 0) return;
    c->claims = call_alloc(c, n * sizeof *c->claims);
    at = call_alloc(c, total);
    if (c->oom) return;
    for (i = 0; i < n; i++) {
        claim_arg(a, fires, i, &key, &fire);
        key = check_str(key, "job key", 0); /* a Symbol becomes its String */
        c->claims[i] = (kaal_claim){copy_text(&at, key), (size_t)RSTRING_LEN(key), (int64_t)NUM2LL(fire), 0};
    }
    c->nclaims = n;
}

/* #_latest_fires(keys): the keys into c->latest, checked first (this may
 * raise), then copied (this cannot; a failed malloc sets c->oom). */
static void arg_latest(call *c, VALUE keys)
{
    const char *kind = c->b->vt->name;
    size_t i, n, total = 0;
    char *at;
    Check_Type(keys, T_ARRAY);
    n = (size_t)RARRAY_LEN(keys);
    for (i = 0; i < n; i++)
        total += (size_t)RSTRING_LEN(check_name(kind, RARRAY_AREF(keys, (long)i), "job key", 0)) + 1;
    if (n == 0) return;
    c->latest = call_alloc(c, n * sizeof *c->latest);
    at = call_alloc(c, total);
    if (c->oom) return;
    for (i = 0; i < n; i++) {
        VALUE key = check_str(RARRAY_AREF(keys, (long)i), "job key", 0); /* a Symbol becomes its String */
        c->latest[i] = (kaal_latest){copy_text(&at, key), (size_t)RSTRING_LEN(key), 0, 0};
    }
    c->nlatest = n;
}

static VALUE build_latest_fires(call *c)
{
    VALUE out = rb_ary_new_capa((long)c->nlatest);
    size_t i;
    for (i = 0; i < c->nlatest; i++)
        rb_ary_push(out, c->latest[i].found ? LL2NUM(c->latest[i].fire_time) : Qnil);
    return out;
}

static VALUE backend_latest_fires(VALUE self, VALUE keys)
{
    call c;
    call_init(&c, self, OP_LATEST_FIRES);
    arg_latest(&c, keys);
    c.build = build_latest_fires;
    return run_call(&c);
}

/* #_record_many(rows, node, now): rows = [[key, fire_time, status, error],
 * ...] into c->outcomes, checked first (this may raise), then copied (this
 * cannot; a failed malloc sets c->oom). */
static VALUE outcome_row(VALUE rows, size_t i)
{
    VALUE row = RARRAY_AREF(rows, (long)i);
    if (!RB_TYPE_P(row, T_ARRAY) || RARRAY_LEN(row) != 4)
        rb_raise(rb_eArgError, "record row %zu must be [key, fire_time, status, error]", i);
    return row;
}

static int text_is(VALUE s, const char *name)
{
    size_t len = strlen(name);
    return (size_t)RSTRING_LEN(s) == len && memcmp(RSTRING_PTR(s), name, len) == 0;
}

static void arg_outcomes(call *c, VALUE rows)
{
    const char *kind = c->b->vt->name;
    size_t i, n, total = 0;
    char *at;
    Check_Type(rows, T_ARRAY);
    n = (size_t)RARRAY_LEN(rows);
    for (i = 0; i < n; i++) {
        VALUE row = outcome_row(rows, i), status, error;
        total += (size_t)RSTRING_LEN(check_name(kind, RARRAY_AREF(row, 0), "job key", 0)) + 1;
        check_i64(RARRAY_AREF(row, 1), "fire_time");
        status = check_str(RARRAY_AREF(row, 2), "status", 0);
        if (!text_is(status, "dispatched") && !text_is(status, "failed"))
            rb_raise(rb_eArgError, "status must be \"dispatched\" or \"failed\"");
        error = check_str(RARRAY_AREF(row, 3), "error", 1);
        if (!NIL_P(error)) total += (size_t)RSTRING_LEN(error) + 1;
    }
    if (n == 0) return;
    c->outcomes = call_alloc(c, n * sizeof *c->outcomes);
    at = call_alloc(c, total);
    if (c->oom) return;
    for (i = 0; i < n; i++) {
        VALUE row = RARRAY_AREF(rows, (long)i), error = RARRAY_AREF(row, 3);
        kaal_outcome *o = c->outcomes + i;
        o->key = copy_text(&at, check_str(RARRAY_AREF(row, 0), "job key", 0));
        o->fire_time = (int64_t)NUM2LL(RARRAY_AREF(row, 1));
        /* a static name: only these two passed the check above */
        o->status = text_is(RARRAY_AREF(row, 2), "failed") ? "failed" : "dispatched";
        o->error = NIL_P(error) ? NULL : copy_text(&at, error);
    }
    c->noutcomes = n;
}

static VALUE backend_record_many(VALUE self, VALUE rows, VALUE node, VALUE now)
{
    call c;
    call_init(&c, self, OP_RECORD_MANY);
    arg_name(&c, node, "node", 1);
    arg_i64(&c, now, "now");
    arg_outcomes(&c, rows); /* last: it allocates */
    run_call(&c);
    return Qnil;
}

static VALUE claim_common(VALUE self, VALUE a, VALUE fires, VALUE lease_ms, VALUE node, VALUE now)
{
    call c;
    Check_Type(a, T_ARRAY);
    if (!NIL_P(fires)) {
        Check_Type(fires, T_ARRAY);
        if (RARRAY_LEN(fires) != RARRAY_LEN(a)) {
            rb_raise(rb_eArgError, "keys and fire_times must have one size, got %ld and %ld",
                     RARRAY_LEN(a), RARRAY_LEN(fires));
        }
    }
    call_init(&c, self, OP_CLAIM);
    arg_i64(&c, lease_ms, "lease_ms");
    if (c.num[0] <= 0) rb_raise(rb_eArgError, "lease_ms must be > 0");
    arg_i64(&c, now, "now");
    arg_name(&c, node, "node", 1);
    arg_claims(&c, a, fires); /* last: it allocates */
    c.build = build_claim;
    c.give_back = give_back_claims;
    return run_call(&c);
}

static VALUE backend_claim(VALUE self, VALUE pairs, VALUE lease_ms, VALUE node, VALUE now)
{
    return claim_common(self, pairs, Qnil, lease_ms, node, now);
}

static VALUE backend_claim_columns(VALUE self, VALUE keys, VALUE fires, VALUE lease_ms, VALUE node,
                                   VALUE now)
{
    return claim_common(self, keys, fires, lease_ms, node, now);
}

/* Claim and hand off (backends with claim_push: redis). pushes[i] = [op,
 * target, payload, set, extra]: op "l", "z" or "-"; the others Strings (set
 * and extra may be nil). check_pushes may raise and allocates nothing; it
 * returns the bytes copy_pushes needs. */
static size_t check_pushes(VALUE pushes)
{
    static const char *const names[] = {"op", "target", "payload", "set", "extra"};
    size_t i, n = (size_t)RARRAY_LEN(pushes), bytes = 0;
    long j;
    for (i = 0; i < n; i++) {
        VALUE push = RARRAY_AREF(pushes, (long)i), op;
        if (!RB_TYPE_P(push, T_ARRAY) || RARRAY_LEN(push) != 5) {
            rb_raise(rb_eArgError, "push %zu must be [op, target, payload, set, extra]", i);
        }
        for (j = 0; j < 5; j++) {
            VALUE v = RARRAY_AREF(push, j);
            if (NIL_P(v) && j >= 3) continue;
            if (!RB_TYPE_P(v, T_STRING)) {
                rb_raise(rb_eArgError, "push %zu: %s must be a String%s, got %" PRIsVALUE, i, names[j],
                         j >= 3 ? " or nil" : "", rb_obj_class(v));
            }
            if (j > 0) bytes += (size_t)RSTRING_LEN(v);
        }
        op = RARRAY_AREF(push, 0);
        if (RSTRING_LEN(op) != 1 || !strchr("lz-", RSTRING_PTR(op)[0])) {
            rb_raise(rb_eArgError, "push %zu: op must be \"l\", \"z\" or \"-\"", i);
        }
    }
    return bytes;
}

/* The checked pushes into one block (cannot raise; a failed malloc sets
 * c->oom; call_ensure frees them). */
static void copy_pushes(call *c, VALUE pushes, size_t bytes)
{
    size_t i, n = (size_t)RARRAY_LEN(pushes);
    long j;
    char *at;
    if (n == 0) return;
    c->pushes = call_alloc(c, n * sizeof *c->pushes);
    at = call_alloc(c, bytes);
    if (c->oom) return;
    memset(c->pushes, 0, n * sizeof *c->pushes);
    for (i = 0; i < n; i++) {
        VALUE push = RARRAY_AREF(pushes, (long)i);
        kaal_push *q = &c->pushes[i];
        const char **dst[4] = {&q->target, &q->payload, &q->set, &q->extra};
        size_t *len[4] = {&q->target_len, &q->payload_len, &q->set_len, &q->extra_len};
        q->op = RSTRING_PTR(RARRAY_AREF(push, 0))[0];
        for (j = 1; j < 5; j++) {
            VALUE v = RARRAY_AREF(push, j);
            if (NIL_P(v)) continue;
            memcpy(at, RSTRING_PTR(v), (size_t)RSTRING_LEN(v));
            *dst[j - 1] = at;
            *len[j - 1] = (size_t)RSTRING_LEN(v);
            at += RSTRING_LEN(v);
        }
    }
}

/* Won pairs of an interrupted claim_push were pushed and logged
 * "dispatched" in the same step: there is nothing to hand back. */
static VALUE backend_claim_push(VALUE self, VALUE keys, VALUE fires, VALUE pushes, VALUE lease_ms,
                                VALUE node, VALUE now)
{
    call c;
    size_t bytes;
    if (!get_backend(self)->vt->claim_push) {
        rb_raise(rb_eNotImpError, "the %s backend cannot claim and hand off in one step",
                 get_backend(self)->vt->name);
    }
    Check_Type(keys, T_ARRAY);
    Check_Type(fires, T_ARRAY);
    Check_Type(pushes, T_ARRAY);
    if (RARRAY_LEN(fires) != RARRAY_LEN(keys) || RARRAY_LEN(pushes) != RARRAY_LEN(keys)) {
        rb_raise(rb_eArgError, "keys, fire_times and pushes must have one size, got %ld, %ld and %ld",
                 RARRAY_LEN(keys), RARRAY_LEN(fires), RARRAY_LEN(pushes));
    }
    call_init(&c, self, OP_CLAIM_PUSH);
    arg_i64(&c, lease_ms, "lease_ms");
    if (c.num[0] <= 0) rb_raise(rb_eArgError, "lease_ms must be > 0");
    arg_i64(&c, now, "now");
    arg_name(&c, node, "node", 1);
    bytes = check_pushes(pushes);
    arg_claims(&c, keys, fires); /* after every check: it allocates */
    copy_pushes(&c, pushes, bytes);
    c.build = build_claim;
    return run_call(&c);
}

static VALUE backend_claim_push_p(VALUE self)
{
    return get_backend(self)->vt->claim_push ? Qtrue : Qfalse;
}

static VALUE backend_record(VALUE self, VALUE key, VALUE fire_time, VALUE status, VALUE node,
                            VALUE error, VALUE now)
{
    call c;
    call_init(&c, self, OP_RECORD);
    arg_name(&c, key, "job key", 0);
    arg_str(&c, status, "status", 0);
    arg_name(&c, node, "node", 1);
    arg_str(&c, error, "error", 1);
    arg_i64(&c, fire_time, "fire_time");
    arg_i64(&c, now, "now");
    run_call(&c);
    return Qtrue;
}

static VALUE build_dispatches(call *c)
{
    VALUE out = rb_ary_new_capa((long)c->dispatches.len);
    size_t i;
    for (i = 0; i < c->dispatches.len; i++) {
        const kaal_dispatch_row *r = &c->dispatches.rows[i];
        VALUE h = rb_hash_new();
        rb_hash_aset(h, ID2SYM(id_key), str_or_nil(r->key));
        rb_hash_aset(h, ID2SYM(id_fire_time), LL2NUM(r->fire_time));
        rb_hash_aset(h, ID2SYM(id_status), str_or_nil(r->status));
        rb_hash_aset(h, ID2SYM(id_node), str_or_nil(r->node));
        rb_hash_aset(h, ID2SYM(id_error), str_or_nil(r->error));
        rb_hash_aset(h, ID2SYM(id_claimed_at), LL2NUM(r->claimed_at));
        rb_hash_aset(h, ID2SYM(id_updated_at), LL2NUM(r->updated_at));
        rb_ary_push(out, h);
    }
    return out;
}

/* The filter of #_dispatches and #_dispatches_before: key, status, node, limit. */
static void arg_dispatch_query(call *c, VALUE key, VALUE status, VALUE node, VALUE limit)
{
    arg_str(c, key, "job key", 1);
    arg_str(c, status, "status", 1);
    arg_str(c, node, "node", 1);
    arg_limit(c, limit, "limit");
    c->build = build_dispatches;
}

static VALUE backend_dispatches(VALUE self, VALUE key, VALUE status, VALUE node, VALUE limit)
{
    call c;
    call_init(&c, self, OP_DISPATCHES);
    arg_dispatch_query(&c, key, status, node, limit);
    return run_call(&c);
}

static VALUE backend_dispatches_before(VALUE self, VALUE key, VALUE status, VALUE node, VALUE limit,
                                       VALUE before_fire, VALUE before_key)
{
    call c;
    call_init(&c, self, OP_DISPATCHES_BEFORE);
    arg_dispatch_query(&c, key, status, node, limit);
    arg_str(&c, before_key, "before key", 0);
    arg_i64(&c, before_fire, "before fire_time");
    return run_call(&c);
}

static VALUE backend_cleanup(VALUE self, VALUE before, VALUE limit)
{
    call c;
    call_init(&c, self, OP_CLEANUP);
    arg_i64(&c, before, "before");
    arg_limit(&c, limit, "limit");
    c.build = build_count;
    return run_call(&c);
}

/* ------------------------------------------------------------------ */
/* Enable / disable                                                    */

static VALUE backend_set_enabled(VALUE self, VALUE key, VALUE enabled)
{
    call c;
    call_init(&c, self, OP_SET_ENABLED);
    arg_name(&c, key, "job key", 0);
    c.num[c.nnums++] = RTEST(enabled);
    run_call(&c);
    return enabled;
}

static VALUE build_states(call *c)
{
    VALUE h = rb_hash_new();
    size_t i;
    for (i = 0; i < c->states.len; i++) {
        const kaal_state_row *r = &c->states.rows[i];
        rb_hash_aset(h, str_or_nil(r->key), r->enabled ? Qtrue : Qfalse);
    }
    return h;
}

static VALUE backend_states(VALUE self) { return run_plain(self, OP_STATES, build_states); }

/* ------------------------------------------------------------------ */
/* Delayed jobs                                                        */

static VALUE backend_delayed_add(VALUE self, VALUE job_id, VALUE run_at_ms, VALUE job_class,
                                 VALUE queue, VALUE args_json)
{
    call c;
    call_init(&c, self, OP_DELAYED_ADD);
    arg_name(&c, job_id, "job_id", 0);
    arg_name(&c, job_class, "job_class", 0);
    arg_name(&c, queue, "queue", 1);
    arg_str(&c, args_json, "args_json", 0);
    arg_i64(&c, run_at_ms, "run_at_ms");
    run_call(&c);
    return Qtrue;
}

static VALUE build_delayed(call *c)
{
    VALUE out = rb_ary_new_capa((long)c->delayed.len);
    size_t i;
    for (i = 0; i < c->delayed.len; i++) {
        const kaal_delayed_row *r = &c->delayed.rows[i];
        VALUE h = rb_hash_new();
        rb_hash_aset(h, ID2SYM(id_job_id), str_or_nil(r->job_id));
        rb_hash_aset(h, ID2SYM(id_run_at_ms), LL2NUM(r->run_at_ms));
        rb_hash_aset(h, ID2SYM(id_job_class), str_or_nil(r->job_class));
        rb_hash_aset(h, ID2SYM(id_queue), str_or_nil(r->queue));
        rb_hash_aset(h, ID2SYM(id_args_json), str_or_nil(r->args));
        rb_ary_push(out, h);
    }
    return out;
}

/* Jobs taken by an interrupted claim go back to the store (a job added
 * again meanwhile under the same id stays as it is). */
static int give_back_delayed(kaal_backend *b, call *c, kaal_error *err)
{
    size_t i;
    for (i = 0; i < c->delayed.len; i++) {
        kaal_error_clear(err);
        b->vt->delayed_add(b, &c->delayed.rows[i], err);
    }
    kaal_delayed_rows_truncate(&c->delayed, 0);
    return KAAL_OK;
}

static VALUE backend_delayed_claim(VALUE self, VALUE now_ms, VALUE limit)
{
    call c;
    call_init(&c, self, OP_DELAYED_CLAIM);
    arg_i64(&c, now_ms, "now_ms");
    arg_limit(&c, limit, "limit");
    c.build = build_delayed;
    c.give_back = give_back_delayed;
    return run_call(&c);
}

static VALUE backend_delayed_list(VALUE self, VALUE limit)
{
    call c;
    call_init(&c, self, OP_DELAYED_LIST);
    arg_limit(&c, limit, "limit");
    c.build = build_delayed;
    return run_call(&c);
}

static VALUE backend_delayed_list_after(VALUE self, VALUE after_ms, VALUE after_id, VALUE limit)
{
    call c;
    call_init(&c, self, OP_DELAYED_LIST_AFTER);
    arg_i64(&c, after_ms, "after run_at_ms");
    arg_str(&c, after_id, "after job_id", 0);
    arg_limit(&c, limit, "limit");
    c.build = build_delayed;
    return run_call(&c);
}

static VALUE backend_delayed_cancel(VALUE self, VALUE job_id)
{
    call c;
    call_init(&c, self, OP_DELAYED_CANCEL);
    arg_str(&c, job_id, "job_id", 0);
    run_call(&c);
    return c.found ? Qtrue : Qfalse;
}

static VALUE backend_delayed_count(VALUE self)
{
    return run_plain(self, OP_DELAYED_COUNT, build_count);
}

/* ------------------------------------------------------------------ */
/* Heartbeats                                                          */

static VALUE backend_heartbeat(VALUE self, VALUE node, VALUE info, VALUE now, VALUE ttl)
{
    call c;
    call_init(&c, self, OP_HEARTBEAT);
    arg_name(&c, node, "node", 0);
    arg_str(&c, info, "info", 1);
    arg_i64(&c, now, "now");
    arg_i64(&c, ttl, "ttl");
    run_call(&c);
    return Qtrue;
}

static VALUE build_nodes(call *c)
{
    VALUE out = rb_ary_new_capa((long)c->nodes.len);
    size_t i;
    for (i = 0; i < c->nodes.len; i++) {
        const kaal_node_row *r = &c->nodes.rows[i];
        VALUE h = rb_hash_new();
        rb_hash_aset(h, ID2SYM(id_node), str_or_nil(r->node));
        rb_hash_aset(h, ID2SYM(id_info), str_or_nil(r->info));
        rb_hash_aset(h, ID2SYM(id_last_seen), LL2NUM(r->last_seen));
        rb_ary_push(out, h);
    }
    return out;
}

static VALUE backend_nodes(VALUE self, VALUE since)
{
    call c;
    call_init(&c, self, OP_NODES);
    arg_i64(&c, since, "since");
    c.build = build_nodes;
    return run_call(&c);
}

/* ------------------------------------------------------------------ */
/* Schema version and stored schedules                                 */

static VALUE backend_schema_version(VALUE self)
{
    return run_plain(self, OP_SCHEMA_VERSION, build_count);
}

static VALUE backend_schedule_upsert(VALUE self, VALUE key, VALUE cron, VALUE job_class, VALUE args,
                                     VALUE kwargs, VALUE time_zone, VALUE queue, VALUE enabled, VALUE now)
{
    call c;
    call_init(&c, self, OP_SCHEDULE_UPSERT);
    arg_name(&c, key, "job key", 0);
    arg_name(&c, cron, "cron", 0);
    arg_name(&c, job_class, "job_class", 0);
    arg_str(&c, args, "args_json", 0);
    arg_str(&c, kwargs, "kwargs_json", 0);
    arg_name(&c, time_zone, "time_zone", 1);
    arg_name(&c, queue, "queue", 1);
    arg_i64(&c, now, "now");
    c.num[c.nnums++] = RTEST(enabled);
    run_call(&c);
    return LL2NUM(c.version);
}

static VALUE backend_schedule_remove(VALUE self, VALUE key, VALUE now)
{
    call c;
    call_init(&c, self, OP_SCHEDULE_REMOVE);
    arg_name(&c, key, "job key", 0);
    arg_i64(&c, now, "now");
    run_call(&c);
    return rb_assoc_new(c.found ? Qtrue : Qfalse, LL2NUM(c.version));
}

static VALUE schedule_rows(const kaal_schedule_rows *rows)
{
    VALUE out = rb_ary_new_capa((long)rows->len);
    size_t i;
    for (i = 0; i < rows->len; i++) {
        const kaal_schedule_row *r = &rows->rows[i];
        VALUE h = rb_hash_new();
        rb_hash_aset(h, ID2SYM(id_key), str_or_nil(r->key));
        rb_hash_aset(h, ID2SYM(id_cron), str_or_nil(r->cron));
        rb_hash_aset(h, ID2SYM(id_job_class), str_or_nil(r->job_class));
        rb_hash_aset(h, ID2SYM(id_args_json), str_or_nil(r->args));
        rb_hash_aset(h, ID2SYM(id_kwargs_json), str_or_nil(r->kwargs));
        rb_hash_aset(h, ID2SYM(id_time_zone), str_or_nil(r->time_zone));
        rb_hash_aset(h, ID2SYM(id_queue), str_or_nil(r->queue));
        rb_hash_aset(h, ID2SYM(id_enabled), r->enabled ? Qtrue : Qfalse);
        rb_hash_aset(h, ID2SYM(id_deleted), r->deleted ? Qtrue : Qfalse);
        rb_hash_aset(h, ID2SYM(id_version), LL2NUM(r->version));
        rb_hash_aset(h, ID2SYM(id_updated_at), LL2NUM(r->updated_at));
        rb_ary_push(out, h);
    }
    return out;
}

static VALUE build_schedules(call *c) { return schedule_rows(&c->schedules); }

static VALUE build_schedule(call *c) { return c->schedules.len ? rb_ary_entry(schedule_rows(&c->schedules), 0) : Qnil; }

static VALUE build_schedule_changes(call *c) { return rb_assoc_new(LL2NUM(c->version), schedule_rows(&c->schedules)); }

static VALUE backend_schedule_get(VALUE self, VALUE key)
{
    call c;
    call_init(&c, self, OP_SCHEDULE_GET);
    arg_name(&c, key, "job key", 0);
    c.build = build_schedule;
    return run_call(&c);
}

static VALUE backend_schedule_list(VALUE self, VALUE after, VALUE limit)
{
    call c;
    call_init(&c, self, OP_SCHEDULE_LIST);
    arg_str(&c, after, "after", 1);
    arg_limit(&c, limit, "limit");
    c.build = build_schedules;
    return run_call(&c);
}

static VALUE backend_schedule_changes(VALUE self, VALUE since, VALUE limit)
{
    call c;
    call_init(&c, self, OP_SCHEDULE_CHANGES);
    arg_i64(&c, since, "since");
    arg_limit(&c, limit, "limit");
    c.build = build_schedule_changes;
    return run_call(&c);
}

/* #_schedule_change_columns: the change feed as columns, for a node loading
 * its stored schedules (a million at start): one String per key and per
 * args (an Integer for the args [n]), and the definitions (cron,
 * job_class, time_zone, queue, enabled) the rows share listed once. */

static VALUE empty_args; /* the frozen "[]" every row without args shares */
static ID id_args_ivar;

static int text_eq(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

static int same_definition(const kaal_schedule_row *a, const kaal_schedule_row *b)
{
    return a->enabled == b->enabled && text_eq(a->cron, b->cron) && text_eq(a->job_class, b->job_class) &&
           text_eq(a->time_zone, b->time_zone) && text_eq(a->queue, b->queue);
}

/* FNV-1a over the text and its end (NULL hashes apart from ""). */
static uint64_t hash_text(uint64_t h, const char *s)
{
    if (s)
        for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (h ^ (s ? 0x100u : 0x200u)) * 1099511628211ULL;
}

static uint64_t definition_hash(const kaal_schedule_row *r)
{
    uint64_t h = hash_text(hash_text(14695981039346656037ULL, r->cron), r->job_class);
    return hash_text(hash_text(h, r->time_zone), r->queue) ^ (uint64_t)(r->enabled != 0);
}

/* A row needs the full checks (its JSON parsed at load): kwargs other than
 * "{}", args not a list, or args that may hold a placeholder. */
static int plain_row(const kaal_schedule_row *r)
{
    const char *a = r->args;
    if (!a || a[0] != '[' || !r->kwargs || strcmp(r->kwargs, "{}") != 0) return 0;
    return !strstr(a, "{{") && !strstr(a, "}}") && !strstr(a, "\\u");
}

static VALUE frozen_text(const char *s) { return s ? rb_obj_freeze(rb_utf8_str_new_cstr(s)) : Qnil; }

/* The args of a plain row: the frozen shared "[]", the Integer n of "[n]"
 * (a JSON integer that is a Fixnum: the args of a schedule per customer,
 * kept without a String), or the JSON text. */
static VALUE plain_args(const char *a)
{
    const char *p = a + 1;
    long v = 0;
    int digits = 0;
    if (strcmp(a, "[]") == 0) return empty_args;
    if (*p == '-') p++;
    if (!(*p == '0' && p[1] >= '0' && p[1] <= '9')) /* JSON has no leading zeros */
        for (; *p >= '0' && *p <= '9' && digits < 18; p++, digits++) v = v * 10 + (*p - '0');
    if (digits == 0 || strcmp(p, "]") != 0) return frozen_text(a);
    return LONG2FIX(a[1] == '-' ? -v : v);
}

static VALUE definition_of(const kaal_schedule_row *r, size_t first)
{
    VALUE d = rb_ary_new_from_args(6, str_or_nil(r->cron), str_or_nil(r->job_class), str_or_nil(r->time_zone),
                                   str_or_nil(r->queue), r->enabled ? Qtrue : Qfalse, SIZET2NUM(first));
    return rb_obj_freeze(d);
}

/* The index in defs of row i's definition (appended when new). slots: an
 * open-addressed table of mask + 1 entries (0: free, else 1 + the row that
 * first had the definition); first_def[j]: that row's index in defs. */
static long definition_index(const kaal_schedule_rows *rows, size_t i, size_t *slots, size_t mask,
                             long *first_def, VALUE defs)
{
    const kaal_schedule_row *r = &rows->rows[i];
    size_t at = (size_t)definition_hash(r) & mask;
    while (slots[at]) {
        size_t j = slots[at] - 1;
        if (same_definition(&rows->rows[j], r)) return first_def[j];
        at = (at + 1) & mask;
    }
    slots[at] = i + 1;
    first_def[i] = RARRAY_LEN(defs);
    rb_ary_push(defs, definition_of(r, i));
    return first_def[i];
}

/* [counter, last version, keys, args, kwargs, defs, def_of]: per row its key
 * (frozen) and def_of: nil for a removed key, d >= 0 for a plain row (args
 * as plain_args gives them, kwargs nil: none), ~d (negative) for a row that needs the
 * full checks (args and kwargs its JSON texts); d indexes defs, frozen
 * [cron, job_class, time_zone, queue, enabled, the first row that has it]. */
static VALUE build_schedule_columns(call *c)
{
    const kaal_schedule_rows *rows = &c->schedules;
    long n = (long)rows->len, i;
    VALUE keys = rb_ary_new_capa(n), args = rb_ary_new_capa(n), kwargs = rb_ary_new_capa(n);
    VALUE defs = rb_ary_new(), def_of = rb_ary_new_capa(n);
    size_t cap = 16, *slots;
    long *first_def;
    VALUE tmp = 0;
    while (cap < 2 * rows->len) cap *= 2;
    /* freed at the end (by the GC, should a Ruby allocation raise first) */
    slots = ALLOCV(tmp, cap * sizeof(size_t) + (rows->len + 1) * sizeof(long));
    memset(slots, 0, cap * sizeof(size_t));
    first_def = (long *)(slots + cap);
    for (i = 0; i < n; i++) {
        const kaal_schedule_row *r = &rows->rows[i];
        long d;
        rb_ary_push(keys, frozen_text(r->key));
        if (r->deleted) {
            rb_ary_push(args, Qnil);
            rb_ary_push(kwargs, Qnil);
            rb_ary_push(def_of, Qnil);
            continue;
        }
        d = definition_index(rows, (size_t)i, slots, cap - 1, first_def, defs);
        if (plain_row(r)) {
            rb_ary_push(args, plain_args(r->args));
            rb_ary_push(kwargs, Qnil);
            rb_ary_push(def_of, LONG2NUM(d));
        } else {
            rb_ary_push(args, frozen_text(r->args));
            rb_ary_push(kwargs, frozen_text(r->kwargs));
            rb_ary_push(def_of, LONG2NUM(~d));
        }
    }
    ALLOCV_END(tmp);
    return rb_ary_new_from_args(7, LL2NUM(c->version), LL2NUM(n ? rows->rows[n - 1].version : 0), keys, args,
                                kwargs, defs, def_of);
}

static VALUE backend_schedule_change_columns(VALUE self, VALUE since, VALUE limit)
{
    call c;
    call_init(&c, self, OP_SCHEDULE_CHANGES);
    arg_i64(&c, since, "since");
    arg_limit(&c, limit, "limit");
    c.build = build_schedule_columns;
    return run_call(&c);
}

/* Row i of a page is one Native.stored_jobs makes: plain, its definition
 * with a Spec, a plain key. -1 when not, else its definition's index. */
static long stored_job_def(VALUE keys, VALUE def_of, VALUE specs, long i)
{
    VALUE d = RARRAY_AREF(def_of, i);
    long at;
    if (!FIXNUM_P(d)) return -1;
    at = FIX2LONG(d);
    if (at < 0 || at >= RARRAY_LEN(specs) || !RTEST(RARRAY_AREF(specs, at))) return -1;
    return kaal_plain_key(RARRAY_AREF(keys, i)) ? at : -1;
}

/* Kaal::Native.stored_jobs(klass, keys, args, def_of, specs): for a page of
 * #_schedule_change_columns, the Jobs of its plain rows whose definition d
 * has a Spec (specs[d]; false or nil: none) and whose key is plain, each
 * made as Job.build_alike makes one (kaal_job_alike: klass, the key, the
 * shared Spec) with @args the row's args (its text, or the Integer n of
 * [n]). -> [jobs, rest]: the jobs
 * grouped by definition (in row order within one), so that the jobs
 * defined alike come one after the other; rest, the indexes of the other
 * rows, for the caller. */
static VALUE native_stored_jobs(VALUE self, VALUE klass, VALUE keys, VALUE args, VALUE def_of, VALUE specs)
{
    long n, ndefs, i, d, total = 0, *next;
    VALUE jobs, rest, tmp = 0;
    (void)self;
    Check_Type(klass, T_CLASS);
    Check_Type(keys, T_ARRAY);
    Check_Type(args, T_ARRAY);
    Check_Type(def_of, T_ARRAY);
    Check_Type(specs, T_ARRAY);
    n = RARRAY_LEN(keys);
    ndefs = RARRAY_LEN(specs);
    if (RARRAY_LEN(args) != n || RARRAY_LEN(def_of) != n) rb_raise(rb_eArgError, "keys, args and def_of differ in length");
    /* next[d]: the slot of d's next job; freed at the end (by the GC, should a Ruby allocation raise first) */
    next = ALLOCV_N(long, tmp, ndefs + 1);
    memset(next, 0, sizeof(long) * (size_t)(ndefs + 1));
    for (i = 0; i < n; i++)
        if ((d = stored_job_def(keys, def_of, specs, i)) >= 0) next[d + 1]++;
    for (d = 0; d < ndefs; d++) next[d + 1] += next[d];
    total = next[ndefs];
    jobs = rb_ary_new_capa(total);
    rest = rb_ary_new();
    for (i = 0; i < n; i++) {
        VALUE job;
        if ((d = stored_job_def(keys, def_of, specs, i)) < 0) {
            rb_ary_push(rest, LONG2FIX(i));
            continue;
        }
        job = kaal_job_alike(klass, RARRAY_AREF(keys, i), RARRAY_AREF(specs, d));
        rb_ivar_set(job, id_args_ivar, RARRAY_AREF(args, i));
        rb_ary_store(jobs, next[d]++, job);
    }
    ALLOCV_END(tmp);
    return rb_assoc_new(jobs, rest);
}

static VALUE backend_schedule_count(VALUE self)
{
    return run_plain(self, OP_SCHEDULE_COUNT, build_count);
}

static VALUE build_layout(call *c) { return c->layout[0] ? rb_str_new_cstr(c->layout) : Qnil; }

static VALUE backend_layout(VALUE self) { return run_plain(self, OP_LAYOUT, build_layout); }

/* ------------------------------------------------------------------ */
/* Kaal::Native.backends / .schema                                     */

static VALUE native_backends(VALUE mod)
{
    VALUE out = rb_ary_new();
    size_t i;
    (void)mod;
    for (i = 0; i < N_KINDS; i++) {
        const kaal_backend_vtable *vt = kaal_backend_find(KNOWN_KINDS[i].name);
        if (vt && vt->connect) rb_ary_push(out, rb_str_new_cstr(KNOWN_KINDS[i].name));
    }
    return out;
}

/* The schema arrays are defined by the SQL backend files. Declared weak so
 * this binding links while a backend file is still being written: a missing
 * definition reads as NULL and is reported as unavailable. */
#ifdef KAAL_HAVE_SQLITE
extern const char *const kaal_schema_sqlite[] __attribute__((weak));
extern const char *const *const kaal_schema_steps_sqlite[] __attribute__((weak));
#endif
#ifdef KAAL_HAVE_POSTGRES
extern const char *const kaal_schema_postgres[] __attribute__((weak));
extern const char *const *const kaal_schema_steps_postgres[] __attribute__((weak));
#endif
#ifdef KAAL_HAVE_MYSQL
extern const char *const kaal_schema_mysql[] __attribute__((weak));
extern const char *const *const kaal_schema_steps_mysql[] __attribute__((weak));
#endif

static const char *const *schema_for(const char *dialect)
{
    const char *const *volatile s = NULL;
#ifdef KAAL_HAVE_SQLITE
    if (strcmp(dialect, "sqlite") == 0) s = kaal_schema_sqlite;
#endif
#ifdef KAAL_HAVE_POSTGRES
    if (strcmp(dialect, "postgres") == 0) s = kaal_schema_postgres;
#endif
#ifdef KAAL_HAVE_MYSQL
    if (strcmp(dialect, "mysql") == 0) s = kaal_schema_mysql;
#endif
    (void)dialect;
    return s;
}

static const char *const *const *steps_for(const char *dialect)
{
    const char *const *const *volatile s = NULL;
#ifdef KAAL_HAVE_SQLITE
    if (strcmp(dialect, "sqlite") == 0) s = kaal_schema_steps_sqlite;
#endif
#ifdef KAAL_HAVE_POSTGRES
    if (strcmp(dialect, "postgres") == 0) s = kaal_schema_steps_postgres;
#endif
#ifdef KAAL_HAVE_MYSQL
    if (strcmp(dialect, "mysql") == 0) s = kaal_schema_steps_mysql;
#endif
    (void)dialect;
    return s;
}

/* [[step 1's statements], [step 2's], ...] */
static VALUE native_schema_steps(VALUE mod, VALUE dialect)
{
    const char *name = kind_name(dialect);
    const char *const *const *steps;
    VALUE out;
    int i;
    (void)mod;
    if (strcmp(name, "sqlite") != 0 && strcmp(name, "postgres") != 0 && strcmp(name, "mysql") != 0) {
        rb_raise(rb_eArgError, "unknown SQL dialect %s (sqlite, postgres or mysql)", name);
    }
    steps = steps_for(name);
    if (!steps) raise_unavailable(name);
    out = rb_ary_new();
    for (i = 0; i < KAAL_SCHEMA_VERSION; i++) {
        const char *const *s = steps[i];
        VALUE step = rb_ary_new();
        for (; *s; s++) rb_ary_push(step, rb_obj_freeze(rb_utf8_str_new_cstr(*s)));
        rb_ary_push(out, rb_obj_freeze(step));
    }
    return out;
}

static VALUE native_schema(VALUE mod, VALUE dialect)
{
    const char *name = kind_name(dialect);
    const char *const *s;
    VALUE out;
    (void)mod;
    if (strcmp(name, "sqlite") != 0 && strcmp(name, "postgres") != 0 && strcmp(name, "mysql") != 0) {
        rb_raise(rb_eArgError, "unknown SQL dialect %s (sqlite, postgres or mysql)", name);
    }
    s = schema_for(name);
    if (!s) raise_unavailable(name);
    out = rb_ary_new();
    for (; *s; s++) rb_ary_push(out, rb_obj_freeze(rb_utf8_str_new_cstr(*s)));
    return out;
}

void kaal_init_backend(void)
{
    cBackend = rb_define_class_under(kaal_mNative, "Backend", rb_cObject);
    rb_define_alloc_func(cBackend, backend_alloc);
    rb_undef_method(cBackend, "initialize_copy");
    rb_define_method(cBackend, "initialize", backend_initialize, 3);
    rb_define_method(cBackend, "kind", backend_kind, 0);
    rb_define_method(cBackend, "namespace", backend_namespace, 0);
    rb_define_method(cBackend, "connected?", backend_connected_p, 0);
    rb_define_private_method(cBackend, "_connect", backend_connect, 0);
    rb_define_private_method(cBackend, "_close", backend_close, 0);
    rb_define_private_method(cBackend, "_ping", backend_ping, 0);
    rb_define_private_method(cBackend, "_migrate", backend_migrate, 0);
    rb_define_private_method(cBackend, "_target", backend_target, 0);
    rb_define_private_method(cBackend, "_claim", backend_claim, 4);
    rb_define_private_method(cBackend, "_claim_columns", backend_claim_columns, 5);
    rb_define_private_method(cBackend, "_claim_push", backend_claim_push, 6);
    rb_define_method(cBackend, "claim_push?", backend_claim_push_p, 0);
    rb_define_private_method(cBackend, "_record", backend_record, 6);
    rb_define_private_method(cBackend, "_dispatches", backend_dispatches, 4);
    rb_define_private_method(cBackend, "_dispatches_before", backend_dispatches_before, 6);
    rb_define_private_method(cBackend, "_latest_fires", backend_latest_fires, 1);
    rb_define_private_method(cBackend, "_record_many", backend_record_many, 3);
    rb_define_private_method(cBackend, "_cleanup", backend_cleanup, 2);
    rb_define_private_method(cBackend, "_set_enabled", backend_set_enabled, 2);
    rb_define_private_method(cBackend, "_states", backend_states, 0);
    rb_define_private_method(cBackend, "_delayed_add", backend_delayed_add, 5);
    rb_define_private_method(cBackend, "_delayed_claim", backend_delayed_claim, 2);
    rb_define_private_method(cBackend, "_delayed_cancel", backend_delayed_cancel, 1);
    rb_define_private_method(cBackend, "_delayed_count", backend_delayed_count, 0);
    rb_define_private_method(cBackend, "_delayed_list", backend_delayed_list, 1);
    rb_define_private_method(cBackend, "_delayed_list_after", backend_delayed_list_after, 3);
    rb_define_private_method(cBackend, "_heartbeat", backend_heartbeat, 4);
    rb_define_private_method(cBackend, "_nodes", backend_nodes, 1);
    rb_define_private_method(cBackend, "_schema_version", backend_schema_version, 0);
    rb_define_private_method(cBackend, "_layout", backend_layout, 0);
    rb_define_private_method(cBackend, "_schedule_upsert", backend_schedule_upsert, 9);
    rb_define_private_method(cBackend, "_schedule_remove", backend_schedule_remove, 2);
    rb_define_private_method(cBackend, "_schedule_get", backend_schedule_get, 1);
    rb_define_private_method(cBackend, "_schedule_list", backend_schedule_list, 2);
    rb_define_private_method(cBackend, "_schedule_changes", backend_schedule_changes, 2);
    rb_define_private_method(cBackend, "_schedule_change_columns", backend_schedule_change_columns, 2);
    rb_define_private_method(cBackend, "_schedule_count", backend_schedule_count, 0);

    rb_define_module_function(kaal_mNative, "backends", native_backends, 0);
    rb_define_module_function(kaal_mNative, "stored_jobs", native_stored_jobs, 5);
    rb_define_module_function(kaal_mNative, "schema", native_schema, 1);
    /* Whether the redis backend speaks TLS (rediss://): built with libssl. */
#if defined(KAAL_HAVE_REDIS) && defined(KAAL_HAVE_OPENSSL)
    rb_define_const(kaal_mNative, "REDIS_TLS", Qtrue);
#else
    rb_define_const(kaal_mNative, "REDIS_TLS", Qfalse);
#endif
    rb_define_module_function(kaal_mNative, "schema_steps", native_schema_steps, 1);
    rb_define_const(kaal_mNative, "SCHEMA_VERSION", INT2NUM(KAAL_SCHEMA_VERSION));

    id_handle_interrupt = rb_intern("handle_interrupt");
    defer_all = rb_hash_new();
    rb_hash_aset(defer_all, rb_cObject, ID2SYM(rb_intern("never")));
    rb_obj_freeze(defer_all);
    rb_gc_register_mark_object(defer_all);

    id_key = rb_intern("key");
    id_fire_time = rb_intern("fire_time");
    id_status = rb_intern("status");
    id_node = rb_intern("node");
    id_error = rb_intern("error");
    id_claimed_at = rb_intern("claimed_at");
    id_updated_at = rb_intern("updated_at");
    id_job_id = rb_intern("job_id");
    id_run_at_ms = rb_intern("run_at_ms");
    id_job_class = rb_intern("job_class");
    id_queue = rb_intern("queue");
    id_args_json = rb_intern("args_json");
    id_info = rb_intern("info");
    id_last_seen = rb_intern("last_seen");
    id_cron = rb_intern("cron");
    id_kwargs_json = rb_intern("kwargs_json");
    id_time_zone = rb_intern("time_zone");
    id_enabled = rb_intern("enabled");
    id_deleted = rb_intern("deleted");
    id_version = rb_intern("version");
    id_args_ivar = rb_intern("@args");
    empty_args = rb_obj_freeze(rb_utf8_str_new_cstr("[]"));
    rb_gc_register_mark_object(empty_args);
}
