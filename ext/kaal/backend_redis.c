/* kaal: the Redis backend on hiredis (hiredis >= 0.14).
 *
 * Pure C, no ruby.h: every function here runs WITHOUT the GVL (the binding
 * releases it around each vtable call), so it uses malloc/free only.
 *
 * The context is non-blocking: commands are appended to hiredis's buffer,
 * written and read here, and every wait is kaal_wait on the socket (bounded
 * by the connect or command timeout, and ended at once by an interrupt from
 * Ruby; a cut-short exchange drops the session, as a timeout does).
 *
 * Every operation that must be atomic is one Lua script, run with EVALSHA
 * (scripts are loaded with SCRIPT LOAD on connect; a NOSCRIPT reply falls
 * back to EVAL with the body, which also caches it again). A claim batch of n
 * pairs is one EVALSHA, so one round trip.
 *
 * Keys (all under "<ns>:"; docs/redis.md has the full table):
 *   <ns>:claim:<fire>:<key>    string, node id, PX lease_ms      the claim
 *   <ns>:log:<fire>:<key>      string, encoded row, EX retention the dispatch log
 *   <ns>:log-index             zset fire_time -> "<fire>:<key>"   log order + cleanup
 *   <ns>:log-index:<key>       zset fire_time -> "<fire>"        queries by key
 *   <ns>:states                hash key -> "1" / "0"              enable/disable
 *   <ns>:delayed               hash job_id -> encoded row         delayed payloads
 *   <ns>:delayed-due           zset run_at_ms -> job_id           delayed order
 *   <ns>:nodes                 zset last_seen -> node             heartbeats
 *   <ns>:node-info             hash node -> info JSON
 *
 * Encoded rows are a sequence of fields, each "-" (NULL) or a netstring
 * "<len>:<bytes>,", so any byte may appear in a value.
 *   log row:     claimed_at, updated_at, status, node, error
 *   delayed row: run_at_ms, job_class, queue, args
 *
 * Errors: a lost or timed-out connection frees the context, sets
 * b->connected = 0 and returns KAAL_ECONNECT (the binding reconnects on the
 * next call); an error reply returns KAAL_EBACKEND with the server's text.
 * Messages never contain the password. */
#include "backend.h"
#include "schema.h"

#ifdef KAAL_HAVE_REDIS

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "redis_io.h"

/* A dispatch-log entry lives the scheduler's dispatch_log_retention after its
 * last write (params.log_ttl_s; the configuration keeps it longer than the
 * recovery window, so a catch-up never finds a fire time the log has
 * forgotten), or the lease when that is longer. Without it: 7 days, the
 * retention's default. */
#define DEFAULT_LOG_TTL_S 604800
#define DEFAULT_PORT 6379
#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_COMMAND_TIMEOUT_MS 5000
/* How long a write waits for its replicas with wait_replicas set. */
#define DEFAULT_WAIT_TIMEOUT_MS 1000
/* Rows fetched per round trip while scanning the dispatch log. */
#define SCAN_CHUNK 500

/* ------------------------------------------------------------------ */
/* Lua scripts. ARGV[1] is always the key prefix "<ns>:".             */

/* Claim. ARGV: prefix, lease_ms, log ttl (s), row, claim value, then
 * key, fire pairs. Returns one 0/1 per pair. */
static const char LUA_CLAIM[] =
    "local p, lease, ttl, row, cv = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]\n"
    "local idx = p .. 'log-index'\n"
    "local out = {}\n"
    "for i = 6, #ARGV, 2 do\n"
    "  local k, f = ARGV[i], ARGV[i + 1]\n"
    "  local m = f .. ':' .. k\n"
    "  local won = 0\n"
    "  if redis.call('EXISTS', p .. 'log:' .. m) == 0 and\n"
    "     redis.call('SET', p .. 'claim:' .. m, cv, 'NX', 'PX', lease) then\n"
    "    redis.call('SET', p .. 'log:' .. m, row, 'EX', ttl)\n"
    "    redis.call('ZADD', idx, f, m)\n"
    "    redis.call('ZADD', idx .. ':' .. k, f, f)\n"
    "    won = 1\n"
    "  end\n"
    "  out[#out + 1] = won\n"
    "end\n"
    "return out\n";

/* Claim and hand off (the exactly-once hand-off to a job queue in the same
 * Redis, docs/guarantee.md). ARGV: prefix, lease_ms, log ttl (s), row (status
 * "dispatched"), claim value, then per pair: key, fire, op, target, payload,
 * set, extra. A pair is won exactly as by LUA_CLAIM; a won pair's payload is
 * pushed in the same script: op "l" LPUSHes it onto the list `target` and,
 * when `set` is not empty, SADDs `extra` to `set` (Sidekiq: the queue list
 * and the "queues" set); op "z" ZADDs it to `target` with score `extra` (a
 * scheduled job); op "-" pushes nothing. Redis does not undo the writes of a
 * script that fails half-way, so every target's type is checked before the
 * first write: a key of the wrong type fails the whole call with nothing
 * written. Returns one 0/1 per pair. */
static const char LUA_CLAIM_PUSH[] =
    "local p, lease, ttl, row, cv = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]\n"
    "local want = {l = 'list', z = 'zset'}\n"
    "for i = 6, #ARGV, 7 do\n"
    "  local op = ARGV[i + 2]\n"
    "  local checks = {}\n"
    "  if want[op] then checks[#checks + 1] = {ARGV[i + 3], want[op]} end\n"
    "  if op == 'l' and ARGV[i + 5] ~= '' then checks[#checks + 1] = {ARGV[i + 5], 'set'} end\n"
    "  for _, c in ipairs(checks) do\n"
    "    local t = redis.call('TYPE', c[1]).ok\n"
    "    if t ~= 'none' and t ~= c[2] then\n"
    "      return redis.error_reply('WRONGTYPE hand-off target ' .. c[1] .. ' is a ' .. t .. ', not a ' .. c[2])\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local idx = p .. 'log-index'\n"
    "local out = {}\n"
    "for i = 6, #ARGV, 7 do\n"
    "  local k, f, op = ARGV[i], ARGV[i + 1], ARGV[i + 2]\n"
    "  local m = f .. ':' .. k\n"
    "  local won = 0\n"
    "  if redis.call('EXISTS', p .. 'log:' .. m) == 0 and\n"
    "     redis.call('SET', p .. 'claim:' .. m, cv, 'NX', 'PX', lease) then\n"
    "    if op == 'l' then\n"
    "      redis.call('LPUSH', ARGV[i + 3], ARGV[i + 4])\n"
    "      if ARGV[i + 5] ~= '' then redis.call('SADD', ARGV[i + 5], ARGV[i + 6]) end\n"
    "    elseif op == 'z' then\n"
    "      redis.call('ZADD', ARGV[i + 3], ARGV[i + 6], ARGV[i + 4])\n"
    "    end\n"
    "    redis.call('SET', p .. 'log:' .. m, row, 'EX', ttl)\n"
    "    redis.call('ZADD', idx, f, m)\n"
    "    redis.call('ZADD', idx .. ':' .. k, f, f)\n"
    "    won = 1\n"
    "  end\n"
    "  out[#out + 1] = won\n"
    "end\n"
    "return out\n";

/* Record an outcome. ARGV: prefix, key, fire, now, log ttl (s), row tail
 * (updated_at, status, node, error encoded). Keeps claimed_at of an existing
 * row; creates the row (claimed_at = now) when there is none. */
static const char LUA_RECORD[] =
    "local p, k, f = ARGV[1], ARGV[2], ARGV[3]\n"
    "local m = f .. ':' .. k\n"
    "local c = ARGV[4]\n"
    "local old = redis.call('GET', p .. 'log:' .. m)\n"
    "local x = old and string.match(old, '^%d+:(%-?%d+),')\n"
    "if x then c = x end\n"
    "redis.call('SET', p .. 'log:' .. m, #c .. ':' .. c .. ',' .. ARGV[6], 'EX', ARGV[5])\n"
    "redis.call('ZADD', p .. 'log-index', f, m)\n"
    "redis.call('ZADD', p .. 'log-index:' .. k, f, f)\n"
    "return 1\n";

/* One chunk of a newest-first scan. ARGV: prefix, index key, start, stop,
 * job key (only with a per-key index, whose members are bare fire times).
 * Returns {members "<fire>:<key>", rows} (a row is nil when the entry has
 * expired). */
static const char LUA_SCAN[] =
    "local p, k = ARGV[1], ARGV[5]\n"
    "local ms = redis.call('ZREVRANGE', ARGV[2], ARGV[3], ARGV[4])\n"
    "if #ms == 0 then return {{}, {}} end\n"
    "local ks = {}\n"
    "for i, m in ipairs(ms) do\n"
    "  if k then ms[i] = m .. ':' .. k end\n"
    "  ks[i] = p .. 'log:' .. ms[i]\n"
    "end\n"
    "return {ms, redis.call('MGET', unpack(ks))}\n";

/* Cleanup. ARGV: prefix, before, limit. Returns the number removed. */
static const char LUA_CLEANUP[] =
    "local p = ARGV[1]\n"
    "local idx = p .. 'log-index'\n"
    "local ms = redis.call('ZRANGEBYSCORE', idx, '-inf', '(' .. ARGV[2], 'LIMIT', 0, ARGV[3])\n"
    "for _, m in ipairs(ms) do\n"
    "  local c = string.find(m, ':', 1, true)\n"
    "  redis.call('DEL', p .. 'log:' .. m)\n"
    "  redis.call('ZREM', idx, m)\n"
    "  redis.call('ZREM', idx .. ':' .. string.sub(m, c + 1), string.sub(m, 1, c - 1))\n"
    "end\n"
    "return #ms\n";

/* Delayed add. ARGV: prefix, job_id, run_at_ms, row. 1 added, 0 pending. */
static const char LUA_DELAYED_ADD[] =
    "local p = ARGV[1]\n"
    "if redis.call('HSETNX', p .. 'delayed', ARGV[2], ARGV[4]) == 0 then return 0 end\n"
    "redis.call('ZADD', p .. 'delayed-due', ARGV[3], ARGV[2])\n"
    "return 1\n";

