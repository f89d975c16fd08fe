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
 * Keys, layout 2 (all under the hash-tagged prefix "{<ns>}:", so they
 * share one Cluster slot; every script names each key it touches in KEYS;
 * docs/redis.md has the full table and the upgrade from layout 1):
 *   {ns}:log:<fire>:<key>     string, encoded row, EX retention the claim and
 *                                                                its dispatch-log entry
 *   {ns}:log-index            zset fire_time -> "<fire>:<key>"   log order + cleanup
 *   {ns}:log-index:<key>      zset fire_time -> "<fire>"        queries by key
 *   {ns}:states               hash key -> "1" / "0"              enable/disable
 *   {ns}:delayed              hash job_id -> encoded row         delayed payloads
 *   {ns}:delayed-due          zset run_at_ms -> job_id           delayed order
 *   {ns}:delayed-unreadable   hash job_id -> raw payload         claimed, undecodable
 *   {ns}:nodes                zset last_seen -> node             heartbeats
 *   {ns}:node-info            hash node -> info JSON
 *   {ns}:layout               "2", or "1+2" while the previous release's keys
 *                             ("<ns>:..." untagged) are still in use
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
#include <limits.h>
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
/* Lua scripts. Every key a script touches is in KEYS (names built in  */
/* C), and every key of the layout starts with the hash-tagged prefix  */
/* "{<ns>}:", so one script's keys share one Cluster slot. The only    */
/* exception is the transition from layout 1 (compat_* scripts and     */
/* the layout/migrate scripts), which also declares the untagged keys  */
/* of the previous release: layout 1 never ran on a Cluster.           */

/* `cmd` with the key k and then the elements of table t, in slices that
 * Lua's unpack can take. */
#define LUA_BULK_FN                                                                       \
    "local function bulk(cmd, k, t)\n"                                                   \
    "  for i = 1, #t, 4000 do\n"                                                         \
    "    redis.call(cmd, k, unpack(t, i, math.min(i + 3999, #t)))\n"                     \
    "  end\n"                                                                            \
    "end\n"

/* The claim of a batch, shared by every claim script (a script that also
 * hands the won pairs to a queue appends its own lines after it).
 * KEYS (from KEYS[first]): log-new, then the `npairs` pairs' log keys
 * (`lk` keys per pair, ours first). ARGV: row, ttl_s, cut (where
 * "<fire>:<key>" starts in a log key).
 * One SET NX EX per pair is the claim and its dispatch-log entry at once;
 * the won pairs' "<fire>:<key>" go to the list log-new with one RPUSH, from
 * which reads of the log index them later (index_new). Leaves won[i] = '1'
 * or '0' and new = the won pairs' "<fire>:<key>". With `compat` (layout
 * 1+2) a pair is also lost to the previous release's log or claim key, and
 * a won pair writes that release's log key, which its claims check. */
#define LUA_CLAIM_CORE                                                                     \
    "local row, ttl, cut = ARGV[1], ARGV[2], tonumber(ARGV[3])\n"                          \
    "local won, new = {}, {}\n"                                                           \
    "for i = 1, npairs do\n"                                                             \
    "  local at = first + lk * (i - 1) + 1\n"                                             \
    "  local k = KEYS[at]\n"                                                              \
    "  local free = true\n"                                                               \
    "  if compat then\n"                                                                  \
    "    free = redis.call('EXISTS', KEYS[at + 1]) == 0 and\n"                            \
    "           redis.call('EXISTS', KEYS[at + 2]) == 0\n"                                \
    "  end\n"                                                                             \
    "  if free and redis.call('SET', k, row, 'NX', 'EX', ttl) then\n"                     \
    "    if compat then redis.call('SET', KEYS[at + 1], row, 'EX', ttl) end\n"            \
    "    won[i] = '1'\n"                                                                  \
    "    new[#new + 1] = string.sub(k, cut)\n"                                            \
    "  else\n"                                                                            \
    "    won[i] = '0'\n"                                                                  \
    "  end\n"                                                                             \
    "end\n"                                                                               \
    "bulk('RPUSH', KEYS[first], new)\n"

/* Claim (layout 2). KEYS: log-new, log keys. Returns a string of one '1'
 * (won) or '0' per pair. */
static const char LUA_CLAIM[] =
    "local first, lk, compat = 1, 1, false\n"
    "local npairs = #KEYS - 1\n"
    LUA_BULK_FN
    LUA_CLAIM_CORE
    "return table.concat(won)\n";

/* Claim while the namespace is in transition from layout 1 (1+2).
 * KEYS: layout, log-new, then per pair: log key, the previous release's
 * log key and claim key. Checks the layout first: once `kaal migrate` has
 * finished (layout 2) the old keys are left alone. Returns {won string,
 * layout}. */
