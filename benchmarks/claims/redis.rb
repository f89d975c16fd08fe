# frozen_string_literal: true

# kaal's Redis claim (one EVALSHA per batch: per pair one SET NX EX that is
# the claim and its dispatch-log entry at once, then one ZADD per index for
# the won pairs) against redis-rb pipelining a bare
# `SET <claim key> <node> NX PX <lease>` per pair (no log, no index).
KaalBench::Claims.register("redis") do |c|
  url = c.needs("redis", "redis", url_env: "KAAL_TEST_REDIS_URL")
  raw = nil

  c.setup do |ns|
    c.backend = Kaal::Backend.build(:redis, namespace: ns, config: { url: url })
    raw = Redis.new(url: url)
  end

  c.raw("redis-rb pipelined SET NX PX") do |pairs|
    replies = raw.pipelined do |p|
      pairs.each do |key, fire|
        p.set("#{c.raw_namespace}:claim:#{fire}:#{key}", "bench", nx: true, px: KaalBench::Claims::LEASE_MS)
      end
    end
    replies.count(true)
  end

  c.teardown do
    if raw
      %W[{#{c.namespace}}:* #{c.namespace}:* #{c.raw_namespace}:*].each do |pattern|
        raw.scan_each(match: pattern, count: 1000).each_slice(500) { |keys| raw.unlink(*keys) }
      end
      raw.close
    end
  end
end