/* Delayed claim. ARGV: prefix, now_ms, limit. Returns {id, row, ...}. */
static const char LUA_DELAYED_CLAIM[] =
    "local p = ARGV[1]\n"
    "local h, z = p .. 'delayed', p .. 'delayed-due'\n"
    "local ids = redis.call('ZRANGEBYSCORE', z, '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])\n"
    "local out = {}\n"
    "for _, id in ipairs(ids) do\n"
    "  local row = redis.call('HGET', h, id)\n"
    "  redis.call('ZREM', z, id)\n"
    "  if row then\n"
    "    redis.call('HDEL', h, id)\n"
    "    out[#out + 1] = id\n"
    "    out[#out + 1] = row\n"
    "  end\n"
    "end\n"
    "return out\n";

/* Delayed cancel. ARGV: prefix, job_id. 1 removed, 0 not pending. */
static const char LUA_DELAYED_CANCEL[] =
    "local p = ARGV[1]\n"
    "redis.call('ZREM', p .. 'delayed-due', ARGV[2])\n"
    "return redis.call('HDEL', p .. 'delayed', ARGV[2])\n";

/* Delayed list. ARGV: prefix, limit. Returns {id, row, ...}, soonest first. */
static const char LUA_DELAYED_LIST[] =
    "local p = ARGV[1]\n"
    "local ids = redis.call('ZRANGE', p .. 'delayed-due', 0, tonumber(ARGV[2]) - 1)\n"
    "local out = {}\n"
    "for _, id in ipairs(ids) do\n"
    "  local row = redis.call('HGET', p .. 'delayed', id)\n"
    "  if row then out[#out + 1] = id; out[#out + 1] = row end\n"
    "end\n"
    "return out\n";

/* Heartbeat. ARGV: prefix, node, now, ttl, has_info ("1"/"0"), info.
 * Forgets nodes not seen for longer than ttl (when ttl > 0). */
static const char LUA_HEARTBEAT[] =
    "local p, node, now, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local z, h = p .. 'nodes', p .. 'node-info'\n"
    "if ttl > 0 then\n"
    "  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', '(' .. (now - ttl))\n"
    "  for _, n in ipairs(gone) do redis.call('HDEL', h, n) end\n"
    "  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', z, '-inf', '(' .. (now - ttl)) end\n"
    "end\n"
    "redis.call('ZADD', z, ARGV[3], node)\n"
    "if ARGV[5] == '1' then redis.call('HSET', h, node, ARGV[6])\n"
    "else redis.call('HDEL', h, node) end\n"
    "return 1\n";

/* Nodes. ARGV: prefix, since. Returns {node, last_seen, info|nil, ...}
 * ordered by node id. */
static const char LUA_NODES[] =
    "local p = ARGV[1]\n"
    "local r = redis.call('ZRANGEBYSCORE', p .. 'nodes', ARGV[2], '+inf', 'WITHSCORES')\n"
    "local rows = {}\n"
    "for i = 1, #r, 2 do rows[#rows + 1] = {r[i], r[i + 1]} end\n"
    "table.sort(rows, function(a, b) return a[1] < b[1] end)\n"
    "local out = {}\n"
    "for _, row in ipairs(rows) do\n"
    "  out[#out + 1] = row[1]\n"
    "  out[#out + 1] = row[2]\n"
    "  out[#out + 1] = redis.call('HGET', p .. 'node-info', row[1])\n"
    "end\n"
    "return out\n";

/* Latest fire per key. ARGV: prefix, then job keys. Returns one fire time
 * per key, "" when the key's log has no live row (index entries whose row
 * expired are passed over). */
static const char LUA_LATEST_FIRES[] =
    "local p = ARGV[1]\n"
    "local out = {}\n"
    "for i = 2, #ARGV do\n"
    "  local k = ARGV[i]\n"
    "  local idx, found, from = p .. 'log-index:' .. k, '', 0\n"
    "  repeat\n"
    "    local fs = redis.call('ZREVRANGE', idx, from, from + 15)\n"
    "    for _, f in ipairs(fs) do\n"
    "      if redis.call('EXISTS', p .. 'log:' .. f .. ':' .. k) == 1 then found = f break end\n"
    "    end\n"
    "    from = from + 16\n"
    "  until found ~= '' or #fs < 16\n"
    "  out[#out + 1] = found\n"
    "end\n"
    "return out\n";

/* Record many outcomes. ARGV: prefix, log ttl (s), then per outcome key,
 * fire, now, row tail (as LUA_RECORD). Returns 1. */
static const char LUA_RECORD_MANY[] =
    "local p, ttl = ARGV[1], ARGV[2]\n"
    "for i = 3, #ARGV, 4 do\n"
    "  local k, f, c = ARGV[i], ARGV[i + 1], ARGV[i + 2]\n"
    "  local m = f .. ':' .. k\n"
    "  local old = redis.call('GET', p .. 'log:' .. m)\n"
    "  local x = old and string.match(old, '^%d+:(%-?%d+),')\n"
    "  if x then c = x end\n"
    "  redis.call('SET', p .. 'log:' .. m, #c .. ':' .. c .. ',' .. ARGV[i + 3], 'EX', ttl)\n"
    "  redis.call('ZADD', p .. 'log-index', f, m)\n"
    "  redis.call('ZADD', p .. 'log-index:' .. k, f, f)\n"
    "end\n"
    "return 1\n";

enum {
    S_CLAIM,
    S_RECORD,
    S_SCAN,
    S_CLEANUP,
    S_DELAYED_ADD,
    S_DELAYED_CLAIM,
    S_DELAYED_CANCEL,
    S_DELAYED_LIST,
    S_HEARTBEAT,
    S_NODES,
    S_CLAIM_PUSH,
    S_LATEST_FIRES,
    S_RECORD_MANY,
    S_COUNT
};

/* The scripts that only read. Every other one writes, and with
 * wait_replicas waits for the replicas to have it (confirm_replicas): a new
 * script is a write unless listed here. */
static const unsigned char SCRIPT_READS[S_COUNT] = {
    [S_SCAN] = 1, [S_DELAYED_LIST] = 1, [S_NODES] = 1, [S_LATEST_FIRES] = 1,
};

static const char *const SCRIPTS[S_COUNT] = {
    LUA_CLAIM,         LUA_RECORD,        LUA_SCAN,           LUA_CLEANUP,
    LUA_DELAYED_ADD,   LUA_DELAYED_CLAIM, LUA_DELAYED_CANCEL, LUA_DELAYED_LIST,
    LUA_HEARTBEAT,     LUA_NODES,         LUA_CLAIM_PUSH,    LUA_LATEST_FIRES,
    LUA_RECORD_MANY,
};

/* ------------------------------------------------------------------ */
/* Session                                                            */

typedef struct redis_impl {
    kaal_redis_io *io;
    char *prefix; /* "<ns>:" */
    size_t prefix_len;
    int timeout_ms; /* command timeout */
    char sha[S_COUNT][41];
    size_t sentinel_first; /* the sentinel to ask first: the last one that answered */
} redis_impl;

static redis_impl *impl_of(kaal_backend *b) { return (redis_impl *)b->impl; }

static void drop_context(kaal_backend *b)
{
    redis_impl *r = impl_of(b);
    if (r && r->io) {
        kaal_redis_io_close(r->io);
        r->io = NULL;
    }
    b->connected = 0;
}

static int reply_error(const redisReply *rep, kaal_error *err, const char *what)
{
    return kaal_error_set(err, KAAL_EBACKEND, NULL, -1, "redis: %s: %.*s", what,
                          (int)(rep->len > 200 ? 200 : rep->len), rep->str);
}

static int no_memory(kaal_error *err)
{
    return kaal_error_set(err, KAAL_ENOMEM, NULL, -1, "redis: out of memory");
}


static int not_connected(kaal_backend *b, kaal_error *err, const char *what)
{
    b->connected = 0;
    return kaal_error_set(err, KAAL_ECONNECT, NULL, -1, "redis: %s: not connected", what);
}

/* Sends what is queued, then reads one reply. NULL when that fails (*rc
 * and err say why; the session is dropped: a late reply may still come). */
static redisReply *await_reply(kaal_backend *b, int *rc, kaal_error *err, const char *what)
{
    redis_impl *r = impl_of(b);
    redisReply *rep;
    *rc = kaal_redis_io_reply(b, r->io, kaal_mono_ms() + r->timeout_ms, &rep, what, err);
    if (*rc == KAAL_OK) return rep;
    drop_context(b);
    return NULL;
}

/* One command and its reply (NULL as await_reply says). */
static redisReply *exchange(kaal_backend *b, int argc, const char **argv, const size_t *lens,
                            int *rc, kaal_error *err, const char *what)
{
    if (kaal_redis_io_append(impl_of(b)->io, argc, argv, lens) != KAAL_OK) {
        *rc = no_memory(err);
        drop_context(b);
        return NULL;
    }
    return await_reply(b, rc, err, what);
}

/* A READONLY error: the server was a master and is a replica now (a
 * failover). The session goes, so the next call connects to the master
 * (through the sentinels when they are configured). Other replies pass. */
static redisReply *unless_demoted(kaal_backend *b, redisReply *rep, int *rc, kaal_error *err,
                                  const char *what)
{
    if (!rep || rep->type != REDIS_REPLY_ERROR || rep->len < 8 || memcmp(rep->str, "READONLY", 8) != 0) {
        return rep;
    }
    *rc = kaal_error_set(err, KAAL_ECONNECT, NULL, -1,
                         "redis: %s: the server is a read-only replica now (failover?): %.120s", what,
                         rep->str);
    freeReplyObject(rep);
    drop_context(b);
    return NULL;
}

/* The end of every command: no reply is a failed exchange (rc says why), an
 * error reply is KAAL_EBACKEND; otherwise *out is the reply (free it with
 * freeReplyObject), or, with out NULL, the reply is dropped. */
static int take_reply(redisReply *rep, int rc, redisReply **out, kaal_error *err,
                      const char *what)
{
    if (!rep) return rc;
    if (rep->type == REDIS_REPLY_ERROR) {
        int rc = reply_error(rep, err, what);
        freeReplyObject(rep);
        return rc;
    }
    if (out) {
        *out = rep;
    } else {
        freeReplyObject(rep);
    }
    return KAAL_OK;
}