static const char LUA_CLAIM_COMPAT[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "local first, lk, compat = 2, 3, v == '1+2'\n"
    "local npairs = (#KEYS - 2) / 3\n"
    LUA_BULK_FN
    LUA_CLAIM_CORE
    "return {table.concat(won), v or ''}\n";

/* Claim and hand off (the exactly-once hand-off to a job queue in the same
 * Redis, docs/guarantee.md): the claim above, and in the same script each
 * won pair's payload pushed. After the claim's KEYS come two per pair: the
 * target and the set (a pair without one names its own log key there, so
 * every key stays declared). ARGV after the claim's: per pair op, payload,
 * extra, has_set. Op "l" LPUSHes the payload onto the list `target` and,
 * with has_set "1", SADDs `extra` to `set` (Sidekiq: the queue list and
 * the "queues" set); op "z" ZADDs it to `target` with score `extra` (a
 * scheduled job); op "-" pushes nothing. Redis does not undo the writes of
 * a script that fails half-way, so every target's type is checked before
 * the first write: a key of the wrong type fails the whole call with
 * nothing written. */
#define LUA_CLAIM_PUSH_BODY                                                                 \
    "local pk = first + lk * npairs\n"                                                      \
    "local want = {l = 'list', z = 'zset'}\n"                                               \
    "for i = 1, npairs do\n"                                                                \
    "  local a = 3 + 4 * (i - 1)\n"                                                         \
    "  local op = ARGV[a + 1]\n"                                                            \
    "  local checks = {}\n"                                                                 \
    "  if want[op] then checks[#checks + 1] = {KEYS[pk + 2 * i - 1], want[op]} end\n"        \
    "  if op == 'l' and ARGV[a + 4] == '1' then checks[#checks + 1] = {KEYS[pk + 2 * i], 'set'} end\n" \
    "  for _, c in ipairs(checks) do\n"                                                     \
    "    local t = redis.call('TYPE', c[1]).ok\n"                                           \
    "    if t ~= 'none' and t ~= c[2] then\n"                                               \
    "      return redis.error_reply('WRONGTYPE hand-off target ' .. c[1] .. ' is a ' .. t .. ', not a ' .. c[2])\n" \
    "    end\n"                                                                             \
    "  end\n"                                                                               \
    "end\n"                                                                                 \
    LUA_CLAIM_CORE                                                                         \
    "for i = 1, npairs do\n"                                                                \
    "  local a = 3 + 4 * (i - 1)\n"                                                         \
    "  local op = ARGV[a + 1]\n"                                                            \
    "  if won[i] == '1' and op == 'l' then\n"                                               \
    "    redis.call('LPUSH', KEYS[pk + 2 * i - 1], ARGV[a + 2])\n"                           \
    "    if ARGV[a + 4] == '1' then redis.call('SADD', KEYS[pk + 2 * i], ARGV[a + 3]) end\n"  \
    "  elseif won[i] == '1' and op == 'z' then\n"                                           \
    "    redis.call('ZADD', KEYS[pk + 2 * i - 1], ARGV[a + 3], ARGV[a + 2])\n"               \
    "  end\n"                                                                               \
    "end\n"

/* Claim and hand off (layout 2). KEYS: log-new, log keys, push keys.
 * Returns the won string as LUA_CLAIM. */
static const char LUA_CLAIM_PUSH[] =
    "local first, lk, compat = 1, 1, false\n"
    "local npairs = (#KEYS - 1) / 3\n"
    LUA_BULK_FN
    LUA_CLAIM_PUSH_BODY
    "return table.concat(won)\n";

/* Claim and hand off in layout 1+2 (KEYS as LUA_CLAIM_COMPAT, then the push
 * keys). Returns {won string, layout}. */
static const char LUA_CLAIM_PUSH_COMPAT[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "local first, lk, compat = 2, 3, v == '1+2'\n"
    "local npairs = (#KEYS - 2) / 5\n"
    LUA_BULK_FN
    LUA_CLAIM_PUSH_BODY
    "return {table.concat(won), v or ''}\n";

/* Indexes claimed pairs read from the head of log-new. KEYS: log-new,
 * log-index, log-by-key. ARGV: per pair: "<fire>:<key>", fire, log-by-key
 * member. Adding is idempotent; the pairs are removed from log-new only
 * while they are still its head (a concurrent reader may have taken
 * them). Returns how many were removed. */
static const char LUA_INDEX_NEW[] =
    LUA_BULK_FN
    "local n = #ARGV / 3\n"
    "local idx, bykey = {}, {}\n"
    "for i = 1, n do\n"
    "  idx[#idx + 1] = ARGV[3 * i - 1]\n"
    "  idx[#idx + 1] = ARGV[3 * i - 2]\n"
    "  bykey[#bykey + 1] = 0\n"
    "  bykey[#bykey + 1] = ARGV[3 * i]\n"
    "end\n"
    "bulk('ZADD', KEYS[2], idx)\n"
    "bulk('ZADD', KEYS[3], bykey)\n"
    "local head, same = redis.call('LRANGE', KEYS[1], 0, n - 1), 0\n"
    "for i = 1, #head do\n"
    "  if head[i] ~= ARGV[3 * i - 2] then break end\n"
    "  same = i\n"
    "end\n"
    "if same > 0 then redis.call('LTRIM', KEYS[1], same, -1) end\n"
    "return same\n";

/* Record an outcome. KEYS: log key, log-index, log-by-key.
 * ARGV: now, log ttl (s), row tail (updated_at, status, node, error
 * encoded), fire, member "<fire>:<key>", log-by-key member. Keeps
 * claimed_at of an existing row; creates the row (claimed_at = now) when
 * there is none. */
static const char LUA_RECORD[] =
    "local c = ARGV[1]\n"
    "local old = redis.call('GET', KEYS[1])\n"
    "local x = old and string.match(old, '^%d+:(%-?%d+),')\n"
    "if x then c = x end\n"
    "redis.call('SET', KEYS[1], #c .. ':' .. c .. ',' .. ARGV[3], 'EX', ARGV[2])\n"
    "redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])\n"
    "redis.call('ZADD', KEYS[3], 0, ARGV[6])\n"
    "return 1\n";

/* Record many outcomes. KEYS: log-new, then per outcome its log key.
 * ARGV: log ttl (s), then per outcome: now, row tail (as LUA_RECORD),
 * "<fire>:<key>". An entry that was not there (expired) is created and
 * queued on log-new to be indexed; one that was is already indexed or
 * queued by its claim. Returns 1. */
static const char LUA_RECORD_MANY[] =
    "local ttl, new = ARGV[1], {}\n"
    "for i = 2, #KEYS do\n"
    "  local a = 2 + 3 * (i - 2)\n"
    "  local c = ARGV[a]\n"
    "  local old = redis.call('GET', KEYS[i])\n"
    "  local x = old and string.match(old, '^%d+:(%-?%d+),')\n"
    "  if x then c = x end\n"
    "  redis.call('SET', KEYS[i], #c .. ':' .. c .. ',' .. ARGV[a + 1], 'EX', ttl)\n"
    "  if not old then new[#new + 1] = ARGV[a + 2] end\n"
    "end\n"
    "if #new > 0 then redis.call('RPUSH', KEYS[1], unpack(new)) end\n"
    "return 1\n";

/* Latest fires, first step: the newest `count` log-by-key members of each
 * job key from rank `from` on. KEYS: log-by-key. ARGV: from, count, then
 * the job keys. Returns per key a list of members. */
static const char LUA_LATEST_FIRES[] =
    "local from, count, out = tonumber(ARGV[1]), tonumber(ARGV[2]), {}\n"
    "for i = 3, #ARGV do\n"
    "  local k = ARGV[i]\n"
    "  out[#out + 1] = redis.call('ZREVRANGEBYLEX', KEYS[1], '(' .. k .. '\\1', '(' .. k .. '\\0',\n"
    "                             'LIMIT', from, count)\n"
    "end\n"
    "return out\n";

/* How many of KEYS exist, one '1' or '0' each. */
static const char LUA_EXIST[] =
    "local out = {}\n"
    "for i = 1, #KEYS do out[i] = tostring(redis.call('EXISTS', KEYS[i])) end\n"
    "return table.concat(out)\n";

/* Cleanup of members read before. KEYS: log-index, log-by-key, then per
 * member its log key. ARGV: before, then per member: member, log-by-key
 * member. A member is removed only when it is still older than `before`.
 * Returns the number removed. */
static const char LUA_CLEANUP[] =
    "local idx, before, n = KEYS[1], tonumber(ARGV[1]), 0\n"
    "for i = 1, #KEYS - 2 do\n"
    "  local m = ARGV[2 * i]\n"
    "  local s = redis.call('ZSCORE', idx, m)\n"
    "  if s and tonumber(s) < before then\n"
    "    redis.call('DEL', KEYS[2 + i])\n"
    "    redis.call('ZREM', idx, m)\n"
    "    redis.call('ZREM', KEYS[2], ARGV[2 * i + 1])\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n";

/* Delayed add. KEYS: delayed, delayed-due. ARGV: job_id, run_at_ms, row.
 * 1 added, 0 pending. */
static const char LUA_DELAYED_ADD[] =
    "if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3]) == 0 then return 0 end\n"
    "redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])\n"
    "return 1\n";

/* Pops the due jobs of the pairs (hash, zset) given, oldest run_at first
 * (ties by id), at most `limit` in all. Sets `out` to {id, run_at_ms, row,
 * ...}. */
#define LUA_DELAYED_POP_FN                                                                 \
    "local function pop(sets, now, limit)\n"                                               \
    "  local c = {}\n"                                                                     \
    "  for _, s in ipairs(sets) do\n"                                                      \
    "    local r = redis.call('ZRANGEBYSCORE', s[2], '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)\n" \
    "    for i = 1, #r, 2 do c[#c + 1] = {tonumber(r[i + 1]), r[i], s, r[i + 1]} end\n"    \
    "  end\n"                                                                              \
    "  if #sets > 1 then\n"                                                                \
    "    table.sort(c, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)\n" \
    "  end\n"                                                                              \
    "  local out = {}\n"                                                                   \
    "  for i = 1, math.min(#c, tonumber(limit)) do\n"                                      \
    "    local id, s = c[i][2], c[i][3]\n"                                                 \
    "    local row = redis.call('HGET', s[1], id)\n"                                       \
    "    redis.call('ZREM', s[2], id)\n"                                                   \
    "    if row then\n"                                                                    \
    "      redis.call('HDEL', s[1], id)\n"                                                 \
    "      out[#out + 1] = id\n"                                                           \
    "      out[#out + 1] = c[i][4]\n"                                                      \
    "      out[#out + 1] = row\n"                                                          \
    "    end\n"                                                                            \
    "  end\n"                                                                              \
    "  return out\n"                                                                       \
    "end\n"

/* Delayed claim. KEYS: delayed, delayed-due. ARGV: now_ms, limit.
 * Returns {id, run_at_ms, row, ...}. */
static const char LUA_DELAYED_CLAIM[] =
    LUA_DELAYED_POP_FN
    "return pop({{KEYS[1], KEYS[2]}}, ARGV[1], ARGV[2])\n";

/* Delayed claim in layout 1+2: also the previous release's pending jobs.
 * KEYS: layout, delayed, delayed-due, old delayed, old delayed-due.
 * Returns {layout, id, run_at_ms, row, ...}. */
static const char LUA_DELAYED_CLAIM_COMPAT[] =
    LUA_DELAYED_POP_FN
    "local v = redis.call('GET', KEYS[1])\n"
    "local sets = {{KEYS[2], KEYS[3]}}\n"
    "if v == '1+2' then sets[2] = {KEYS[4], KEYS[5]} end\n"
    "local out = pop(sets, ARGV[1], ARGV[2])\n"
    "table.insert(out, 1, v or '')\n"
    "return out\n";

/* Delayed cancel. KEYS: delayed, delayed-due, and in layout 1+2 the
 * layout and the previous release's two keys. ARGV: job_id. 1 removed, 0
 * not pending. */
static const char LUA_DELAYED_CANCEL[] =
    "redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "local n = redis.call('HDEL', KEYS[1], ARGV[1])\n"
    "if #KEYS > 2 and redis.call('GET', KEYS[3]) == '1+2' then\n"
    "  redis.call('ZREM', KEYS[5], ARGV[1])\n"
    "  n = n + redis.call('HDEL', KEYS[4], ARGV[1])\n"
    "end\n"
    "return n\n";

/* Pending delayed jobs, soonest first. KEYS: delayed, delayed-due. ARGV:
 * limit. Returns {id, run_at_ms, row, ...}. */
static const char LUA_DELAYED_LIST[] =
    "local r = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')\n"
    "local out = {}\n"
    "for i = 1, #r, 2 do\n"
    "  local row = redis.call('HGET', KEYS[1], r[i])\n"
    "  if row then out[#out + 1] = r[i]; out[#out + 1] = r[i + 1]; out[#out + 1] = row end\n"
    "end\n"
    "return out\n";

/* Heartbeat. KEYS: nodes, node-info. ARGV: node, now, ttl, has_info
 * ("1"/"0"), info. Forgets nodes not seen for longer than ttl (ttl > 0). */
static const char LUA_HEARTBEAT[] =
    "local node, now, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local z, h = KEYS[1], KEYS[2]\n"
    "if ttl > 0 then\n"
    "  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', '(' .. (now - ttl))\n"
    "  for _, n in ipairs(gone) do redis.call('HDEL', h, n) end\n"
    "  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', z, '-inf', '(' .. (now - ttl)) end\n"
    "end\n"
    "redis.call('ZADD', z, ARGV[2], node)\n"
    "if ARGV[4] == '1' then redis.call('HSET', h, node, ARGV[5])\n"
    "else redis.call('HDEL', h, node) end\n"
    "return 1\n";

/* Nodes. KEYS: nodes, node-info. ARGV: since. Returns {node, last_seen,
 * info|nil, ...} ordered by node id. */
static const char LUA_NODES[] =
    "local r = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf', 'WITHSCORES')\n"
    "local rows = {}\n"
    "for i = 1, #r, 2 do rows[#rows + 1] = {r[i], r[i + 1]} end\n"
    "table.sort(rows, function(a, b) return a[1] < b[1] end)\n"
    "local out = {}\n"
    "for _, row in ipairs(rows) do\n"
    "  out[#out + 1] = row[1]\n"
    "  out[#out + 1] = row[2]\n"
    "  out[#out + 1] = redis.call('HGET', KEYS[2], row[1])\n"
    "end\n"
    "return out\n";

/* States in layout 1+2. KEYS: layout, states, old states. ARGV: job key
 * and "1"/"0" to set one, nothing to read all. Reading merges the previous
 * release's hash under ours (ours wins). Returns {layout, key, value, ...}. */
static const char LUA_STATES_COMPAT[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "local compat = v == '1+2'\n"
    "if ARGV[1] then\n"
    "  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])\n"
    "  if compat then redis.call('HSET', KEYS[3], ARGV[1], ARGV[2]) end\n"
    "  return {v or ''}\n"
    "end\n"
    "local m, order, out = {}, {}, {v or ''}\n"
    "local from = compat and {KEYS[3], KEYS[2]} or {KEYS[2]}\n"
    "for _, k in ipairs(from) do\n"
    "  local r = redis.call('HGETALL', k)\n"
    "  for i = 1, #r, 2 do\n"
    "    if not m[r[i]] then order[#order + 1] = r[i] end\n"
    "    m[r[i]] = r[i + 1]\n"
    "  end\n"
    "end\n"
    "for _, f in ipairs(order) do out[#out + 1] = f; out[#out + 1] = m[f] end\n"
    "return out\n";

/* The namespace's layout, settled once. KEYS: layout, then the previous
 * release's fixed keys (log-index, delayed, delayed-due, states, nodes,
 * node-info). ARGV: fence text. A namespace the previous release has used
 * (any of its keys exists) goes to 1+2; a new one to 2, with a fence (a
 * string) under each of the previous release's fixed keys: a node of the
 * previous release started against it fails every operation (WRONGTYPE)
 * instead of claiming beside us. Returns the layout. */
static const char LUA_LAYOUT[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v then return v end\n"
    "for i = 2, #KEYS do\n"
    "  if redis.call('EXISTS', KEYS[i]) == 1 then\n"
    "    redis.call('SET', KEYS[1], '1+2')\n"
    "    return '1+2'\n"
    "  end\n"
    "end\n"
    "for i = 2, #KEYS do redis.call('SET', KEYS[i], ARGV[1]) end\n"
    "redis.call('SET', KEYS[1], '2')\n"
    "return '2'\n";

/* `kaal migrate`, first step from 1+2. KEYS: layout, then the previous
 * release's log-index, nodes, delayed, delayed-due, states, node-info,
 * then ours: legacy-log-index (the old index, moved aside while its
 * entries are copied), delayed, delayed-due, states. ARGV: fence text.
 * Moves the old pending jobs and job states over, the old index aside,
 * and fences the old fixed keys, all at once: from here on a node of the
 * previous release fails instead of claiming. Returns the layout. */
static const char LUA_MIGRATE_BEGIN[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v ~= '1+2' then return v or '' end\n"
    "local oidx, odel, odue, ostates = KEYS[2], KEYS[3], KEYS[4], KEYS[5]\n"
    "local aside, del, due, states = KEYS[8], KEYS[9], KEYS[10], KEYS[11]\n"
    "if redis.call('TYPE', oidx).ok == 'zset' then\n"
    "  redis.call('ZUNIONSTORE', aside, 2, aside, oidx)\n"
    "end\n"
    "if redis.call('TYPE', odel).ok == 'hash' then\n"
    "  local r = redis.call('HGETALL', odel)\n"
    "  for i = 1, #r, 2 do\n"
    "    local s = redis.call('ZSCORE', odue, r[i])\n"
    "    if s and redis.call('HSETNX', del, r[i], r[i + 1]) == 1 then\n"
    "      redis.call('ZADD', due, s, r[i])\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if redis.call('TYPE', ostates).ok == 'hash' then\n"
    "  local r = redis.call('HGETALL', ostates)\n"
    "  for i = 1, #r, 2 do redis.call('HSETNX', states, r[i], r[i + 1]) end\n"
    "end\n"
    "for i = 2, 7 do redis.call('DEL', KEYS[i]); redis.call('SET', KEYS[i], ARGV[1]) end\n"
    "return v\n";

/* `kaal migrate`, the copy of old log entries, a chunk at a time.
 * KEYS: legacy-log-index, log-index, log-by-key, then per member: old log
 * key, old claim key, old per-key index, log key. ARGV: per member:
 * member, fire, log-by-key member. An entry keeps its remaining lifetime; one already in our layout
 * stays. Returns the number of members done. */
static const char LUA_MIGRATE_COPY[] =
    "local n = 0\n"
    "for i = 1, #ARGV / 3 do\n"
    "  local m, f, bk = ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]\n"
    "  local ol, oc, op, nl = KEYS[4 * i], KEYS[4 * i + 1], KEYS[4 * i + 2], KEYS[4 * i + 3]\n"
    "  local row = redis.call('GET', ol)\n"
    "  if row then\n"
    "    local ttl = redis.call('PTTL', ol)\n"
    "    if ttl > 0 then redis.call('SET', nl, row, 'NX', 'PX', ttl)\n"
    "    else redis.call('SET', nl, row, 'NX') end\n"
    "    redis.call('ZADD', KEYS[2], f, m)\n"
    "    redis.call('ZADD', KEYS[3], 0, bk)\n"
    "  end\n"
    "  redis.call('DEL', ol, oc)\n"
    "  redis.call('ZREM', op, f)\n"
    "  redis.call('ZREM', KEYS[1], m)\n"
    "  n = n + 1\n"
    "end\n"
    "return n\n";

/* `kaal migrate`, last step. KEYS: layout, legacy-log-index. Returns the
 * layout. */
static const char LUA_MIGRATE_END[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v ~= '1+2' then return v or '' end\n"
    "if redis.call('ZCARD', KEYS[2]) > 0 then return v end\n"
    "redis.call('SET', KEYS[1], '2')\n"
    "redis.call('DEL', KEYS[2])\n"
    "return '2'\n";

enum {
    S_CLAIM,
    S_CLAIM_COMPAT,
    S_CLAIM_PUSH,
    S_CLAIM_PUSH_COMPAT,
    S_INDEX_NEW,
    S_RECORD,
    S_CLEANUP,
    S_DELAYED_ADD,
    S_DELAYED_CLAIM,
    S_DELAYED_CLAIM_COMPAT,
    S_DELAYED_CANCEL,
    S_DELAYED_LIST,
    S_HEARTBEAT,
    S_NODES,
    S_STATES_COMPAT,
    S_LAYOUT,
    S_MIGRATE_BEGIN,
    S_MIGRATE_COPY,
    S_MIGRATE_END,
    S_RECORD_MANY,
    S_LATEST_FIRES,
    S_EXIST,
    S_COUNT
};

/* The scripts that only read. Every other one writes, and with
 * wait_replicas waits for the replicas to have it (confirm_replicas): a new
 * script is a write unless listed here. */
static const unsigned char SCRIPT_READS[S_COUNT] = {
    [S_DELAYED_LIST] = 1, [S_NODES] = 1, [S_LATEST_FIRES] = 1, [S_EXIST] = 1,
};

static const char *const SCRIPTS[S_COUNT] = {
    LUA_CLAIM,           LUA_CLAIM_COMPAT,         LUA_CLAIM_PUSH,     LUA_CLAIM_PUSH_COMPAT,
    LUA_INDEX_NEW,       LUA_RECORD,               LUA_CLEANUP,        LUA_DELAYED_ADD,
    LUA_DELAYED_CLAIM,   LUA_DELAYED_CLAIM_COMPAT, LUA_DELAYED_CANCEL, LUA_DELAYED_LIST,
    LUA_HEARTBEAT,       LUA_NODES,                LUA_STATES_COMPAT,  LUA_LAYOUT,
    LUA_MIGRATE_BEGIN,   LUA_MIGRATE_COPY,         LUA_MIGRATE_END,    LUA_RECORD_MANY,
    LUA_LATEST_FIRES,    LUA_EXIST,
};

/* ------------------------------------------------------------------ */
/* Session                                                            */

typedef struct redis_impl {
    kaal_redis_io *io;
    char *prefix; /* "<ns>:": the previous release's key prefix (layout 1) */
    size_t prefix_len;
    int timeout_ms; /* command timeout */
    char sha[S_COUNT][41];
    size_t sentinel_first; /* the sentinel to ask first: the last one that answered */
    /* Key layout (set on first use, kept across reconnects). */
    char *tag; /* "{<ns>}:" (layout 2) */
    size_t tag_len;
    int layout; /* 0 not read yet, LAYOUT_NEW, LAYOUT_COMPAT */
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

/* Run script `s`: argv[0..1] are filled here (EVALSHA and the script's
 * hash; the caller leaves two slots free, then numkeys, KEYS, ARGV). The
 * reply as take_reply gives it. */
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
        free(r->tag);
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

/* ------------------------------------------------------------------ */
/* Row encoding: fields "-" (NULL) or "<len>:<bytes>,"                 */

/* For a buffer that ran out of memory: free it, fail with KAAL_ENOMEM. */
static int buf_oom(kaal_buf *o, kaal_error *err)
{
    free(o->p);
    o->p = NULL;
    return no_memory(err);
}

static void enc_str(kaal_buf *o, const char *s)
{
    char head[24];
    int n;
    if (!s) {
        kaal_buf_put(o, "-", 1);
        return;
    }
    n = snprintf(head, sizeof head, "%zu:", strlen(s));
    kaal_buf_put(o, head, (size_t)n);
    kaal_buf_str(o, s);
    kaal_buf_put(o, ",", 1);
}

static void enc_int(kaal_buf *o, int64_t v)
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
/* Key names and script calls                                         */

/* The prefix of this handle's keys, "{<ns>}:" (layout 2), built on first
 * use (r->prefix, "<ns>:", is the previous release's). */
static int prefixes(kaal_backend *b, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    size_t n;
    if (!r || !r->io) return not_connected(b, err, "redis");
    if (r->tag) return KAAL_OK;
    n = strlen(b->ns);
    r->tag = malloc(n + 4);
    if (!r->tag) return no_memory(err);
    r->tag[0] = '{';
    memcpy(r->tag + 1, b->ns, n);
    memcpy(r->tag + 1 + n, "}:", 3);
    r->tag_len = n + 3;
    return KAAL_OK;
}

/* The arguments of one command, built piece by piece into one buffer
 * (offsets, so the buffer may move while it grows). */
typedef struct cmd {
    kaal_buf s;
    size_t *off, *len;
    size_t n, cap;
    int oom;
} cmd;

/* Starts a new argument (empty so far). */
static void cmd_open(cmd *c)
{
    if (c->oom) return;
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 16;
        size_t *o = realloc(c->off, ncap * sizeof *o), *l;
        if (o) c->off = o;
        l = o ? realloc(c->len, ncap * sizeof *l) : NULL;
        if (!l) {
            c->oom = 1;
            return;
        }
        c->len = l;
        c->cap = ncap;
    }
    c->off[c->n] = c->s.len;
    c->len[c->n] = 0;
    c->n++;
}

/* Appends bytes to the current argument. */
static void cmd_put(cmd *c, const char *p, size_t n)
{
    if (c->oom) return;
    kaal_buf_put(&c->s, p, n);
    if (c->s.oom) {
        c->oom = 1;
        return;
    }
    c->len[c->n - 1] += n;
}

static void cmd_cput(cmd *c, const char *p) { cmd_put(c, p, strlen(p)); }

/* Argument i's bytes (len[i] of them); the buffer is NULL while every
 * argument is still empty. */
static const char *cmd_at(const cmd *c, size_t i) { return c->s.p ? c->s.p + c->off[i] : ""; }

static void cmd_iput(cmd *c, int64_t v)
{
    char num[24];
    cmd_put(c, num, (size_t)snprintf(num, sizeof num, "%" PRId64, v));
}

static void cmd_arg(cmd *c, const char *p, size_t n)
{
    cmd_open(c);
    cmd_put(c, p, n);
}

static void cmd_carg(cmd *c, const char *p) { cmd_arg(c, p, strlen(p)); }

static void cmd_iarg(cmd *c, int64_t v)
{
    cmd_open(c);
    cmd_iput(c, v);
}

/* A key: `prefix` then `name` (then ":" and `sub` when sub is not NULL). */
static void cmd_key(cmd *c, const char *prefix, const char *name, const char *sub)
{
    cmd_open(c);
    cmd_cput(c, prefix);
    cmd_cput(c, name);
    if (sub) {
        cmd_put(c, ":", 1);
        cmd_cput(c, sub);
    }
}

static void cmd_free(cmd *c)
{
    free(c->s.p);
    free(c->off);
    free(c->len);
    memset(c, 0, sizeof *c);
}

/* Runs the command built in c (c->n arguments, the first the command's
 * name); with script >= 0 it is EVALSHA of that script, and c holds
 * numkeys, KEYS, ARGV. The reply as take_reply gives it; c is freed. */
static int cmd_run(kaal_backend *b, cmd *c, int script, redisReply **out, kaal_error *err,
                   const char *what)
{
    size_t extra = script >= 0 ? 2 : 0, i, argc = c->n + extra;
    const char **argv = NULL;
    size_t *lens = NULL;
    int rc;
    if (out) *out = NULL;
    if (!c->oom && argc <= INT_MAX) {
        argv = malloc(argc * sizeof *argv);
        lens = malloc(argc * sizeof *lens);
    }
    if (!argv || !lens) {
        free(argv);
        free(lens);
        cmd_free(c);
        return no_memory(err);
    }
    for (i = 0; i < c->n; i++) {
        argv[extra + i] = cmd_at(c, i);
        lens[extra + i] = c->len[i];
    }
    if (script >= 0) {
        rc = run_script(b, script, (int)argc, argv, lens, out, err, what);
    } else {
        rc = command(b, (int)argc, argv, lens, out, err, what);
    }
    free(argv);
    free(lens);
    cmd_free(c);
    return rc;
}

/* Starts a script call with nkeys KEYS. */
static void cmd_script(cmd *c, int nkeys)
{
    memset(c, 0, sizeof *c);
    cmd_iarg(c, nkeys);
}

/* Runs a script for an integer reply: *v its value (0 for any other). */
static int cmd_run_int(kaal_backend *b, cmd *c, int s, long long *v, kaal_error *err, const char *what)
{
    redisReply *rep;
    int rc = cmd_run(b, c, s, &rep, err, what);
    *v = 0;
    if (rc != KAAL_OK) return rc;
    if (rep->type == REDIS_REPLY_INTEGER) *v = rep->integer;
    freeReplyObject(rep);
    return KAAL_OK;
}

/* ------------------------------------------------------------------ */
/* The layout of a namespace (docs/redis.md, "Key layout and upgrades") */

#define LAYOUT_NEW 2    /* "2": only our keys */
#define LAYOUT_COMPAT 3 /* "1+2": the previous release's keys are still in use */

static const char FENCE[] =
    "kaal: this namespace uses key layout 2 (see {<namespace>}:layout); "
    "upgrade this node's kaal";

/* The previous release's fixed keys, fenced in layout 2. */
static const char *const OLD_FIXED[] = {"log-index", "delayed", "delayed-due",
                                        "states",    "nodes",   "node-info"};
#define OLD_FIXED_N (sizeof OLD_FIXED / sizeof *OLD_FIXED)

/* Sets r->layout from a layout value read from Redis. */
static int take_layout(kaal_backend *b, const char *v, size_t n, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    if (n == 1 && v[0] == '2') {
        r->layout = LAYOUT_NEW;
    } else if (n == 3 && memcmp(v, "1+2", 3) == 0) {
        r->layout = LAYOUT_COMPAT;
    } else if (n == 0) {
        r->layout = 0; /* gone (FLUSHDB): settled again on the next call */
    } else {
        r->layout = 0;
        return kaal_error_set(err, KAAL_ECONFIG, NULL, -1,
                              "redis: namespace \"%.100s\" uses key layout \"%.20s\", which this "
                              "version of kaal does not know (a newer release wrote it): upgrade kaal",
                              b->ns, n > 20 ? "?" : v);
    }
    return KAAL_OK;
}

/* Reads (and on a new namespace settles) the layout into r->layout, as
 * part of operation `what` (errors name it). */
static int settle_layout(kaal_backend *b, const char *what, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    redisReply *rep = NULL;
    cmd c;
    size_t i;
    int rc = prefixes(b, err);
    if (rc != KAAL_OK || r->layout) return rc;
    cmd_script(&c, (int)(1 + OLD_FIXED_N));
    cmd_key(&c, r->tag, "layout", NULL);
    for (i = 0; i < OLD_FIXED_N; i++) cmd_key(&c, r->prefix, OLD_FIXED[i], NULL);
    cmd_carg(&c, FENCE);
    rc = cmd_run(b, &c, S_LAYOUT, &rep, err, what);
    if (rc == KAAL_EBACKEND && err && strstr(err->message, "CROSSSLOT")) {
        /* A Cluster (or a proxy routing by key): the previous release
         * never ran there, so the namespace starts at layout 2. */
        kaal_error_clear(err);
        memset(&c, 0, sizeof c);
        cmd_carg(&c, "SET");
        cmd_key(&c, r->tag, "layout", NULL);
        cmd_carg(&c, "2");
        cmd_carg(&c, "NX");
        rc = cmd_run(b, &c, -1, NULL, err, what);
        if (rc != KAAL_OK) return rc;
        memset(&c, 0, sizeof c);
        cmd_carg(&c, "GET");
        cmd_key(&c, r->tag, "layout", NULL);
        rc = cmd_run(b, &c, -1, &rep, err, what);
    }
    if (rc != KAAL_OK) return rc;
    if (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS) {
        rc = take_layout(b, rep->str, rep->len, err);
        if (rc == KAAL_OK && !r->layout) {
            rc = kaal_error_set(err, KAAL_EBACKEND, NULL, -1, "redis: layout: empty layout key");
        }
    } else {
        rc = kaal_error_set(err, KAAL_EBACKEND, NULL, -1, "redis: layout: unexpected reply");
    }
    freeReplyObject(rep);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Claims and the dispatch log                                        */

/* The log-by-key member of a pair: the job key, a NUL byte, and the fire
 * time as 20 digits (fire + 2^63), so members sort by key, then fire time,
 * and ZRANGEBYLEX reads one key's entries in order. */
static void cmd_put_bykey(cmd *c, const char *key, size_t key_len, int64_t fire)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%020" PRIu64, (uint64_t)fire ^ (UINT64_C(1) << 63));
    cmd_put(c, key, key_len);
    cmd_put(c, "", 1);
    cmd_put(c, num, (size_t)n);
}

/* The fire time of a log-by-key member of job key `key_len` bytes long. */
static int bykey_fire(const char *m, size_t len, size_t key_len, int64_t *fire)
{
    uint64_t v = 0;
    size_t i;
    if (len != key_len + 21 || m[key_len] != '\0') return 0;
    for (i = key_len + 1; i < len; i++) {
        if (m[i] < '0' || m[i] > '9') return 0;
        v = v * 10 + (uint64_t)(m[i] - '0');
    }
    *fire = (int64_t)(v ^ (UINT64_C(1) << 63));
    return 1;
}

/* An argument "<prefix><kind><fire>:<key>": a pair's log (or claim) key,
 * or with prefix and kind "" its member "<fire>:<key>". */
static void cmd_fire_key(cmd *c, const char *prefix, const char *kind, int64_t fire, const char *key,
                         size_t key_len)
{
    cmd_open(c);
    cmd_cput(c, prefix);
    cmd_cput(c, kind);
    cmd_iput(c, fire);
    cmd_put(c, ":", 1);
    cmd_put(c, key, key_len);
}

static void cmd_pair_key(cmd *c, const char *prefix, const char *kind, const kaal_claim *item)
{
    cmd_fire_key(c, prefix, kind, item->fire_time, item->key, item->key_len);
}

/* The call of a claim script for items[0..n): KEYS (after the layout key
 * with compat) log-new, then per pair its log key (and with compat the
 * previous release's log and claim keys), then with pushes the two push
 * keys per pair; ARGV row, ttl, cut, then with pushes op, payload, extra,
 * has_set per pair. */
static void claim_call(kaal_backend *b, cmd *c, const kaal_claim *items, const kaal_push *pushes,
                       size_t n, int compat, const kaal_buf *row, int64_t ttl)
{
    redis_impl *r = impl_of(b);
    const char *pre[3] = {r->tag, r->prefix, r->prefix};
    const char *kind[3] = {"log:", "log:", "claim:"};
    size_t i, k, lk = compat ? 3 : 1;
    cmd_script(c, (int)((compat ? 2 : 1) + (lk + (pushes ? 2 : 0)) * n));
    if (compat) cmd_key(c, r->tag, "layout", NULL);
    cmd_key(c, r->tag, "log-new", NULL);
    for (i = 0; i < n; i++) {
        for (k = 0; k < lk; k++) cmd_pair_key(c, pre[k], kind[k], &items[i]);
    }
    for (i = 0; pushes && i < n; i++) {
        const kaal_push *q = &pushes[i];
        int target = (q->op == 'l' || q->op == 'z') && q->target;
        /* a key the pair does not push to: its own log key */
        if (target) cmd_arg(c, q->target, q->target_len);
        else cmd_pair_key(c, r->tag, "log:", &items[i]);
        if (target && q->op == 'l' && q->set && q->set_len) cmd_arg(c, q->set, q->set_len);
        else if (target) cmd_arg(c, q->target, q->target_len);
        else cmd_pair_key(c, r->tag, "log:", &items[i]);
    }
    cmd_arg(c, row->p, row->len);
    cmd_iarg(c, ttl);
    cmd_iarg(c, (int64_t)(r->tag_len + 5)); /* "{ns}:log:" + 1 */
    for (i = 0; pushes && i < n; i++) {
        const kaal_push *q = &pushes[i];
        int target = (q->op == 'l' || q->op == 'z') && q->target;
        cmd_carg(c, !target ? "-" : q->op == 'l' ? "l" : "z");
        cmd_arg(c, q->payload ? q->payload : "", q->payload ? q->payload_len : 0);
        cmd_arg(c, q->extra ? q->extra : "", q->extra ? q->extra_len : 0);
        cmd_carg(c, q->op == 'l' && q->set && q->set_len ? "1" : "0");
    }
}

/* The fire time and job key of a member "<fire>:<key>" (0 when it is not
 * one). */
static int split_member(const char *m, size_t len, int64_t *fire, const char **key, size_t *key_len)
{
    const char *colon = memchr(m, ':', len);
    char num[24], *e;
    size_t fl;
    if (!colon) return 0;
    fl = (size_t)(colon - m);
    if (fl == 0 || fl >= sizeof num) return 0;
    memcpy(num, m, fl);
    num[fl] = '\0';
    errno = 0;
    *fire = strtoll(num, &e, 10);
    if (errno || *e) return 0;
    *key = colon + 1;
    *key_len = len - fl - 1;
    return 1;
}

/* The first `count` members of the list (op "LRANGE") or sorted set
 * ("ZRANGE") <tag><name>: *ms, or NULL when there are none. */
static int first_members(kaal_backend *b, const char *op, const char *name, int64_t count,
                         redisReply **ms, const char *what, kaal_error *err)
{
    cmd c;
    int rc;
    memset(&c, 0, sizeof c);
    cmd_carg(&c, op);
    cmd_key(&c, impl_of(b)->tag, name, NULL);
    cmd_carg(&c, "0");
    cmd_iarg(&c, count - 1);
    rc = cmd_run(b, &c, -1, ms, err, what);
    if (rc == KAAL_OK && ((*ms)->type != REDIS_REPLY_ARRAY || (*ms)->elements == 0)) {
        freeReplyObject(*ms);
        *ms = NULL;
    }
    return rc;
}

/* Indexes what claims appended to log-new (log-index and log-by-key),
 * a chunk at a time, until it is empty. Reads of the log call it first,
 * so they see every claim. */
static int index_new(kaal_backend *b, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    int round;
    for (round = 0; round < 10000; round++) {
        redisReply *ms = NULL;
        long long taken;
        size_t i;
        cmd c;
        int rc = first_members(b, "LRANGE", "log-new", SCAN_CHUNK * 4, &ms, "index", err);
        if (rc != KAAL_OK || !ms) return rc;
        cmd_script(&c, 3);
        cmd_key(&c, r->tag, "log-new", NULL);
        cmd_key(&c, r->tag, "log-index", NULL);
        cmd_key(&c, r->tag, "log-by-key", NULL);
        for (i = 0; i < ms->elements; i++) {
            const redisReply *m = ms->element[i];
            const char *key = "";
            size_t kl = 0;
            int64_t fire = 0;
            if (m->type != REDIS_REPLY_STRING || !split_member(m->str, m->len, &fire, &key, &kl)) {
                /* Not a pair: index it nowhere, but take it off the list. */
                cmd_arg(&c, m->type == REDIS_REPLY_STRING ? m->str : "", m->type == REDIS_REPLY_STRING ? m->len : 0);
                cmd_carg(&c, "0");
                cmd_carg(&c, "");
                continue;
            }
            cmd_arg(&c, m->str, m->len);
            cmd_iarg(&c, fire);
            cmd_open(&c);
            cmd_put_bykey(&c, key, kl, fire);
        }
        freeReplyObject(ms);
        rc = cmd_run_int(b, &c, S_INDEX_NEW, &taken, err, "index");
        if (rc != KAAL_OK) return rc;
    }
    return KAAL_OK;
}

/* A claim batch, and with pushes (claim_push) the won pairs' payloads
 * pushed by the same script; the log rows say "claimed", or "dispatched"
 * when pushed. One EVALSHA. */
static int claim_batch(kaal_backend *b, kaal_claim *items, const kaal_push *pushes, size_t n,
                       int64_t lease_ms, const char *node, int64_t now, kaal_error *err)
{
    const char *what = pushes ? "claim and hand off" : "claim";
    size_t i, max = pushes ? 10000 : 100000;
    redis_impl *r;
    kaal_buf row = {0};
    redisReply *rep = NULL, *won;
    int rc, compat, s;
    cmd c;

    for (i = 0; i < n; i++) items[i].claimed = 0;
    if (n == 0) return KAAL_OK;
    if (lease_ms <= 0) return kaal_error_set(err, KAAL_EARG, "lease_ms", -1, "lease must be > 0 ms");
    if (n > max) {
        return kaal_error_set(err, KAAL_EARG, NULL, -1, "redis: %s batch too large (%zu > %zu)",
                              pushes ? "hand-off" : "claim", n, max);
    }
    rc = settle_layout(b, what, err);
    if (rc != KAAL_OK) return rc;
    r = impl_of(b);
    compat = r->layout == LAYOUT_COMPAT;
    enc_int(&row, now);
    enc_int(&row, now);
    enc_str(&row, pushes ? "dispatched" : "claimed");
    enc_str(&row, node);
    enc_str(&row, NULL);
    if (row.oom) return buf_oom(&row, err);
    claim_call(b, &c, items, pushes, n, compat, &row, log_ttl_s(b, lease_ms));
    free(row.p);
    s = pushes ? (compat ? S_CLAIM_PUSH_COMPAT : S_CLAIM_PUSH) : (compat ? S_CLAIM_COMPAT : S_CLAIM);
    rc = cmd_run(b, &c, s, &rep, err, what);
    if (rc != KAAL_OK) return rc;
    won = rep;
    if (compat && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[1]->type == REDIS_REPLY_STRING) {
        won = rep->element[0];
        rc = take_layout(b, rep->element[1]->str, rep->element[1]->len, err);
    }
    if (rc == KAAL_OK && (won->type != REDIS_REPLY_STRING || won->len != n)) {
        rc = kaal_error_set(err, KAAL_EBACKEND, NULL, -1, "redis: %s: unexpected reply", what);
    }
    if (rc == KAAL_OK) {
        for (i = 0; i < n; i++) items[i].claimed = won->str[i] == '1';
    }
    freeReplyObject(rep);
    return rc;
}

static int redis_claim(kaal_backend *b, kaal_claim *items, size_t n, int64_t lease_ms,
                       const char *node, int64_t now, kaal_error *err)
{
    return claim_batch(b, items, NULL, n, lease_ms, node, now, err);
}

/* Claim n pairs and push each won pair's payload in one script (see
 * LUA_CLAIM_PUSH_BODY); a won pair's log row says "dispatched". */
static int redis_claim_push(kaal_backend *b, kaal_claim *items, const kaal_push *pushes, size_t n,
                            int64_t lease_ms, const char *node, int64_t now, kaal_error *err)
{
    return claim_batch(b, items, pushes, n, lease_ms, node, now, err);
}

/* The fields a record writes after the claim's: at, status, node, error. */
static void enc_outcome(kaal_buf *o, int64_t now, const char *status, const char *node, const char *error)
{
    enc_int(o, now);
    enc_str(o, status);
    enc_str(o, node);
    enc_str(o, error);
}

static int redis_record(kaal_backend *b, const char *key, int64_t fire_time, const char *status,
                        const char *node, const char *error, int64_t now, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    kaal_buf tail = {0};
    cmd c;
    int rc = kaal_check_outcome(status, err);

    if (rc == KAAL_OK) rc = prefixes(b, err);
    if (rc != KAAL_OK) return rc;
    enc_outcome(&tail, now, status, node, error);
    if (tail.oom) return buf_oom(&tail, err);
    cmd_script(&c, 3);
    cmd_fire_key(&c, r->tag, "log:", fire_time, key, strlen(key));
    cmd_key(&c, r->tag, "log-index", NULL);
    cmd_key(&c, r->tag, "log-by-key", NULL);
    cmd_iarg(&c, now);
    cmd_iarg(&c, log_ttl_s(b, 0));
    cmd_arg(&c, tail.p, tail.len);
    cmd_iarg(&c, fire_time);
    cmd_fire_key(&c, "", "", fire_time, key, strlen(key));
    cmd_open(&c);
    cmd_put_bykey(&c, key, strlen(key), fire_time);
    free(tail.p);
    return cmd_run(b, &c, S_RECORD, NULL, err, "record");
}

static int redis_record_many(kaal_backend *b, const kaal_outcome *items, size_t n, const char *node,
                             int64_t now, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    size_t i;
    cmd c;
    int rc;

    if (n == 0) return KAAL_OK;
    for (i = 0; i < n; i++) {
        if ((rc = kaal_check_outcome(items[i].status, err)) != KAAL_OK) return rc;
    }
    rc = prefixes(b, err);
    if (rc != KAAL_OK) return rc;
    cmd_script(&c, (int)(1 + n));
    cmd_key(&c, r->tag, "log-new", NULL);
    for (i = 0; i < n; i++) cmd_fire_key(&c, r->tag, "log:", items[i].fire_time, items[i].key, strlen(items[i].key));
    cmd_iarg(&c, log_ttl_s(b, 0));
    for (i = 0; i < n; i++) {
        kaal_buf tail = {0};
        enc_outcome(&tail, now, items[i].status, node, items[i].error);
        if (tail.oom) {
            cmd_free(&c);
            return buf_oom(&tail, err);
        }
        cmd_iarg(&c, now);
        cmd_arg(&c, tail.p, tail.len);
        free(tail.p);
        cmd_fire_key(&c, "", "", items[i].fire_time, items[i].key, strlen(items[i].key));
    }
    return cmd_run(b, &c, S_RECORD_MANY, NULL, err, "record");
}

/* The latest live fire time of each key: the newest log-by-key members
 * (8 at a time), then which of their entries still exist (index entries
 * whose entry expired are passed over); keys whose 8 candidates had all
 * expired are asked again further down. */
static int redis_latest_fires(kaal_backend *b, kaal_latest *items, size_t n, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    size_t *open = NULL, nopen = n, i, j, from = 0;
    int rc;

    for (i = 0; i < n; i++) items[i].found = 0;
    if (n == 0) return KAAL_OK;
    rc = prefixes(b, err);
    if (rc == KAAL_OK) rc = index_new(b, err);
    if (rc != KAAL_OK) return rc;
    open = malloc(n * sizeof *open);
    if (!open) return no_memory(err);
    for (i = 0; i < n; i++) open[i] = i;
    while (rc == KAAL_OK && nopen > 0) {
        redisReply *ms = NULL, *ex = NULL;
        size_t still = 0, cand = 0;
        cmd c;
        cmd_script(&c, 1);
        cmd_key(&c, r->tag, "log-by-key", NULL);
        cmd_iarg(&c, (int64_t)from);
        cmd_iarg(&c, 8);
        for (i = 0; i < nopen; i++) cmd_arg(&c, items[open[i]].key, items[open[i]].key_len);
        rc = cmd_run(b, &c, S_LATEST_FIRES, &ms, err, "latest_fires");
        if (rc != KAAL_OK) break;
        if (ms->type != REDIS_REPLY_ARRAY || ms->elements != nopen) {
            freeReplyObject(ms);
            rc = kaal_error_set(err, KAAL_EBACKEND, NULL, -1, "redis: latest_fires: unexpected reply");
            break;
        }
        for (i = 0; i < nopen; i++) cand += ms->element[i]->type == REDIS_REPLY_ARRAY ? ms->element[i]->elements : 0;
        if (cand == 0) {
            freeReplyObject(ms);
            break;
        }
        cmd_script(&c, (int)cand);
        for (i = 0; i < nopen; i++) {
            const kaal_latest *it = &items[open[i]];
            const redisReply *l = ms->element[i];
            for (j = 0; l->type == REDIS_REPLY_ARRAY && j < l->elements; j++) {
                int64_t fire = 0;
                const redisReply *m = l->element[j];
                if (m->type == REDIS_REPLY_STRING) bykey_fire(m->str, m->len, it->key_len, &fire);
                cmd_fire_key(&c, r->tag, "log:", fire, it->key, it->key_len);
            }
        }
        rc = cmd_run(b, &c, S_EXIST, &ex, err, "latest_fires");
        if (rc == KAAL_OK && (ex->type != REDIS_REPLY_STRING || ex->len != cand)) {
            rc = kaal_error_set(err, KAAL_EBACKEND, NULL, -1, "redis: latest_fires: unexpected reply");
        }
        for (i = 0, cand = 0; rc == KAAL_OK && i < nopen; i++) {
            kaal_latest *it = &items[open[i]];
            const redisReply *l = ms->element[i];
            size_t got = l->type == REDIS_REPLY_ARRAY ? l->elements : 0;
            for (j = 0; j < got; j++, cand++) {
                int64_t fire;
                const redisReply *m = l->element[j];
                if (it->found || ex->str[cand] != '1' || m->type != REDIS_REPLY_STRING ||
                    !bykey_fire(m->str, m->len, it->key_len, &fire))
                    continue;
                it->found = 1;
                it->fire_time = fire;
            }
            if (!it->found && got == 8) open[still++] = open[i];
        }
        if (ex) freeReplyObject(ex);
        freeReplyObject(ms);
        nopen = still;
        from += 8;
    }
    free(open);
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

/* One chunk of a newest-first scan of the dispatch log, ranks
 * [start, start + count): of log-index, or with a key of that key's range
 * of log-by-key. *members gets "<fire>:<key>" of each entry, *rows the
 * MGET of their log keys (a row is nil once its entry expired). Two
 * commands, each naming its keys. */
static int scan_chunk(kaal_backend *b, const char *key, size_t start, size_t count, cmd *members,
                      redisReply **rows, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    redisReply *ms = NULL;
    size_t i, kl = key ? strlen(key) : 0;
    cmd c;
    int rc;
    *rows = NULL;
    memset(members, 0, sizeof *members);
    memset(&c, 0, sizeof c);
    if (key) {
        cmd_carg(&c, "ZREVRANGEBYLEX");
        cmd_key(&c, r->tag, "log-by-key", NULL);
        cmd_open(&c);
        cmd_put(&c, "(", 1);
        cmd_put(&c, key, kl);
        cmd_put(&c, "\001", 1);
        cmd_open(&c);
        cmd_put(&c, "(", 1);
        cmd_put(&c, key, kl);
        cmd_put(&c, "", 1);
        cmd_carg(&c, "LIMIT");
        cmd_iarg(&c, (int64_t)start);
        cmd_iarg(&c, (int64_t)count);
    } else {
        cmd_carg(&c, "ZREVRANGE");
        cmd_key(&c, r->tag, "log-index", NULL);
        cmd_iarg(&c, (int64_t)start);
        cmd_iarg(&c, (int64_t)(start + count - 1));
    }
    rc = cmd_run(b, &c, -1, &ms, err, "dispatches");
    if (rc != KAAL_OK) return rc;
    if (ms->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(ms);
        return kaal_error_set(err, KAAL_EBACKEND, NULL, -1, "redis: dispatches: unexpected reply");
    }
    for (i = 0; i < ms->elements; i++) {
        const redisReply *m = ms->element[i];
        int64_t fire;
        cmd_open(members);
        if (m->type != REDIS_REPLY_STRING) continue; /* an empty member: never found */
        if (!key) {
            cmd_put(members, m->str, m->len);
        } else if (bykey_fire(m->str, m->len, kl, &fire)) {
            cmd_iput(members, fire);
            cmd_put(members, ":", 1);
            cmd_put(members, key, kl);
        }
    }
    freeReplyObject(ms);
    if (members->oom) {
        cmd_free(members);
        return no_memory(err);
    }
    if (members->n == 0) return KAAL_OK;
    memset(&c, 0, sizeof c);
    cmd_carg(&c, "MGET");
    for (i = 0; i < members->n; i++) {
        cmd_open(&c);
        cmd_cput(&c, r->tag);
        cmd_cput(&c, "log:");
        cmd_put(&c, cmd_at(members, i), members->len[i]);
    }
    rc = cmd_run(b, &c, -1, rows, err, "dispatches");
    if (rc == KAAL_OK && ((*rows)->type != REDIS_REPLY_ARRAY || (*rows)->elements != members->n)) {
        freeReplyObject(*rows);
        *rows = NULL;
        rc = kaal_error_set(err, KAAL_EBACKEND, NULL, -1, "redis: dispatches: unexpected reply");
    }
    if (rc != KAAL_OK) cmd_free(members);
    return rc;
}

static int redis_dispatches(kaal_backend *b, const kaal_dispatch_query *q, kaal_dispatch_rows *out,
                            kaal_error *err)
{
    size_t start = 0, chunk;
    int filtered = q->status || q->node;
    int rc;

    if (q->limit == 0) return KAAL_OK;
    rc = prefixes(b, err);
    if (rc == KAAL_OK) rc = index_new(b, err);
    if (rc != KAAL_OK) return rc;
    /* Unfiltered: the first `limit` live rows (a few more for expired
     * index entries). Filtered: scan in chunks until enough match. */
    chunk = filtered ? SCAN_CHUNK : q->limit + 16;
    if (chunk > SCAN_CHUNK * 4) chunk = SCAN_CHUNK * 4;

    while (out->len < q->limit) {
        redisReply *vs = NULL;
        size_t i, got;
        cmd ms;

        rc = scan_chunk(b, q->key, start, chunk, &ms, &vs, err);
        if (rc != KAAL_OK) break;
        got = ms.n;
        for (i = 0; i < got && out->len < q->limit; i++) {
            kaal_dispatch_row tmp, *row;
            if (vs->element[i]->type != REDIS_REPLY_STRING) continue; /* expired */
            memset(&tmp, 0, sizeof tmp);
            /* A row that is not ours is skipped rather than failing the
             * whole query; so is one the filters leave out. */
            if (!decode_log_row(cmd_at(&ms, i), ms.len[i], vs->element[i]->str, vs->element[i]->len,
                                &tmp) ||
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
        cmd_free(&ms);
        if (vs) freeReplyObject(vs);
        if (rc != KAAL_OK || got < chunk) break;
        start += chunk;
        if (!filtered) chunk = SCAN_CHUNK;
    }
    return rc;
}

/* Up to `limit` index members older than `before` are read, then removed
 * with their log entries and log-by-key members by one script that names
 * them all (and checks each is still that old). */
static int redis_cleanup(kaal_backend *b, int64_t before, size_t limit, size_t *deleted,
                         kaal_error *err)
{
    redis_impl *r = impl_of(b);
    redisReply *ms = NULL;
    long long n = 0;
    size_t i;
    cmd c;
    int rc;
    *deleted = 0;
    if (limit == 0) return KAAL_OK;
    rc = prefixes(b, err);
    if (rc == KAAL_OK) rc = index_new(b, err);
    if (rc != KAAL_OK) return rc;
    memset(&c, 0, sizeof c);
    cmd_carg(&c, "ZRANGEBYSCORE");
    cmd_key(&c, r->tag, "log-index", NULL);
    cmd_carg(&c, "-inf");
    cmd_open(&c);
    cmd_put(&c, "(", 1);
    cmd_iput(&c, before);
    cmd_carg(&c, "LIMIT");
    cmd_carg(&c, "0");
    cmd_iarg(&c, (int64_t)(limit > 100000 ? 100000 : limit));
    rc = cmd_run(b, &c, -1, &ms, err, "cleanup");
    if (rc != KAAL_OK) return rc;
    if (ms->type != REDIS_REPLY_ARRAY || ms->elements == 0) {
        freeReplyObject(ms);
        return KAAL_OK;
    }
    cmd_script(&c, (int)(2 + ms->elements));
    cmd_key(&c, r->tag, "log-index", NULL);
    cmd_key(&c, r->tag, "log-by-key", NULL);
    for (i = 0; i < ms->elements; i++) {
        const redisReply *m = ms->element[i];
        cmd_key(&c, r->tag, "log:", NULL);
        if (m->type == REDIS_REPLY_STRING) cmd_put(&c, m->str, m->len);
    }
    cmd_iarg(&c, before);
    for (i = 0; i < ms->elements; i++) {
        const redisReply *m = ms->element[i];
        const char *colon = m->type == REDIS_REPLY_STRING ? memchr(m->str, ':', m->len) : NULL;
        int64_t fire = 0;
        if (m->type == REDIS_REPLY_STRING) {
            cmd_arg(&c, m->str, m->len);
        } else {
            cmd_carg(&c, "");
        }
        cmd_open(&c);
        if (colon) {
            char num[24];
            size_t fl = (size_t)(colon - m->str);
            if (fl < sizeof num) {
                memcpy(num, m->str, fl);
                num[fl] = '\0';
                fire = strtoll(num, NULL, 10);
            }
            cmd_put_bykey(&c, colon + 1, m->len - fl - 1, fire);
        }
    }
    freeReplyObject(ms);
    rc = cmd_run_int(b, &c, S_CLEANUP, &n, err, "cleanup");
    if (rc == KAAL_OK) *deleted = (size_t)n;
    return rc;
}

/* ------------------------------------------------------------------ */
/* States                                                             */

/* The states script of layout 1+2 (enabled < 0: read them all). */
static int states_compat(kaal_backend *b, const char *key, int enabled, redisReply **out,
                         kaal_error *err)
{
    redis_impl *r = impl_of(b);
    cmd c;
    int rc;
    cmd_script(&c, 3);
    cmd_key(&c, r->tag, "layout", NULL);
    cmd_key(&c, r->tag, "states", NULL);
    cmd_key(&c, r->prefix, "states", NULL);
    if (enabled >= 0) {
        cmd_carg(&c, key);
        cmd_carg(&c, enabled ? "1" : "0");
    }
    rc = cmd_run(b, &c, S_STATES_COMPAT, out, err, enabled >= 0 ? "set_enabled" : "states");
    if (rc != KAAL_OK) return rc;
    if ((*out)->type != REDIS_REPLY_ARRAY || (*out)->elements < 1 ||
        (*out)->element[0]->type != REDIS_REPLY_STRING) {
        freeReplyObject(*out);
        *out = NULL;
        return kaal_error_set(err, KAAL_EBACKEND, NULL, -1, "redis: states: unexpected reply");
    }
    rc = take_layout(b, (*out)->element[0]->str, (*out)->element[0]->len, err);
    if (rc != KAAL_OK) {
        freeReplyObject(*out);
        *out = NULL;
    }
    return rc;
}

static int redis_set_enabled(kaal_backend *b, const char *key, int enabled, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    redisReply *rep = NULL;
    cmd c;
    int rc = settle_layout(b, "set_enabled", err);
    if (rc != KAAL_OK) return rc;
    if (r->layout == LAYOUT_COMPAT) {
        rc = states_compat(b, key, enabled ? 1 : 0, &rep, err);
        if (rep) freeReplyObject(rep);
        return rc;
    }
    memset(&c, 0, sizeof c);
    cmd_carg(&c, "HSET");
    cmd_key(&c, r->tag, "states", NULL);
    cmd_carg(&c, key);
    cmd_carg(&c, enabled ? "1" : "0");
    return cmd_run(b, &c, -1, NULL, err, "set_enabled");
}

static int redis_states(kaal_backend *b, kaal_state_rows *out, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    redisReply *rep = NULL;
    size_t i, first = 0;
    cmd c;
    int rc = settle_layout(b, "states", err);
    if (rc != KAAL_OK) return rc;
    if (r->layout == LAYOUT_COMPAT) {
        rc = states_compat(b, NULL, -1, &rep, err);
        first = 1;
    } else {
        memset(&c, 0, sizeof c);
        cmd_carg(&c, "HGETALL");
        cmd_key(&c, r->tag, "states", NULL);
        rc = cmd_run(b, &c, -1, &rep, err, "states");
    }
    if (rc != KAAL_OK) return rc;
    if (rep->type == REDIS_REPLY_ARRAY) {
        for (i = first; i + 1 < rep->elements; i += 2) {
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
    redis_impl *r = impl_of(b);
    kaal_buf row = {0};
    long long added;
    cmd c;
    int rc = prefixes(b, err);

    if (rc != KAAL_OK) return rc;
    enc_int(&row, job->run_at_ms);
    enc_str(&row, job->job_class);
    enc_str(&row, job->queue);
    enc_str(&row, job->args ? job->args : "[]");
    if (row.oom) return buf_oom(&row, err);
    cmd_script(&c, 2);
    cmd_key(&c, r->tag, "delayed", NULL);
    cmd_key(&c, r->tag, "delayed-due", NULL);
    cmd_carg(&c, job->job_id);
    cmd_iarg(&c, job->run_at_ms);
    cmd_arg(&c, row.p, row.len);
    free(row.p);
    rc = cmd_run_int(b, &c, S_DELAYED_ADD, &added, err, "delayed_add");
    if (rc == KAAL_OK && added != 1) {
        rc = kaal_error_set(err, KAAL_EDUPLICATE, "job_id", -1,
                            "a delayed job with job_id \"%.120s\" is already pending", job->job_id);
    }
    return rc;
}

/* Whether [p, end) is a delayed-job payload: run_at_ms, job_class (not
 * NULL), queue, args. Reads without copying. */
static int delayed_payload_ok(const char *p, const char *end)
{
    const char *s;
    size_t n;
    int64_t at;
    const char *q = p;
    return dec_int(&q, end, &at) && dec_field(&q, end, &s, &n) && s && dec_field(&q, end, &s, &n) &&
           dec_field(&q, end, &s, &n);
}

/* The triple {id, run_at_ms, row} at t into a new row of out. A payload
 * that cannot be decoded gives a row with its id and run_at_ms only
 * (job_class and args NULL: the scheduler reports it as failed), and
 * *bad = 1. Returns KAAL_OK or KAAL_ENOMEM (the new row is then removed
 * again). */
static int delayed_row_from(redisReply **t, kaal_delayed_rows *out, int *bad, kaal_error *err)
{
    const redisReply *id = t[0], *at = t[1], *v = t[2];
    const char *p = v->str, *end = v->str + v->len;
    size_t had = out->len;
    kaal_delayed_row *row = kaal_delayed_rows_push(out);
    *bad = 0;
    if (!row || !(row->job_id = kaal_strndup(id->str, id->len))) goto oom;
    if (!delayed_payload_ok(p, end)) {
        *bad = 1;
        row->run_at_ms = (int64_t)strtod(at->str, NULL);
        return KAAL_OK;
    }
    if (!dec_int(&p, end, &row->run_at_ms) || !dec_dup(&p, end, &row->job_class) ||
        !dec_dup(&p, end, &row->queue) || !dec_dup(&p, end, &row->args)) {
        goto oom;
    }
    if (!row->args && !(row->args = kaal_strdup("[]"))) goto oom;
    return KAAL_OK;
oom:
    kaal_delayed_rows_truncate(out, had);
    return no_memory(err);
}

/* Whether rep is a flat {id, run_at_ms, row, ...} array of strings from
 * element `first` on. */
static int delayed_reply_ok(const redisReply *rep, size_t first)
{
    size_t i;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < first || (rep->elements - first) % 3) return 0;
    for (i = first; i < rep->elements; i++) {
        if (rep->element[i]->type != REDIS_REPLY_STRING) return 0;
    }
    return 1;
}

/* Popped jobs that could not be handed over (out of memory) go back
 * pending, from triple `from` of rep on (best effort: a job added again
 * meanwhile under the same id stays as it is). */
static void delayed_give_back(kaal_backend *b, redisReply *rep, size_t from)
{
    redis_impl *r = impl_of(b);
    kaal_error ignored;
    size_t i;
    for (i = from; i + 2 < rep->elements; i += 3) {
        cmd c;
        long long added;
        cmd_script(&c, 2);
        cmd_key(&c, r->tag, "delayed", NULL);
        cmd_key(&c, r->tag, "delayed-due", NULL);
        cmd_arg(&c, rep->element[i]->str, rep->element[i]->len);
        cmd_arg(&c, rep->element[i + 1]->str, rep->element[i + 1]->len);
        cmd_arg(&c, rep->element[i + 2]->str, rep->element[i + 2]->len);
        kaal_error_clear(&ignored);
        if (cmd_run_int(b, &c, S_DELAYED_ADD, &added, &ignored, "delayed_claim") == KAAL_ECONNECT) break;
    }
}

static int redis_delayed_claim(kaal_backend *b, int64_t now_ms, size_t limit, kaal_delayed_rows *out,
                               kaal_error *err)
{
    redis_impl *r = impl_of(b);
    redisReply *rep = NULL;
    size_t i, first;
    cmd bad;
    int rc, compat, nbad = 0;

    if (limit == 0) return KAAL_OK;
    rc = settle_layout(b, "delayed_claim", err);
    if (rc != KAAL_OK) return rc;
    compat = r->layout == LAYOUT_COMPAT;
    cmd_script(&bad, compat ? 5 : 2);
    if (compat) cmd_key(&bad, r->tag, "layout", NULL);
    cmd_key(&bad, r->tag, "delayed", NULL);
    cmd_key(&bad, r->tag, "delayed-due", NULL);
    if (compat) {
        cmd_key(&bad, r->prefix, "delayed", NULL);
        cmd_key(&bad, r->prefix, "delayed-due", NULL);
    }
    cmd_iarg(&bad, now_ms);
    cmd_iarg(&bad, (int64_t)limit);
    rc = cmd_run(b, &bad, compat ? S_DELAYED_CLAIM_COMPAT : S_DELAYED_CLAIM, &rep, err, "delayed_claim");
    if (rc != KAAL_OK) return rc;
    first = compat ? 1 : 0;
    if (!delayed_reply_ok(rep, first)) {
        freeReplyObject(rep);
        return kaal_error_set(err, KAAL_EBACKEND, NULL, -1, "redis: delayed_claim: unexpected reply");
    }
    if (compat) rc = take_layout(b, rep->element[0]->str, rep->element[0]->len, err);
    /* The jobs are no longer pending: each one reaches the caller. One
     * whose payload cannot be decoded goes as a row without class and
     * args (reported as failed), its payload kept in the hash
     * <tag>delayed-unreadable; when memory runs out, the rest go back. */
    memset(&bad, 0, sizeof bad);
    cmd_carg(&bad, "HSET");
    cmd_key(&bad, r->tag, "delayed-unreadable", NULL);
    for (i = first; rc == KAAL_OK && i < rep->elements; i += 3) {
        int is_bad;
        if (delayed_row_from(rep->element + i, out, &is_bad, err) != KAAL_OK) {
            delayed_give_back(b, rep, i);
            kaal_error_clear(err);
            break;
        }
        if (is_bad) {
            cmd_arg(&bad, rep->element[i]->str, rep->element[i]->len);
            cmd_arg(&bad, rep->element[i + 2]->str, rep->element[i + 2]->len);
            nbad++;
        }
    }
    freeReplyObject(rep);
    if (nbad > 0) {
        kaal_error ignored;
        kaal_error_clear(&ignored);
        (void)cmd_run(b, &bad, -1, NULL, &ignored, "delayed_claim");
    } else {
        cmd_free(&bad);
    }
    return rc;
}

static int redis_delayed_cancel(kaal_backend *b, const char *job_id, int *found, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    long long removed = 0;
    cmd c;
    int rc = settle_layout(b, "delayed_cancel", err);
    *found = 0;
    if (rc != KAAL_OK) return rc;
    cmd_script(&c, r->layout == LAYOUT_COMPAT ? 5 : 2);
    cmd_key(&c, r->tag, "delayed", NULL);
    cmd_key(&c, r->tag, "delayed-due", NULL);
    if (r->layout == LAYOUT_COMPAT) {
        cmd_key(&c, r->tag, "layout", NULL);
        cmd_key(&c, r->prefix, "delayed", NULL);
        cmd_key(&c, r->prefix, "delayed-due", NULL);
    }
    cmd_carg(&c, job_id);
    rc = cmd_run_int(b, &c, S_DELAYED_CANCEL, &removed, err, "delayed_cancel");
    *found = removed > 0;
    return rc;
}

static int redis_delayed_count(kaal_backend *b, size_t *count, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    redisReply *rep = NULL;
    cmd c;
    int rc = prefixes(b, err);
    *count = 0;
    if (rc != KAAL_OK) return rc;
    memset(&c, 0, sizeof c);
    cmd_carg(&c, "HLEN");
    cmd_key(&c, r->tag, "delayed", NULL);
    rc = cmd_run(b, &c, -1, &rep, err, "delayed_count");
    if (rc == KAAL_OK && rep->type == REDIS_REPLY_INTEGER) *count = (size_t)rep->integer;
    if (rep) freeReplyObject(rep);
    return rc;
}

static int redis_delayed_list(kaal_backend *b, size_t limit, kaal_delayed_rows *out, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    redisReply *rep = NULL;
    size_t i;
    cmd c;
    int rc;
    if (limit == 0) return KAAL_OK;
    rc = prefixes(b, err);
    if (rc != KAAL_OK) return rc;
    cmd_script(&c, 2);
    cmd_key(&c, r->tag, "delayed", NULL);
    cmd_key(&c, r->tag, "delayed-due", NULL);
    cmd_iarg(&c, (int64_t)limit);
    rc = cmd_run(b, &c, S_DELAYED_LIST, &rep, err, "delayed_list");
    if (rc != KAAL_OK) return rc;
    if (!delayed_reply_ok(rep, 0)) {
        rc = kaal_error_set(err, KAAL_EBACKEND, NULL, -1, "redis: delayed_list: unexpected reply");
    }
    for (i = 0; rc == KAAL_OK && i < rep->elements; i += 3) {
        int is_bad;
        rc = delayed_row_from(rep->element + i, out, &is_bad, err);
        if (rc == KAAL_OK && is_bad) {
            /* Listing takes nothing: the job stays pending; say so. */
            rc = kaal_error_set(err, KAAL_EBACKEND, NULL, -1,
                                "redis: delayed job \"%.100s\" has an unreadable payload",
                                out->rows[out->len - 1].job_id);
        }
    }
    freeReplyObject(rep);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Heartbeats                                                         */

static int redis_heartbeat(kaal_backend *b, const char *node, const char *info, int64_t now,
                           int64_t ttl, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    cmd c;
    int rc = prefixes(b, err);
    if (rc != KAAL_OK) return rc;
    cmd_script(&c, 2);
    cmd_key(&c, r->tag, "nodes", NULL);
    cmd_key(&c, r->tag, "node-info", NULL);
    cmd_carg(&c, node);
    cmd_iarg(&c, now);
    cmd_iarg(&c, ttl > 0 ? ttl : 0);
    cmd_carg(&c, info ? "1" : "0");
    cmd_carg(&c, info ? info : "");
    return cmd_run(b, &c, S_HEARTBEAT, NULL, err, "heartbeat");
}

static int redis_nodes(kaal_backend *b, int64_t since, kaal_node_rows *out, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    redisReply *rep = NULL;
    size_t i;
    cmd c;
    int rc = prefixes(b, err);
    if (rc != KAAL_OK) return rc;
    cmd_script(&c, 2);
    cmd_key(&c, r->tag, "nodes", NULL);
    cmd_key(&c, r->tag, "node-info", NULL);
    cmd_iarg(&c, since);
    rc = cmd_run(b, &c, S_NODES, &rep, err, "nodes");
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

/* ------------------------------------------------------------------ */
/* `kaal migrate`: from layout 1+2 to 2                               */

/* Copies the previous release's log entries (moved aside under
 * <tag>legacy-log-index) into ours, a chunk at a time. */
static int migrate_log(kaal_backend *b, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    for (;;) {
        redisReply *ms = NULL;
        long long done;
        size_t i;
        cmd c;
        int rc = first_members(b, "ZRANGE", "legacy-log-index", SCAN_CHUNK, &ms, "migrate", err);
        if (rc != KAAL_OK || !ms) return rc;
        cmd_script(&c, (int)(3 + 4 * ms->elements));
        cmd_key(&c, r->tag, "legacy-log-index", NULL);
        cmd_key(&c, r->tag, "log-index", NULL);
        cmd_key(&c, r->tag, "log-by-key", NULL);
        for (i = 0; i < ms->elements; i++) {
            const redisReply *m = ms->element[i];
            const char *str = m->type == REDIS_REPLY_STRING ? m->str : "";
            size_t len = m->type == REDIS_REPLY_STRING ? m->len : 0;
            cmd_key(&c, r->prefix, "log:", NULL);
            cmd_put(&c, str, len);
            cmd_key(&c, r->prefix, "claim:", NULL);
            cmd_put(&c, str, len);
            cmd_key(&c, r->prefix, "log-index:", NULL);
            if (memchr(str, ':', len)) {
                const char *k = (const char *)memchr(str, ':', len) + 1;
                cmd_put(&c, k, len - (size_t)(k - str));
            }
            cmd_key(&c, r->tag, "log:", NULL);
            cmd_put(&c, str, len);
        }
        for (i = 0; i < ms->elements; i++) {
            const redisReply *m = ms->element[i];
            const char *str = m->type == REDIS_REPLY_STRING ? m->str : "";
            size_t len = m->type == REDIS_REPLY_STRING ? m->len : 0;
            const char *colon = memchr(str, ':', len);
            size_t fl = colon ? (size_t)(colon - str) : 0;
            char num[24];
            int64_t fire = 0;
            if (colon && fl < sizeof num) {
                memcpy(num, str, fl);
                num[fl] = '\0';
                fire = strtoll(num, NULL, 10);
            }
            cmd_arg(&c, str, len);
            cmd_arg(&c, str, fl);
            cmd_open(&c);
            if (colon) cmd_put_bykey(&c, colon + 1, len - fl - 1, fire);
        }
        freeReplyObject(ms);
        rc = cmd_run_int(b, &c, S_MIGRATE_COPY, &done, err, "migrate");
        if (rc != KAAL_OK) return rc;
    }
}

/* Runs a migrate step script on the layout key (and `more` keys after
 * it, given by name under the tag or the old prefix); takes the layout it
 * returns. */
static int migrate_step(kaal_backend *b, int s, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    redisReply *rep = NULL;
    size_t i;
    cmd c;
    int rc;
    if (s == S_MIGRATE_BEGIN) {
        cmd_script(&c, 11);
        cmd_key(&c, r->tag, "layout", NULL);
        for (i = 0; i < OLD_FIXED_N; i++) cmd_key(&c, r->prefix, OLD_FIXED[i], NULL);
        cmd_key(&c, r->tag, "legacy-log-index", NULL);
        cmd_key(&c, r->tag, "delayed", NULL);
        cmd_key(&c, r->tag, "delayed-due", NULL);
        cmd_key(&c, r->tag, "states", NULL);
        cmd_carg(&c, FENCE);
    } else {
        cmd_script(&c, 2);
        cmd_key(&c, r->tag, "layout", NULL);
        cmd_key(&c, r->tag, "legacy-log-index", NULL);
    }
    rc = cmd_run(b, &c, s, &rep, err, "migrate");
    if (rc != KAAL_OK) return rc;
    if (rep->type == REDIS_REPLY_STRING) {
        rc = take_layout(b, rep->str, rep->len, err);
    } else {
        rc = kaal_error_set(err, KAAL_EBACKEND, NULL, -1, "redis: migrate: unexpected reply");
    }
    freeReplyObject(rep);
    return rc;
}

/* Settles the layout of a new namespace; moves one the previous release
 * used (layout 1+2) to layout 2. */
static int redis_migrate(kaal_backend *b, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    int rc = settle_layout(b, "migrate", err);
    if (rc != KAAL_OK || r->layout == LAYOUT_NEW) return rc;
    rc = migrate_step(b, S_MIGRATE_BEGIN, err);
    if (rc == KAAL_OK && r->layout == LAYOUT_COMPAT) rc = migrate_log(b, err);
    if (rc == KAAL_OK && r->layout == LAYOUT_COMPAT) rc = migrate_step(b, S_MIGRATE_END, err);
    if (rc == KAAL_OK && r->layout != LAYOUT_NEW) {
        r->layout = 0;
        rc = settle_layout(b, "migrate", err);
    }
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
 * Keys (under "{<ns>}:"):
 *   schedules           hash key -> encoded row (cron, job_class, args,
 *                       kwargs, time_zone, queue, enabled, updated_at)
 *   schedules-version   string, the namespace's change counter
 *   schedules-feed      zset version -> key, every key ever changed (a key
 *                       in the feed but not in the hash was removed)
 *   schedules-keys      zset 0 -> key, the stored keys in byte order
 * Each change is one script (counter, row, feed); a tick's poll is one GET
 * of the counter, and the feed is read only when the counter moved. The
 * scripts are sent with EVAL (changes and feed reads are rare); each gets
 * the four keys above as KEYS[1..4]. */

static const char LUA_SCHED_UPSERT[] =
    "local k, row = ARGV[1], ARGV[2]\n"
    "local v = redis.call('INCR', KEYS[2])\n"
    "redis.call('HSET', KEYS[1], k, row)\n"
    "redis.call('ZADD', KEYS[3], v, k)\n"
    "redis.call('ZADD', KEYS[4], 0, k)\n"
    "return v\n";

static const char LUA_SCHED_REMOVE[] =
    "local k = ARGV[1]\n"
    "if redis.call('HDEL', KEYS[1], k) == 0 then\n"
    "  return {0, tonumber(redis.call('GET', KEYS[2]) or '0')}\n"
    "end\n"
    "local v = redis.call('INCR', KEYS[2])\n"
    "redis.call('ZADD', KEYS[3], v, k)\n"
    "redis.call('ZREM', KEYS[4], k)\n"
    "return {1, v}\n";

/* ARGV: mode "feed" (since, limit) or "keys" (after or "", limit) or "get"
 * (key). Reply: the counter, then key, version, row (nil when removed) for
 * each schedule. */
static const char LUA_SCHED_READ[] =
    "local mode = ARGV[1]\n"
    "local v = tonumber(redis.call('GET', KEYS[2]) or '0')\n"
    "local out, keys = {v}, {}\n"
    "if mode == 'feed' then\n"
    "  keys = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[2], '+inf', 'LIMIT', 0, tonumber(ARGV[3]))\n"
    "elseif mode == 'keys' then\n"
    "  local from = ARGV[2] == '' and '-' or '(' .. ARGV[2]\n"
    "  keys = redis.call('ZRANGEBYLEX', KEYS[4], from, '+', 'LIMIT', 0, tonumber(ARGV[3]))\n"
    "else\n"
    "  keys = {ARGV[2]}\n"
    "end\n"
    "for _, k in ipairs(keys) do\n"
    "  local row = redis.call('HGET', KEYS[1], k)\n"
    "  if row or mode == 'feed' then\n"
    "    out[#out + 1] = k\n"
    "    out[#out + 1] = redis.call('ZSCORE', KEYS[3], k)\n"
    "    out[#out + 1] = row\n"
    "  end\n"
    "end\n"
    "return out\n";

/* EVAL body with the four schedule keys and args: one script call without
 * the script cache. */
static int sched_eval(kaal_backend *b, const char *body, int n, const char **args, const size_t *arg_lens,
                      redisReply **out, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    cmd c;
    int i, rc = prefixes(b, err);
    if (rc != KAAL_OK) return rc;
    memset(&c, 0, sizeof c);
    cmd_carg(&c, "EVAL");
    cmd_carg(&c, body);
    cmd_carg(&c, "4");
    cmd_key(&c, r->tag, "schedules", NULL);
    cmd_key(&c, r->tag, "schedules-version", NULL);
    cmd_key(&c, r->tag, "schedules-feed", NULL);
    cmd_key(&c, r->tag, "schedules-keys", NULL);
    for (i = 0; i < n; i++) cmd_arg(&c, args[i], arg_lens ? arg_lens[i] : strlen(args[i]));
    return cmd_run(b, &c, -1, out, err, "schedules");
}

/* `cmd` on one schedule key ("schedules-version", ...). */
static int sched_command(kaal_backend *b, const char *cmd_name, const char *name, redisReply **out,
                         kaal_error *err)
{
    redis_impl *r = impl_of(b);
    cmd c;
    int rc = prefixes(b, err);
    if (rc != KAAL_OK) return rc;
    memset(&c, 0, sizeof c);
    cmd_carg(&c, cmd_name);
    cmd_key(&c, r->tag, name, NULL);
    return cmd_run(b, &c, -1, out, err, "schedules");
}

static int redis_sched_upsert(kaal_backend *b, const kaal_schedule_row *row, int64_t now, int64_t *version,
                              kaal_error *err)
{
    kaal_buf enc = {0};
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
    int rc = sched_command(b, "GET", "schedules-version", &rep, err);
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
    int rc = sched_command(b, "ZCARD", "schedules-keys", &rep, err);
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
/* Read again (another node may have run `kaal migrate` since this session
 * settled it). */
static int redis_layout(kaal_backend *b, char *out, size_t n, kaal_error *err)
{
    redis_impl *r = impl_of(b);
    int rc;
    if (r) r->layout = 0;
    rc = settle_layout(b, "layout", err);
    if (rc == KAAL_OK) snprintf(out, n, "%s", impl_of(b)->layout == LAYOUT_COMPAT ? "1+2" : "2");
    return rc;
}

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
    .layout = redis_layout,
};

#endif /* KAAL_HAVE_REDIS */
