# frozen_string_literal: true

# kaal's Redis claim (one EVALSHA per batch: check the dispatch log, SET NX PX
# the claim key, write the log entry and its indexes) against redis-rb
# pipelining a bare `SET <claim key> <node> NX PX <lease>` per pair.
KaalBench::Claims.register("redis") do |c|
  url = ENV.fetch("KAAL_TEST_REDIS_URL", "")
  c.skip "set KAAL_TEST_REDIS_URL (bin/services start redis)" if url.empty?
  c.skip "redis backend not built" unless Kaal::Native.backends.include?("redis")
  begin
    require "redis"
  rescue LoadError
    c.skip "gem redis not installed"
  end

  lease_ms = 60_000
  backend = raw = prefix = nil

  c.setup do |ns|
    prefix = ns
    backend = Kaal::Backend.build(:redis, namespace: ns, config: { url: url })
    raw = Redis.new(url: url)
  end

  c.kaal do |pairs|
    backend.claim(pairs, lease_ms: lease_ms, node: "bench", now: Time.now).size
  end

  c.raw("redis-rb pipelined SET NX PX") do |pairs|
    replies = raw.pipelined do |p|
      pairs.each { |key, fire| p.set("#{prefix}-raw:claim:#{fire}:#{key}", "bench", nx: true, px: lease_ms) }
    end
    replies.count(true)
  end

  c.teardown do
    if raw
      %W[#{prefix}:* #{prefix}-raw:*].each do |pattern|
        raw.scan_each(match: pattern, count: 1000).each_slice(500) { |keys| raw.unlink(*keys) }
      end
      raw.close
    end
    backend&.close
  end
end