/* One command on a connected session; the reply as take_reply gives it. */
static int command(kaal_backend *b, int argc, const char **argv, const size_t *lens,
                   redisReply **out, kaal_error *err, const char *what)
{
    redis_impl *r = impl_of(b);
    if (out) *out = NULL;
    int rc = KAAL_OK;
    redisReply *rep;
    if (!r || !r->io) return not_connected(b, err, what);
    rep = exchange(b, argc, argv, lens, &rc, err, what);
    rep = unless_demoted(b, rep, &rc, err, what);
    return take_reply(rep, rc, out, err, what);
}

/* wait_replicas: the write just made counts only once that many replicas
 * have it (Redis replication is asynchronous: a failover loses what the
 * replicas had not received). WAIT blocks on the server for at most the
 * wait timeout; fewer acknowledgements fail the call with KAAL_ECONNECT and
 * drop the session, so the next call asks the sentinels anew. */
static int confirm_replicas(kaal_backend *b, const char *what, kaal_error *err)
{
    const kaal_conn_params *p = &b->params;
    int wait_ms = p->wait_timeout_ms > 0 ? p->wait_timeout_ms : DEFAULT_WAIT_TIMEOUT_MS;
    char n[16], t[16];
    const char *argv[3] = {"WAIT", n, t};
    size_t lens[3] = {4, 0, 0};
    redisReply *rep = NULL;
    int rc;
    lens[1] = (size_t)snprintf(n, sizeof n, "%d", p->wait_replicas);
    lens[2] = (size_t)snprintf(t, sizeof t, "%d", wait_ms);
    rc = command(b, 3, argv, lens, &rep, err, what);
    if (rc != KAAL_OK) return rc;
    if (rep->type != REDIS_REPLY_INTEGER || rep->integer < p->wait_replicas) {
        rc = kaal_error_set(err, KAAL_ECONNECT, NULL, -1,
                            "redis: %s: written, but %lld of the %d replicas wait_replicas asks for had it "
                            "within %d ms; not counted",
                            what, rep->type == REDIS_REPLY_INTEGER ? rep->integer : 0LL, p->wait_replicas,
                            wait_ms);
        drop_context(b);
    }
    freeReplyObject(rep);
    return rc;
}

/* Run script `s` with argv[3..argc-1] as ARGV, whose first is always the
 * prefix (argv[0..3] are filled here: the caller leaves four slots free).
 * The reply as take_reply gives it. */
static int run_script(kaal_backend *b, int s, int argc, const char **argv, size_t *lens,
                      redisReply **out, kaal_error *err, const char *what)
{
    redis_impl *r = impl_of(b);
    redisReply *rep;
    int rc = KAAL_OK;
    if (out) *out = NULL;
    if (!r || !r->io) return not_connected(b, err, what);
    argv[0] = "EVALSHA";
    lens[0] = 7;
    argv[1] = r->sha[s];
    lens[1] = strlen(r->sha[s]);
    argv[2] = "0";
    lens[2] = 1;
    argv[3] = r->prefix;
    lens[3] = r->prefix_len;
    rep = exchange(b, argc, argv, lens, &rc, err, what);
    if (rep && rep->type == REDIS_REPLY_ERROR && rep->len >= 8 &&
        memcmp(rep->str, "NOSCRIPT", 8) == 0) {
        /* The script cache was flushed behind our back: send the body. */
        freeReplyObject(rep);
        argv[0] = "EVAL";
        lens[0] = 4;
        argv[1] = SCRIPTS[s];
        lens[1] = strlen(SCRIPTS[s]);
        rep = exchange(b, argc, argv, lens, &rc, err, what);
    }
    rep = unless_demoted(b, rep, &rc, err, what);
    rc = take_reply(rep, rc, out, err, what);
    if (rc == KAAL_OK && !SCRIPT_READS[s] && b->params.wait_replicas > 0 &&
        (rc = confirm_replicas(b, what, err)) != KAAL_OK && out) {
        freeReplyObject(*out);
        *out = NULL;
    }
    return rc;
}

/* The ARGV of one script call with a fixed number of arguments: the prefix
 * (run_script fills it in), then what the call_* functions append. Numbers
 * are formatted into the call's own storage. */
#define CALL_MAX_ARGS 5 /* record and heartbeat take the most */

typedef struct script_call {
    const char *argv[4 + CALL_MAX_ARGS];
    size_t lens[4 + CALL_MAX_ARGS];
    char num[CALL_MAX_ARGS][24];
    int argc;
} script_call;

static void call_start(script_call *c) { c->argc = 4; }

static void call_str(script_call *c, const char *s, size_t n)
{
    c->argv[c->argc] = s;
    c->lens[c->argc] = n;
    c->argc++;
}

static void call_cstr(script_call *c, const char *s) { call_str(c, s, strlen(s)); }

static void call_int(script_call *c, int64_t v)
{
    char *d = c->num[c->argc - 4];
    call_str(c, d, (size_t)snprintf(d, 24, "%" PRId64, v));
}

static void call_size(script_call *c, size_t v)
{
    char *d = c->num[c->argc - 4];
    call_str(c, d, (size_t)snprintf(d, 24, "%zu", v));
}

/* Run script `s` with the call's arguments. */
static int call_run(kaal_backend *b, script_call *c, int s, redisReply **out, kaal_error *err,
                    const char *what)
{
    return run_script(b, s, c->argc, c->argv, c->lens, out, err, what);
}

/* Run script `s` for an integer reply: *v is its value (0 for any other
 * reply, and when the call fails). */
static int call_run_int(kaal_backend *b, script_call *c, int s, long long *v, kaal_error *err,
                        const char *what)
{
    redisReply *rep;
    int rc = call_run(b, c, s, &rep, err, what);
    *v = 0;
    if (rc != KAAL_OK) return rc;
    if (rep->type == REDIS_REPLY_INTEGER) *v = rep->integer;
    freeReplyObject(rep);
    return KAAL_OK;
}

static int parse_db(const char *s, long *db)
{
    char *end;
    if (!s || !*s) {
        *db = 0;
        return 1;
    }
    errno = 0;
    *db = strtol(s, &end, 10);
    return errno == 0 && *end == '\0' && *db >= 0 && *db <= 1000000;
}

/* A command while connecting (AUTH, SELECT, ROLE); argv are C strings.
 * An error reply ends the session: the call fails with `code` and
 * "redis: <context>: <the server's text>". *out (when not NULL) gets the
 * reply. */
static int setup_command(kaal_backend *b, int argc, const char **argv, kaal_status code,
                         const char *field, const char *context, redisReply **out, kaal_error *err)
{
    size_t lens[4];
    redisReply *rep;
    int i, rc = KAAL_OK;
    for (i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    rep = exchange(b, argc, argv, lens, &rc, err, argv[0]);
    if (!rep) return rc;
    if (rep->type == REDIS_REPLY_ERROR) {
        kaal_error_set(err, code, field, -1, "redis: %s: %.*s", context,
                       (int)(rep->len > 160 ? 160 : rep->len), rep->str);
        freeReplyObject(rep);
        drop_context(b);
        return code;
    }
    if (out) {
        *out = rep;
    } else {
        freeReplyObject(rep);
    }
    return KAAL_OK;
}

/* What redis_connect works from, read from b->params. */
typedef struct connect_plan {
    kaal_redis_addr addr; /* the server (its host and port come from the sentinels with them) */
    kaal_tls_config tls;
    int connect_ms;
    int command_ms;
    long db;
} connect_plan;

static int tls_level(const char *sslmode, int *level)
{
    if (strcmp(sslmode, "verify-full") == 0 || strcmp(sslmode, "required") == 0 ||
        strcmp(sslmode, "require") == 0) {
        *level = KAAL_TLS_VERIFY_FULL;
    } else if (strcmp(sslmode, "verify-ca") == 0) {
        *level = KAAL_TLS_VERIFY_CA;
    } else if (strcmp(sslmode, "no-verify") == 0) {
        *level = KAAL_TLS_VERIFY_NONE;
    } else {
        return 0;
    }
    return 1;
}

static int plan_connect(const kaal_conn_params *p, connect_plan *plan, kaal_error *err)
{
    memset(plan, 0, sizeof *plan);
    plan->connect_ms = p->connect_timeout_ms > 0 ? p->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    plan->command_ms = p->command_timeout_ms > 0 ? p->command_timeout_ms : DEFAULT_COMMAND_TIMEOUT_MS;
    plan->addr.host = p->host && *p->host ? p->host : "127.0.0.1";
    plan->addr.port = p->port > 0 ? p->port : DEFAULT_PORT;
    plan->addr.socket = p->socket && *p->socket ? p->socket : NULL;
    if (!parse_db(p->database, &plan->db)) {
        return kaal_error_set(err, KAAL_ECONFIG, "database", -1,
                              "redis: database must be a number >= 0, got \"%.40s\"", p->database);
    }
    if (p->sslmode && *p->sslmode && strcmp(p->sslmode, "disable") != 0) {
        if (!tls_level(p->sslmode, &plan->tls.verify)) {
            return kaal_error_set(err, KAAL_ECONFIG, "sslmode", -1,
                                  "redis: unknown TLS mode \"%.40s\" (verify-full, verify-ca or no-verify)",
                                  p->sslmode);
        }
        if (!kaal_redis_tls_available()) {
            return kaal_error_set(err, KAAL_ECONFIG, "url", -1,
                                  "redis: this build has no TLS support (rediss:// or ssl); install "
                                  "libssl-dev and reinstall kaal");
        }
        plan->tls.ca_file = p->ssl_ca;
        plan->tls.ca_path = p->ssl_ca_path;
        plan->tls.cert = p->ssl_cert;
        plan->tls.key = p->ssl_key;
        plan->tls.server_name = p->ssl_hostname;
        plan->addr.tls = &plan->tls;
    }
    if (p->sentinels && *p->sentinels && (!p->sentinel_master || !*p->sentinel_master)) {
        return kaal_error_set(err, KAAL_ECONFIG, "sentinel_master", -1,
                              "redis: sentinels are given but not the name of the master they watch");
    }
    return KAAL_OK;
}

/* The session state, made on the first connect. */
static int ensure_impl(kaal_backend *b, kaal_error *err)
{
    size_t ns_len = strlen(b->ns);
    redis_impl *r;
    if (b->impl) return KAAL_OK;
    r = calloc(1, sizeof *r);
    if (!r) return no_memory(err);
    r->prefix = malloc(ns_len + 2);
    if (!r->prefix) {
        free(r);
        return no_memory(err);
    }
    memcpy(r->prefix, b->ns, ns_len);
    r->prefix[ns_len] = ':';
    r->prefix[ns_len + 1] = '\0';
    r->prefix_len = ns_len + 1;
    b->impl = r;
    return KAAL_OK;
}

/* AUTH with (username,) password, when a password is given. */
static int authenticate(kaal_backend *b, const char *username, const char *password,
                        const char *where, kaal_error *err)
{
    const char *argv[3];
    char context[340];
    int argc = 0;
    if (!password || !*password) return KAAL_OK;
    argv[argc++] = "AUTH";
    if (username && *username) argv[argc++] = username;
    argv[argc++] = password;
    /* The server's text names the problem, never the password. */
    snprintf(context, sizeof context, "authentication to %s failed", where);
    return setup_command(b, argc, argv, KAAL_ECONNECT, NULL, context, NULL, err);
}

/* Opens the session's connection to addr (no command sent yet). */
static int open_session(kaal_backend *b, const kaal_redis_addr *addr, const connect_plan *plan,
                        kaal_error *err)
{
    redis_impl *r = impl_of(b);
    drop_context(b);
    r->timeout_ms = plan->command_ms;
    return kaal_redis_io_open(b, addr, plan->connect_ms, &r->io, err);
}

/* ---- Sentinel ------------------------------------------------------ */

/* The i-th "host:port" (or "[v6]:port") of the comma-separated list, into
 * host; 0 when there is no i-th entry. */
static int nth_sentinel(const char *list, size_t i, char *host, size_t hostn, int *port)
{
    const char *p = list, *end, *colon;
    size_t n;
    while (i > 0 && p) {
        p = strchr(p, ',');
        if (p) p++;
        i--;
    }
    if (!p || !*p) return 0;
    end = strchr(p, ',');
    if (!end) end = p + strlen(p);
    colon = end;
    while (colon > p && *colon != ':') colon--;
    if (colon == p) return 0;
    n = (size_t)(colon - p);
    if (*p == '[' && n >= 2 && colon[-1] == ']') {
        p++;
        n -= 2;
    }
    if (n == 0 || n >= hostn) return 0;
    memcpy(host, p, n);
    host[n] = '\0';
    *port = atoi(colon + 1);
    return *port > 0 && *port <= 65535;
}

static size_t sentinel_count(const char *list)
{
    size_t n = 1;
    for (; *list; list++) n += *list == ',';
    return n;
}

/* Asks the sentinel at `at` where the master is: KAAL_OK with host/port,
 * or an error saying why this sentinel could not tell. The session's
 * connection is used for it and closed after. */
static int ask_sentinel(kaal_backend *b, const kaal_redis_addr *at, const connect_plan *plan,
                        char *host, size_t hostn, int *port, kaal_error *err)
{
    const kaal_conn_params *p = &b->params;
    const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", p->sentinel_master};
    char where[300];
    redisReply *rep = NULL;
    int rc;

    kaal_redis_addr_text(at, where, sizeof where);
    rc = open_session(b, at, plan, err);
    if (rc == KAAL_OK) rc = authenticate(b, p->sentinel_username, p->sentinel_password, where, err);
    if (rc == KAAL_OK) {
        rc = setup_command(b, 3, argv, KAAL_ECONNECT, NULL, where, &rep, err);
    }
    if (rc != KAAL_OK) return rc;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_STRING && rep->element[1]->type == REDIS_REPLY_STRING &&
        rep->element[0]->len < hostn) {
        memcpy(host, rep->element[0]->str, rep->element[0]->len);
        host[rep->element[0]->len] = '\0';
        *port = atoi(rep->element[1]->str);
    } else {
        rc = kaal_error_set(err, KAAL_ECONNECT, NULL, -1, "redis: sentinel %s does not know master \"%.100s\"",
                            where, p->sentinel_master);
    }
    freeReplyObject(rep);
    drop_context(b);
    return rc;
}

/* Connected (and authenticated) to a server: KAAL_OK when it is a master.
 * A replica (a failover under way, or stale sentinel news) is refused. */
static int check_master(kaal_backend *b, const char *where, kaal_error *err)
{
    const char *argv[1] = {"ROLE"};
    redisReply *rep = NULL;
    int rc = setup_command(b, 1, argv, KAAL_ECONNECT, NULL, where, &rep, err);
    if (rc != KAAL_OK) return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 || rep->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(rep->element[0]->str, "master") != 0) {
        rc = kaal_error_set(err, KAAL_ECONNECT, NULL, -1,
                            "redis: %s, named master by the sentinels, is not a master (yet)", where);
        drop_context(b);
    }
    freeReplyObject(rep);
    return rc;
}

static int select_db(kaal_backend *b, long db, const char *where, kaal_error *err);

/* The master the sentinels name, connected, authenticated, and checked to
 * be a master. Each sentinel in turn (the last one that answered first),
 * until one names a master that is one. */
static int connect_via_sentinels(kaal_backend *b, const connect_plan *plan, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    const kaal_conn_params *p = &b->params;
    size_t n = sentinel_count(p->sentinels), k;
    char shost[256], mhost[256], where[300];
    int rc = KAAL_ECONNECT;

    for (k = 0; k < n; k++) {
        size_t i = (r->sentinel_first + k) % n;
        kaal_redis_addr at = plan->addr, master = plan->addr;
        if (!nth_sentinel(p->sentinels, i, shost, sizeof shost, &at.port)) {
            return kaal_error_set(err, KAAL_ECONFIG, "sentinels", -1,
                                  "redis: sentinel %zu of \"%.100s\" is not host:port", i + 1, p->sentinels);
        }
        at.host = shost;
        at.socket = NULL;
        rc = ask_sentinel(b, &at, plan, mhost, sizeof mhost, &master.port, err);
        if (rc == KAAL_EINTERRUPTED || rc == KAAL_ENOMEM || rc == KAAL_ECONFIG) return rc;
        if (rc != KAAL_OK) continue;
        master.host = mhost;
        master.socket = NULL;
        kaal_redis_addr_text(&master, where, sizeof where);
        rc = open_session(b, &master, plan, err);
        if (rc == KAAL_OK) rc = authenticate(b, p->username, p->password, where, err);
        if (rc == KAAL_OK) rc = check_master(b, where, err);
        if (rc == KAAL_OK) rc = select_db(b, plan->db, where, err);
        if (rc == KAAL_OK) {
            r->sentinel_first = i;
            return KAAL_OK;
        }
        if (rc == KAAL_EINTERRUPTED || rc == KAAL_ENOMEM || rc == KAAL_ECONFIG) return rc;
    }
    {
        /* err holds the last sentinel's or master's reason: keep it. */
        char last[sizeof err->message];
        memcpy(last, err->message, sizeof last);
        last[sizeof last - 1] = '\0';
        return kaal_error_set(err, rc, NULL, -1, "redis: no master \"%.60s\" from the %zu sentinel(s); last: %.150s",
                              p->sentinel_master, n, strncmp(last, "redis: ", 7) == 0 ? last + 7 : last);
    }
}

/* ---- Connecting ---------------------------------------------------- */

static int select_db(kaal_backend *b, long db, const char *where, kaal_error *err)
{
    char dbs[24], context[340];
    const char *argv[2] = {"SELECT", dbs};
    if (db == 0) return KAAL_OK;
    snprintf(dbs, sizeof dbs, "%ld", db);
    snprintf(context, sizeof context, "SELECT %ld on %s", db, where);
    return setup_command(b, 2, argv, KAAL_ECONFIG, "database", context, NULL, err);
}

/* Loads every script in one pipelined round trip and keeps their SHA1s. */
static int load_scripts(kaal_backend *b, const char *where, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    redisReply *rep;
    int i, rc = KAAL_OK;

    for (i = 0; i < S_COUNT; i++) {
        const char *argv[3] = {"SCRIPT", "LOAD", SCRIPTS[i]};
        size_t lens[3] = {6, 4, strlen(SCRIPTS[i])};
        if (kaal_redis_io_append(r->io, 3, argv, lens) != KAAL_OK) {
            drop_context(b);
            return no_memory(err);
        }
    }
    for (i = 0; i < S_COUNT; i++) {
        int wrc;
        rep = await_reply(b, &wrc, err, "SCRIPT LOAD");
        if (!rep) return wrc;
        if (rc == KAAL_OK) {
            if (rep->type == REDIS_REPLY_STRING && rep->len == 40) {
                memcpy(r->sha[i], rep->str, 40);
                r->sha[i][40] = '\0';
            } else if (rep->type == REDIS_REPLY_ERROR) {
                /* NOAUTH, NOPERM, LOADING...: this session cannot be used. */
                rc = kaal_error_set(err, KAAL_ECONNECT, NULL, -1, "redis: cannot use %s: %.*s", where,
                                    (int)(rep->len > 160 ? 160 : rep->len), rep->str);
            } else {
                rc = kaal_error_set(err, KAAL_EBACKEND, NULL, -1,
                                    "redis: SCRIPT LOAD: unexpected reply type %d", rep->type);
            }
        }
        freeReplyObject(rep);
    }
    if (rc != KAAL_OK) drop_context(b);
    return rc;
}

/* Connects to the server (or the master the sentinels name), then
 * authenticates, selects the database and loads the scripts. */
static int redis_connect(kaal_backend *b, kaal_error *err)
{
    const kaal_conn_params *p = &b->params;
    connect_plan plan;
    char where[300];
    int rc;

    if ((rc = plan_connect(p, &plan, err)) != KAAL_OK) return rc;
    if ((rc = ensure_impl(b, err)) != KAAL_OK) return rc;
    drop_context(b);
    if (p->sentinels && *p->sentinels) {
        rc = connect_via_sentinels(b, &plan, err);
        if (rc != KAAL_OK) return rc;
        snprintf(where, sizeof where, "master \"%.100s\"", p->sentinel_master);
    } else {
        kaal_redis_addr_text(&plan.addr, where, sizeof where);
        rc = open_session(b, &plan.addr, &plan, err);
        if (rc == KAAL_OK) rc = authenticate(b, p->username, p->password, where, err);
        if (rc == KAAL_OK) rc = select_db(b, plan.db, where, err);
        if (rc != KAAL_OK) return rc;
    }
    if ((rc = load_scripts(b, where, err)) != KAAL_OK) return rc;
    b->connected = 1;
    return KAAL_OK;
}

/* Free the session state (the context must be gone already). */
static void free_impl(kaal_backend *b)
{
    redis_impl *r = impl_of(b);
    if (r) {
        free(r->prefix);
        free(r);
        b->impl = NULL;
    }
}

static void redis_close(kaal_backend *b)
{
    drop_context(b);
    free_impl(b);
}

/* In a forked child: the socket is shared with the parent. Closing our copy
 * of the descriptor sends nothing on the wire (the parent still holds it), so
 * the parent's session is untouched; we never write to it (no QUIT). */
static void redis_discard(kaal_backend *b)
{
    redis_impl *r = impl_of(b);
    if (r && r->io) {
        kaal_redis_io_discard(r->io);
        r->io = NULL;
    }
    free_impl(b);
    b->connected = 0;
}

static int redis_migrate(kaal_backend *b, kaal_error *err)
{
    (void)b;
    (void)err;
    return KAAL_OK; /* nothing to create */
}

/* ------------------------------------------------------------------ */
/* Row encoding: fields "-" (NULL) or "<len>:<bytes>,"                 */

typedef struct buf {
    char *p;
    size_t len, cap;
    int oom;
} buf;

static void buf_put(buf *o, const char *s, size_t n)
{
    if (o->oom) return;
    if (o->len + n + 1 > o->cap) {
        size_t ncap = o->cap ? o->cap : 128;
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

/* For a buffer that ran out of memory: free it, fail with KAAL_ENOMEM. */
static int buf_oom(buf *o, kaal_error *err)
{
    free(o->p);
    o->p = NULL;
    return no_memory(err);
}

static void enc_str(buf *o, const char *s)
{
    char head[24];
    int n;
    if (!s) {
        buf_put(o, "-", 1);
        return;
    }
    n = snprintf(head, sizeof head, "%zu:", strlen(s));
    buf_put(o, head, (size_t)n);
    buf_put(o, s, strlen(s));
    buf_put(o, ",", 1);
}

static void enc_int(buf *o, int64_t v)
{
    char num[24];
    snprintf(num, sizeof num, "%" PRId64, v);
    enc_str(o, num);
}

/* Decode one field from [*p, end). Returns 0 on malformed input. *s is NULL
 * for a NULL field. */
static int dec_field(const char **p, const char *end, const char **s, size_t *n)
{
    const char *q = *p;
    size_t len = 0;
    if (q >= end) return 0;
    if (*q == '-') {
        *s = NULL;
        *n = 0;
        *p = q + 1;
        return 1;
    }
    if (*q < '0' || *q > '9') return 0;
    while (q < end && *q >= '0' && *q <= '9') {
        len = len * 10 + (size_t)(*q - '0');
        if (len > (size_t)(end - *p)) return 0;
        q++;
    }
    if (q >= end || *q != ':') return 0;
    q++;
    if ((size_t)(end - q) < len + 1 || q[len] != ',') return 0;
    *s = q;
    *n = len;
    *p = q + len + 1;
    return 1;
}

static int dec_dup(const char **p, const char *end, char **out)
{
    const char *s;
    size_t n;
    if (!dec_field(p, end, &s, &n)) return 0;
    *out = NULL;
    if (!s) return 1;
    *out = kaal_strndup(s, n);
    return *out != NULL;
}

static int dec_int(const char **p, const char *end, int64_t *v)
{
    const char *s;
    size_t n;
    char num[24];
    char *e;
    if (!dec_field(p, end, &s, &n) || !s || n == 0 || n >= sizeof num) return 0;
    memcpy(num, s, n);
    num[n] = '\0';
    errno = 0;
    *v = strtoll(num, &e, 10);
    return errno == 0 && *e == '\0';
}

static int64_t log_ttl_s(const kaal_backend *b, int64_t lease_ms)
{
    int64_t lease_s = (lease_ms + 999) / 1000;
    int64_t ttl = b->params.log_ttl_s > 0 ? b->params.log_ttl_s : DEFAULT_LOG_TTL_S;
    return lease_s > ttl ? lease_s : ttl;
}

/* ------------------------------------------------------------------ */
/* Namespaced keys and plain commands                                 */

/* "<prefix><suffix>", or "<prefix><suffix>:<sub>" when sub is not NULL,
 * into the empty buffer *k (the caller frees k->p). */
static int ns_key(kaal_backend *b, buf *k, const char *suffix, const char *sub, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    buf_put(k, r->prefix, r->prefix_len);
    buf_put(k, suffix, strlen(suffix));
    if (sub) {
        buf_put(k, ":", 1);
        buf_put(k, sub, strlen(sub));
    }
    return k->oom ? buf_oom(k, err) : KAAL_OK;
}

/* `<cmd> <prefix><suffix> [a1 [a2]]`: one plain command on one namespaced
 * key (a2 only with a1). The reply as take_reply gives it. */
static int key_command(kaal_backend *b, const char *cmd, const char *suffix, const char *a1,
                       const char *a2, redisReply **out, kaal_error *err, const char *what)
{
    buf key = {0};
    const char *argv[4];
    size_t lens[4];
    int argc, i, rc;
    if (out) *out = NULL;
    rc = ns_key(b, &key, suffix, NULL, err);
    if (rc != KAAL_OK) return rc;
    argv[0] = cmd;
    argv[1] = key.p;
    argv[2] = a1;
    argv[3] = a2;
    argc = a1 ? (a2 ? 4 : 3) : 2;
    for (i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    rc = command(b, argc, argv, lens, out, err, what);
    free(key.p);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Claims and the dispatch log                                        */

static int redis_claim(kaal_backend *b, kaal_claim *items, size_t n, int64_t lease_ms,
                       const char *node, int64_t now, kaal_error *err)
{
    const char **argv = NULL;
    size_t *lens = NULL;
    char *fires = NULL;
    char lease[24], ttl[24];
    buf row = {0};
    redisReply *rep = NULL;
    size_t i;
    int argc, rc;

    if (n == 0) return KAAL_OK;
    if (lease_ms <= 0) return kaal_error_set(err, KAAL_EARG, "lease_ms", -1, "lease must be > 0 ms");
    if (n > 100000) {
        return kaal_error_set(err, KAAL_EARG, NULL, -1, "redis: claim batch too large (%zu > 100000)",
                              n);
    }
    argc = (int)(8 + 2 * n);
    argv = malloc(sizeof *argv * (size_t)argc);
    lens = malloc(sizeof *lens * (size_t)argc);
    fires = malloc(24 * n);
    enc_int(&row, now);
    enc_int(&row, now);
    enc_str(&row, "claimed");
    enc_str(&row, node);
    enc_str(&row, NULL);
    if (!argv || !lens || !fires || row.oom) {
        rc = no_memory(err);
        goto done;
    }
    snprintf(lease, sizeof lease, "%" PRId64, lease_ms);
    snprintf(ttl, sizeof ttl, "%" PRId64, log_ttl_s(b, lease_ms));
    argv[4] = lease;
    lens[4] = strlen(lease);
    argv[5] = ttl;
    lens[5] = strlen(ttl);
    argv[6] = row.p;
    lens[6] = row.len;
    argv[7] = node && *node ? node : "1";
    lens[7] = strlen(argv[7]);
    for (i = 0; i < n; i++) {
        char *f = fires + 24 * i;
        argv[8 + 2 * i] = items[i].key;
        lens[8 + 2 * i] = items[i].key_len;
        argv[9 + 2 * i] = f;
        lens[9 + 2 * i] = (size_t)snprintf(f, 24, "%" PRId64, items[i].fire_time);
        items[i].claimed = 0;
    }
    rc = run_script(b, S_CLAIM, argc, argv, lens, &rep, err, "claim");
    if (rc != KAAL_OK) goto done;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != n) {
        rc = kaal_error_set(err, KAAL_EBACKEND, NULL, -1, "redis: claim: unexpected reply");
        goto done;
    }
    for (i = 0; i < n; i++) {
        items[i].claimed = rep->element[i]->type == REDIS_REPLY_INTEGER && rep->element[i]->integer == 1;
    }
done:
    if (rep) freeReplyObject(rep);
    free(row.p);
    free(fires);
    free(lens);
    free(argv);
    return rc;
}

/* Claim n pairs and push each won pair's payload in one script (see
 * LUA_CLAIM_PUSH); a won pair's log row says "dispatched". */
static int redis_claim_push(kaal_backend *b, kaal_claim *items, const kaal_push *pushes, size_t n,
                            int64_t lease_ms, const char *node, int64_t now, kaal_error *err)
{
    const char **argv = NULL;
    size_t *lens = NULL;
    char *fires = NULL;
    char lease[24], ttl[24];
    buf row = {0};
    redisReply *rep = NULL;
    size_t i;
    int argc, rc;

    if (n == 0) return KAAL_OK;
    if (lease_ms <= 0) return kaal_error_set(err, KAAL_EARG, "lease_ms", -1, "lease must be > 0 ms");
    if (n > 10000) {
        return kaal_error_set(err, KAAL_EARG, NULL, -1, "redis: hand-off batch too large (%zu > 10000)", n);
    }
    argc = (int)(8 + 7 * n);
    argv = malloc(sizeof *argv * (size_t)argc);
    lens = malloc(sizeof *lens * (size_t)argc);
    fires = malloc(24 * n);
    enc_int(&row, now);
    enc_int(&row, now);
    enc_str(&row, "dispatched");
    enc_str(&row, node);
    enc_str(&row, NULL);
    if (!argv || !lens || !fires || row.oom) {
        rc = no_memory(err);
        goto done;
    }
    snprintf(lease, sizeof lease, "%" PRId64, lease_ms);
    snprintf(ttl, sizeof ttl, "%" PRId64, log_ttl_s(b, lease_ms));
    argv[4] = lease;
    lens[4] = strlen(lease);
    argv[5] = ttl;
    lens[5] = strlen(ttl);
    argv[6] = row.p;
    lens[6] = row.len;
    argv[7] = node && *node ? node : "1";
    lens[7] = strlen(argv[7]);
    for (i = 0; i < n; i++) {
        const kaal_push *q = &pushes[i];
        const char **a = argv + 8 + 7 * i;
        size_t *l = lens + 8 + 7 * i;
        char *f = fires + 24 * i;
        a[0] = items[i].key;
        l[0] = items[i].key_len;
        a[1] = f;
        l[1] = (size_t)snprintf(f, 24, "%" PRId64, items[i].fire_time);
        a[2] = q->op == 'l' ? "l" : q->op == 'z' ? "z" : "-";
        l[2] = 1;
        a[3] = q->target ? q->target : "";
        l[3] = q->target ? q->target_len : 0;
        a[4] = q->payload ? q->payload : "";
        l[4] = q->payload ? q->payload_len : 0;
        a[5] = q->set ? q->set : "";
        l[5] = q->set ? q->set_len : 0;
        a[6] = q->extra ? q->extra : "";
        l[6] = q->extra ? q->extra_len : 0;
        items[i].claimed = 0;
    }
    rc = run_script(b, S_CLAIM_PUSH, argc, argv, lens, &rep, err, "claim and hand off");
    if (rc != KAAL_OK) goto done;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != n) {
        rc = kaal_error_set(err, KAAL_EBACKEND, NULL, -1, "redis: claim and hand off: unexpected reply");
        goto done;
    }
    for (i = 0; i < n; i++) {
        items[i].claimed = rep->element[i]->type == REDIS_REPLY_INTEGER && rep->element[i]->integer == 1;
    }
done:
    if (rep) freeReplyObject(rep);
    free(row.p);
    free(fires);
    free(lens);
    free(argv);
    return rc;
}

static int redis_record(kaal_backend *b, const char *key, int64_t fire_time, const char *status,
                        const char *node, const char *error, int64_t now, kaal_error *err)
{
    script_call c;
    buf tail = {0};
    int rc;

    enc_int(&tail, now);
    enc_str(&tail, status);
    enc_str(&tail, node);
    enc_str(&tail, error);
    if (tail.oom) return buf_oom(&tail, err);
    call_start(&c);
    call_cstr(&c, key);
    call_int(&c, fire_time);
    call_int(&c, now);
    call_int(&c, log_ttl_s(b, 0));
    call_str(&c, tail.p, tail.len);
    rc = call_run(b, &c, S_RECORD, NULL, err, "record");
    free(tail.p);
    return rc;
}

static int redis_record_many(kaal_backend *b, const kaal_outcome *items, size_t n, const char *node,
                             int64_t now, kaal_error *err)
{
    const char **argv = NULL;
    size_t *lens = NULL, i;
    char *nums = NULL, ttl[24], now_s[24];
    buf *tails = NULL;
    int rc = KAAL_OK;

    if (n == 0) return KAAL_OK;
    for (i = 0; i < n; i++) {
        if (!items[i].status ||
            (strcmp(items[i].status, "dispatched") != 0 && strcmp(items[i].status, "failed") != 0))
            return kaal_error_set(err, KAAL_EARG, "status", -1, "status must be \"dispatched\" or \"failed\"");
    }
    argv = malloc(sizeof *argv * (6 + 4 * n));
    lens = malloc(sizeof *lens * (6 + 4 * n));
    nums = malloc(24 * n);
    tails = calloc(n, sizeof *tails);
    if (!argv || !lens || !nums || !tails) {
        rc = no_memory(err);
        goto done;
    }
    snprintf(ttl, sizeof ttl, "%" PRId64, log_ttl_s(b, 0));
    snprintf(now_s, sizeof now_s, "%" PRId64, now);
    argv[4] = ttl;
    lens[4] = strlen(ttl);
    for (i = 0; i < n; i++) {
        size_t a = 5 + 4 * i;
        char *f = nums + 24 * i;
        enc_int(&tails[i], now);
        enc_str(&tails[i], items[i].status);
        enc_str(&tails[i], node);
        enc_str(&tails[i], items[i].error);
        if (tails[i].oom) {
            rc = no_memory(err);
            goto done;
        }
        argv[a] = items[i].key;
        lens[a] = strlen(items[i].key);
        argv[a + 1] = f;
        lens[a + 1] = (size_t)snprintf(f, 24, "%" PRId64, items[i].fire_time);
        argv[a + 2] = now_s;
        lens[a + 2] = strlen(now_s);
        argv[a + 3] = tails[i].p;
        lens[a + 3] = tails[i].len;
    }
    rc = run_script(b, S_RECORD_MANY, (int)(5 + 4 * n), argv, lens, NULL, err, "record");
done:
    if (tails)
        for (i = 0; i < n; i++) free(tails[i].p);
    free(tails);
    free(nums);
    free(argv);
    free(lens);
    return rc;
}

static int redis_latest_fires(kaal_backend *b, kaal_latest *items, size_t n, kaal_error *err)
{
    const char **argv;
    size_t *lens, i;
    redisReply *rep = NULL;
    int rc;

    for (i = 0; i < n; i++) items[i].found = 0;
    if (n == 0) return KAAL_OK;
    argv = malloc(sizeof *argv * (4 + n));
    lens = malloc(sizeof *lens * (4 + n));
    if (!argv || !lens) {
        rc = no_memory(err);
        goto done;
    }
    for (i = 0; i < n; i++) {
        argv[4 + i] = items[i].key;
        lens[4 + i] = items[i].key_len;
    }
    rc = run_script(b, S_LATEST_FIRES, (int)(4 + n), argv, lens, &rep, err, "latest_fires");
    if (rc != KAAL_OK) goto done;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != n) {
        rc = kaal_error_set(err, KAAL_EBACKEND, NULL, -1, "redis: latest_fires: unexpected reply");
        goto done;
    }
    for (i = 0; i < n; i++) {
        const redisReply *e = rep->element[i];
        char num[24], *end;
        if (e->type != REDIS_REPLY_STRING || e->len == 0 || e->len >= sizeof num) continue;
        memcpy(num, e->str, e->len);
        num[e->len] = '\0';
        items[i].fire_time = strtoll(num, &end, 10);
        items[i].found = *end == '\0';
    }
done:
    if (rep) freeReplyObject(rep);
    free(argv);
    free(lens);
    return rc;
}

static int decode_log_row(const char *member, size_t mlen, const char *v, size_t vlen,
                          kaal_dispatch_row *row)
{
    const char *colon = memchr(member, ':', mlen);
    const char *p = v, *end = v + vlen;
    char num[24];
    char *e;
    size_t flen;
    if (!colon) return 0;
    flen = (size_t)(colon - member);
    if (flen == 0 || flen >= sizeof num) return 0;
    memcpy(num, member, flen);
    num[flen] = '\0';
    row->fire_time = strtoll(num, &e, 10);
    if (*e != '\0') return 0;
    row->key = kaal_strndup(colon + 1, mlen - flen - 1);
    if (!row->key) return 0;
    return dec_int(&p, end, &row->claimed_at) && dec_int(&p, end, &row->updated_at) &&
           dec_dup(&p, end, &row->status) && row->status && dec_dup(&p, end, &row->node) &&
           dec_dup(&p, end, &row->error);
}

static void free_log_row(kaal_dispatch_row *row)
{
    free(row->key);
    free(row->status);
    free(row->node);
    free(row->error);
}

static int redis_dispatches(kaal_backend *b, const kaal_dispatch_query *q, kaal_dispatch_rows *out,
                            kaal_error *err)
{
    buf index = {0};
    size_t start = 0, chunk;
    int filtered = q->status || q->node;
    int rc;

    if (q->limit == 0) return KAAL_OK;
    rc = ns_key(b, &index, "log-index", q->key, err);
    if (rc != KAAL_OK) return rc;
    /* Unfiltered: the first `limit` live rows (a few more for expired
     * index entries). Filtered: scan in chunks until enough match. */
    chunk = filtered ? SCAN_CHUNK : q->limit + 16;
    if (chunk > SCAN_CHUNK * 4) chunk = SCAN_CHUNK * 4;

    while (out->len < q->limit) {
        script_call c;
        redisReply *rep = NULL, *ms, *vs;
        size_t i;

        call_start(&c);
        call_str(&c, index.p, index.len);
        call_size(&c, start);
        call_size(&c, start + chunk - 1);
        if (q->key) call_cstr(&c, q->key);
        rc = call_run(b, &c, S_SCAN, &rep, err, "dispatches");
        if (rc != KAAL_OK) break;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[0]->type != REDIS_REPLY_ARRAY || rep->element[1]->type != REDIS_REPLY_ARRAY ||
            rep->element[0]->elements != rep->element[1]->elements) {
            freeReplyObject(rep);
            rc = kaal_error_set(err, KAAL_EBACKEND, NULL, -1, "redis: dispatches: unexpected reply");
            break;
        }
        ms = rep->element[0];
        vs = rep->element[1];
        for (i = 0; i < ms->elements && out->len < q->limit; i++) {
            kaal_dispatch_row tmp, *row;
            if (vs->element[i]->type != REDIS_REPLY_STRING) continue; /* expired */
            if (ms->element[i]->type != REDIS_REPLY_STRING) continue; /* not a log member */
            memset(&tmp, 0, sizeof tmp);
            /* A row that is not ours is skipped rather than failing the
             * whole query; so is one the filters leave out. */
            if (!decode_log_row(ms->element[i]->str, ms->element[i]->len, vs->element[i]->str,
                                vs->element[i]->len, &tmp) ||
                (q->status && strcmp(q->status, tmp.status) != 0) ||
                (q->node && (!tmp.node || strcmp(q->node, tmp.node) != 0))) {
                free_log_row(&tmp);
                continue;
            }
            if (!(row = kaal_dispatch_rows_push(out))) {
                free_log_row(&tmp);
                rc = no_memory(err);
                break;
            }
            *row = tmp;
        }
        i = ms->elements;
        freeReplyObject(rep);
        if (rc != KAAL_OK || i < chunk) break;
        start += chunk;
        if (!filtered) chunk = SCAN_CHUNK;
    }
    free(index.p);
    return rc;
}

static int redis_cleanup(kaal_backend *b, int64_t before, size_t limit, size_t *deleted,
                         kaal_error *err)
{
    script_call c;
    long long n;
    int rc;
    *deleted = 0;
    if (limit == 0) return KAAL_OK;
    call_start(&c);
    call_int(&c, before);
    call_size(&c, limit);
    rc = call_run_int(b, &c, S_CLEANUP, &n, err, "cleanup");
    if (rc == KAAL_OK) *deleted = (size_t)n;
    return rc;
}

/* ------------------------------------------------------------------ */
/* States                                                             */

static int redis_set_enabled(kaal_backend *b, const char *key, int enabled, kaal_error *err)
{
    return key_command(b, "HSET", "states", key, enabled ? "1" : "0", NULL, err, "set_enabled");
}

static int redis_states(kaal_backend *b, kaal_state_rows *out, kaal_error *err)
{
    redisReply *rep = NULL;
    size_t i;
    int rc = key_command(b, "HGETALL", "states", NULL, NULL, &rep, err, "states");
    if (rc != KAAL_OK) return rc;
    if (rep->type == REDIS_REPLY_ARRAY) {
        for (i = 0; i + 1 < rep->elements; i += 2) {
            kaal_state_row *row;
            if (rep->element[i]->type != REDIS_REPLY_STRING ||
                rep->element[i + 1]->type != REDIS_REPLY_STRING) {
                rc = kaal_error_set(err, KAAL_EBACKEND, NULL, -1, "redis: states: unexpected reply");
                break;
            }
            row = kaal_state_rows_push(out);
            if (!row || !(row->key = kaal_strndup(rep->element[i]->str, rep->element[i]->len))) {
                rc = no_memory(err);
                break;
            }
            row->enabled = rep->element[i + 1]->len == 1 && rep->element[i + 1]->str[0] == '1';
        }
    }
    freeReplyObject(rep);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Delayed jobs                                                       */

static int redis_delayed_add(kaal_backend *b, const kaal_delayed_row *job, kaal_error *err)
{
    script_call c;
    buf row = {0};
    long long added;
    int rc;

    enc_int(&row, job->run_at_ms);
    enc_str(&row, job->job_class);
    enc_str(&row, job->queue);
    enc_str(&row, job->args ? job->args : "[]");
    if (row.oom) return buf_oom(&row, err);
    call_start(&c);
    call_cstr(&c, job->job_id);
    call_int(&c, job->run_at_ms);
    call_str(&c, row.p, row.len);
    rc = call_run_int(b, &c, S_DELAYED_ADD, &added, err, "delayed_add");
    if (rc == KAAL_OK && added != 1) {
        rc = kaal_error_set(err, KAAL_EDUPLICATE, "job_id", -1,
                            "a delayed job with job_id \"%.120s\" is already pending", job->job_id);
    }
    free(row.p);
    return rc;
}

/* Fill `out` from a flat {id, row, ...} reply. */
static int delayed_rows_from(redisReply *rep, kaal_delayed_rows *out, kaal_error *err)
{
    size_t i;
    if (rep->type != REDIS_REPLY_ARRAY) {
        return kaal_error_set(err, KAAL_EBACKEND, NULL, -1, "redis: delayed jobs: unexpected reply");
    }
    for (i = 0; i + 1 < rep->elements; i += 2) {
        redisReply *id = rep->element[i], *v = rep->element[i + 1];
        const char *p, *end;
        kaal_delayed_row *row;
        if (id->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
        row = kaal_delayed_rows_push(out);
        if (!row) return no_memory(err);
        row->job_id = kaal_strndup(id->str, id->len);
        p = v->str;
        end = v->str + v->len;
        if (!row->job_id || !dec_int(&p, end, &row->run_at_ms) || !dec_dup(&p, end, &row->job_class) ||
            !dec_dup(&p, end, &row->queue) || !dec_dup(&p, end, &row->args)) {
            return kaal_error_set(err, KAAL_EBACKEND, NULL, -1,
                                  "redis: delayed job \"%.100s\" has an unreadable payload",
                                  row->job_id ? row->job_id : "?");
        }
        if (!row->args && !(row->args = kaal_strdup("[]"))) {
            return no_memory(err);
        }
    }
    return KAAL_OK;
}

/* Run script `s`, whose reply is a flat {id, row, ...}, into `out`. */
static int call_delayed_rows(kaal_backend *b, script_call *c, int s, kaal_delayed_rows *out,
                             kaal_error *err, const char *what)
{
    redisReply *rep;
    int rc = call_run(b, c, s, &rep, err, what);
    if (rc != KAAL_OK) return rc;
    rc = delayed_rows_from(rep, out, err);
    freeReplyObject(rep);
    return rc;
}

static int redis_delayed_claim(kaal_backend *b, int64_t now_ms, size_t limit, kaal_delayed_rows *out,
                               kaal_error *err)
{
    script_call c;
    if (limit == 0) return KAAL_OK;
    call_start(&c);
    call_int(&c, now_ms);
    call_size(&c, limit);
    return call_delayed_rows(b, &c, S_DELAYED_CLAIM, out, err, "delayed_claim");
}

static int redis_delayed_cancel(kaal_backend *b, const char *job_id, int *found, kaal_error *err)
{
    script_call c;
    long long removed;
    int rc;
    call_start(&c);
    call_cstr(&c, job_id);
    rc = call_run_int(b, &c, S_DELAYED_CANCEL, &removed, err, "delayed_cancel");
    *found = removed > 0;
    return rc;
}

static int redis_delayed_count(kaal_backend *b, size_t *count, kaal_error *err)
{
    redisReply *rep = NULL;
    int rc;
    *count = 0;
    rc = key_command(b, "HLEN", "delayed", NULL, NULL, &rep, err, "delayed_count");
    if (rc == KAAL_OK && rep->type == REDIS_REPLY_INTEGER) *count = (size_t)rep->integer;
    if (rep) freeReplyObject(rep);
    return rc;
}

static int redis_delayed_list(kaal_backend *b, size_t limit, kaal_delayed_rows *out, kaal_error *err)
{
    script_call c;
    if (limit == 0) return KAAL_OK;
    call_start(&c);
    call_size(&c, limit);
    return call_delayed_rows(b, &c, S_DELAYED_LIST, out, err, "delayed_list");
}

/* ------------------------------------------------------------------ */
/* Heartbeats                                                         */

static int redis_heartbeat(kaal_backend *b, const char *node, const char *info, int64_t now,
                           int64_t ttl, kaal_error *err)
{
    script_call c;
    call_start(&c);
    call_cstr(&c, node);
    call_int(&c, now);
    call_int(&c, ttl > 0 ? ttl : 0);
    call_cstr(&c, info ? "1" : "0");
    call_cstr(&c, info ? info : "");
    return call_run(b, &c, S_HEARTBEAT, NULL, err, "heartbeat");
}

static int redis_nodes(kaal_backend *b, int64_t since, kaal_node_rows *out, kaal_error *err)
{
    script_call c;
    redisReply *rep = NULL;
    size_t i;
    int rc;
    call_start(&c);
    call_int(&c, since);
    rc = call_run(b, &c, S_NODES, &rep, err, "nodes");
    if (rc != KAAL_OK) return rc;
    if (rep->type == REDIS_REPLY_ARRAY) {
        for (i = 0; i + 2 < rep->elements; i += 3) {
            redisReply *n = rep->element[i], *s = rep->element[i + 1], *inf = rep->element[i + 2];
            kaal_node_row *row;
            if (n->type != REDIS_REPLY_STRING || s->type != REDIS_REPLY_STRING) continue;
            row = kaal_node_rows_push(out);
            if (!row || !(row->node = kaal_strndup(n->str, n->len)) ||
                (inf->type == REDIS_REPLY_STRING && !(row->info = kaal_strndup(inf->str, inf->len)))) {
                rc = no_memory(err);
                break;
            }
            row->last_seen = (int64_t)strtod(s->str, NULL);
        }
    }
    freeReplyObject(rep);
    return rc;
}

/* Keyset pages: the log index is read from the newest entry, so a page
 * after a cursor reads the rows before it too (by rank, in chunks). */
static int redis_dispatches_before(kaal_backend *b, const kaal_dispatch_query *q, int64_t before_fire,
                                   const char *before_key, kaal_dispatch_rows *out, kaal_error *err)
{
    return kaal_dispatches_before_scan(b, q, before_fire, before_key, out, err);
}

static int redis_delayed_list_after(kaal_backend *b, int64_t after_ms, const char *after_id, size_t limit,
                                    kaal_delayed_rows *out, kaal_error *err)
{
    return kaal_delayed_list_after_scan(b, after_ms, after_id, limit, out, err);
}

/* ------------------------------------------------------------------ */
/* Stored schedules                                                   */
/*
 * Keys (under "<ns>:"):
 *   schedules           hash key -> encoded row (cron, job_class, args,
 *                       kwargs, time_zone, queue, enabled, updated_at)
 *   schedules-version   string, the namespace's change counter
 *   schedules-feed      zset version -> key, every key ever changed (a key
 *                       in the feed but not in the hash was removed)
 *   schedules-keys      zset 0 -> key, the stored keys in byte order
 * Each change is one script (counter, row, feed); a tick's poll is one GET
 * of the counter, and the feed is read only when the counter moved. The
 * scripts are sent with EVAL (changes and feed reads are rare). */

static const char LUA_SCHED_UPSERT[] =
    "local p, k, row = ARGV[1], ARGV[2], ARGV[3]\n"
    "local v = redis.call('INCR', p .. 'schedules-version')\n"
    "redis.call('HSET', p .. 'schedules', k, row)\n"
    "redis.call('ZADD', p .. 'schedules-feed', v, k)\n"
    "redis.call('ZADD', p .. 'schedules-keys', 0, k)\n"
    "return v\n";

static const char LUA_SCHED_REMOVE[] =
    "local p, k = ARGV[1], ARGV[2]\n"
    "if redis.call('HDEL', p .. 'schedules', k) == 0 then\n"
    "  return {0, tonumber(redis.call('GET', p .. 'schedules-version') or '0')}\n"
    "end\n"
    "local v = redis.call('INCR', p .. 'schedules-version')\n"
    "redis.call('ZADD', p .. 'schedules-feed', v, k)\n"
    "redis.call('ZREM', p .. 'schedules-keys', k)\n"
    "return {1, v}\n";

/* ARGV: prefix, then mode "feed" (since, limit) or "keys" (after or "",
 * limit) or "get" (key). Reply: the counter, then key, version, row
 * (nil when removed) for each schedule. */
static const char LUA_SCHED_READ[] =
    "local p, mode = ARGV[1], ARGV[2]\n"
    "local v = tonumber(redis.call('GET', p .. 'schedules-version') or '0')\n"
    "local out, keys = {v}, {}\n"
    "if mode == 'feed' then\n"
    "  local r = redis.call('ZRANGEBYSCORE', p .. 'schedules-feed', '(' .. ARGV[3], '+inf',\n"
    "                       'LIMIT', 0, tonumber(ARGV[4]))\n"
    "  keys = r\n"
    "elseif mode == 'keys' then\n"
    "  local from = ARGV[3] == '' and '-' or '(' .. ARGV[3]\n"
    "  keys = redis.call('ZRANGEBYLEX', p .. 'schedules-keys', from, '+', 'LIMIT', 0, tonumber(ARGV[4]))\n"
    "else\n"
    "  keys = {ARGV[3]}\n"
    "end\n"
    "for _, k in ipairs(keys) do\n"
    "  local row = redis.call('HGET', p .. 'schedules', k)\n"
    "  if row or mode == 'feed' then\n"
    "    out[#out + 1] = k\n"
    "    out[#out + 1] = redis.call('ZSCORE', p .. 'schedules-feed', k)\n"
    "    out[#out + 1] = row\n"
    "  end\n"
    "end\n"
    "return out\n";

/* EVAL body 0 prefix args...: one script call without the script cache. */
static int sched_eval(kaal_backend *b, const char *body, int n, const char **args, const size_t *arg_lens,
                      redisReply **out, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    const char *argv[10];
    size_t lens[10];
    int i;
    if (!r || !r->io) return not_connected(b, err, "schedules");
    argv[0] = "EVAL";
    lens[0] = 4;
    argv[1] = body;
    lens[1] = strlen(body);
    argv[2] = "0";
    lens[2] = 1;
    argv[3] = r->prefix;
    lens[3] = r->prefix_len;
    for (i = 0; i < n; i++) {
        argv[4 + i] = args[i];
        lens[4 + i] = arg_lens ? arg_lens[i] : strlen(args[i]);
    }
    return command(b, 4 + n, argv, lens, out, err, "schedules");
}

static int redis_sched_upsert(kaal_backend *b, const kaal_schedule_row *row, int64_t now, int64_t *version,
                              kaal_error *err)
{
    buf enc = {0};
    const char *args[2];
    size_t lens[2];
    redisReply *rep = NULL;
    int rc;
    enc_str(&enc, row->cron);
    enc_str(&enc, row->job_class);
    enc_str(&enc, row->args ? row->args : "[]");
    enc_str(&enc, row->kwargs ? row->kwargs : "{}");
    enc_str(&enc, row->time_zone);
    enc_str(&enc, row->queue);
    enc_int(&enc, row->enabled ? 1 : 0);
    enc_int(&enc, now);
    if (enc.oom) return buf_oom(&enc, err);
    args[0] = row->key;
    lens[0] = strlen(row->key);
    args[1] = enc.p;
    lens[1] = enc.len;
    rc = sched_eval(b, LUA_SCHED_UPSERT, 2, args, lens, &rep, err);
    free(enc.p);
    if (rc != KAAL_OK) return rc;
    *version = rep->type == REDIS_REPLY_INTEGER ? rep->integer : 0;
    freeReplyObject(rep);
    return KAAL_OK;
}

static int redis_sched_remove(kaal_backend *b, const char *key, int64_t now, int *found, int64_t *version,
                              kaal_error *err)
{
    redisReply *rep = NULL;
    int rc;
    (void)now;
    *found = 0;
    rc = sched_eval(b, LUA_SCHED_REMOVE, 1, &key, NULL, &rep, err);
    if (rc != KAAL_OK) return rc;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2) {
        *found = rep->element[0]->integer == 1;
        *version = rep->element[1]->integer;
    }
    freeReplyObject(rep);
    return KAAL_OK;
}

/* Rows from a LUA_SCHED_READ reply (after the counter). */
static int sched_rows_from(redisReply *rep, kaal_schedule_rows *out, kaal_error *err)
{
    size_t i;
    for (i = 1; i + 2 < rep->elements; i += 3) {
        redisReply *k = rep->element[i], *v = rep->element[i + 1], *r = rep->element[i + 2];
        kaal_schedule_row *row;
        int64_t enabled = 0;
        if (k->type != REDIS_REPLY_STRING) continue;
        row = kaal_schedule_rows_push(out);
        if (!row || !(row->key = kaal_strndup(k->str, k->len))) return no_memory(err);
        row->version = v->type == REDIS_REPLY_STRING ? (int64_t)strtod(v->str, NULL) : 0;
        if (r->type != REDIS_REPLY_STRING) {
            row->deleted = 1;
            continue;
        }
        {
            const char *p = r->str, *end = r->str + r->len;
            if (!dec_dup(&p, end, &row->cron) || !dec_dup(&p, end, &row->job_class) ||
                !dec_dup(&p, end, &row->args) || !dec_dup(&p, end, &row->kwargs) ||
                !dec_dup(&p, end, &row->time_zone) || !dec_dup(&p, end, &row->queue) ||
                !dec_int(&p, end, &enabled) || !dec_int(&p, end, &row->updated_at) || !row->cron ||
                !row->job_class || !row->args || !row->kwargs)
                return kaal_error_set(err, KAAL_EBACKEND, NULL, -1,
                                      "redis: stored schedule \"%.100s\" has an unreadable payload", row->key);
        }
        row->enabled = enabled != 0;
    }
    return KAAL_OK;
}

static int sched_read(kaal_backend *b, const char *mode, const char *a, const char *c, kaal_schedule_rows *out,
                      int64_t *version, kaal_error *err)
{
    const char *args[3];
    redisReply *rep = NULL;
    int rc;
    args[0] = mode;
    args[1] = a;
    args[2] = c;
    rc = sched_eval(b, LUA_SCHED_READ, c ? 3 : 2, args, NULL, &rep, err);
    if (rc != KAAL_OK) return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) {
        freeReplyObject(rep);
        return kaal_error_set(err, KAAL_EBACKEND, NULL, -1, "redis: schedules: unexpected reply");
    }
    if (version) *version = rep->element[0]->integer;
    rc = sched_rows_from(rep, out, err);
    freeReplyObject(rep);
    return rc;
}

static int redis_sched_get(kaal_backend *b, const char *key, kaal_schedule_rows *out, kaal_error *err)
{
    return sched_read(b, "get", key, NULL, out, NULL, err);
}

static int redis_sched_list(kaal_backend *b, const char *after, size_t limit, kaal_schedule_rows *out,
                            kaal_error *err)
{
    char limit_s[24];
    snprintf(limit_s, sizeof limit_s, "%zu", limit);
    return sched_read(b, "keys", after ? after : "", limit_s, out, NULL, err);
}

static int redis_sched_changes(kaal_backend *b, int64_t since, size_t limit, kaal_schedule_rows *out,
                               int64_t *version, kaal_error *err)
{
    redisReply *rep = NULL;
    char since_s[24], limit_s[24];
    int rc = key_command(b, "GET", "schedules-version", NULL, NULL, &rep, err, "schedules");
    if (rc != KAAL_OK) return rc;
    *version = rep->type == REDIS_REPLY_STRING ? strtoll(rep->str, NULL, 10) : 0;
    freeReplyObject(rep);
    if (*version <= since) return KAAL_OK;
    snprintf(since_s, sizeof since_s, "%" PRId64, since);
    snprintf(limit_s, sizeof limit_s, "%zu", limit);
    return sched_read(b, "feed", since_s, limit_s, out, version, err);
}

static int redis_sched_count(kaal_backend *b, size_t *count, kaal_error *err)
{
    redisReply *rep = NULL;
    int rc = key_command(b, "ZCARD", "schedules-keys", NULL, NULL, &rep, err, "schedules");
    *count = 0;
    if (rc == KAAL_OK && rep->type == REDIS_REPLY_INTEGER) *count = (size_t)rep->integer;
    if (rep) freeReplyObject(rep);
    return rc;
}

static const kaal_schedule_ops redis_schedule_ops = {
    redis_sched_upsert, redis_sched_remove, redis_sched_get,
    redis_sched_list,   redis_sched_changes, redis_sched_count,
};

/* Redis keeps no schema steps: stored schedules only add keys. */
static int redis_schema_version(kaal_backend *b, int *version, kaal_error *err)
{
    (void)b;
    (void)err;
    *version = KAAL_SCHEMA_VERSION;
    return KAAL_OK;
}

const kaal_backend_vtable kaal_backend_redis = {
    .name = "redis",
    .connect = redis_connect,
    .close = redis_close,
    .discard = redis_discard,
    .migrate = redis_migrate,
    .claim = redis_claim,
    .record = redis_record,
    .dispatches = redis_dispatches,
    .cleanup = redis_cleanup,
    .set_enabled = redis_set_enabled,
    .states = redis_states,
    .delayed_add = redis_delayed_add,
    .delayed_claim = redis_delayed_claim,
    .delayed_cancel = redis_delayed_cancel,
    .delayed_count = redis_delayed_count,
    .delayed_list = redis_delayed_list,
    .heartbeat = redis_heartbeat,
    .nodes = redis_nodes,
    .dispatches_before = redis_dispatches_before,
    .delayed_list_after = redis_delayed_list_after,
    .claim_push = redis_claim_push,
    .schema_version = redis_schema_version,
    .schedules = &redis_schedule_ops,
    .latest_fires = redis_latest_fires,
    .record_many = redis_record_many,
};

#endif /* KAAL_HAVE_REDIS */
