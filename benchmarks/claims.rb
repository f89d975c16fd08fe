# frozen_string_literal: true

# Claims per second per backend: kaal (Kaal::Backend#claim, batches of
# BATCH pairs) against the raw client doing the same work, side by side in
# one process, interleaved batch by batch so both see the same machine load.
#
#   bundle exec ruby benchmarks/claims.rb [backend ...]
#   KAAL_BENCH_SECONDS=3 KAAL_BENCH_BATCH=100 bundle exec ruby benchmarks/claims.rb redis
#
# The default batch is 1,000 pairs (the figure the README and the issues
# quote); the ratio column is kaal's rate over the raw client's.
#
# Registering a backend: one file per backend in benchmarks/claims/<name>.rb,
# loaded by this frame, containing
#
#   KaalBench::Claims.register("redis") do |c|
#     url = c.needs("redis", "redis", url_env: "KAAL_TEST_REDIS_URL")  # skip unless built, gem, URL
#     c.setup { |ns| c.backend = ...; ... }  # once, before timing; ns: a fresh namespace
#                                            # (c.raw_namespace: one for the raw side)
#     c.kaal { |pairs| ... }         # optional: claim every pair through kaal
#                                    # (default: c.backend.claim, counting the wins)
#     c.raw("redis-rb pipelined SET NX PX") { |pairs| ... }  # the same work, raw client
#     c.teardown { ... }             # optional, always run (remove what the run wrote);
#                                    # then the frame closes c.backend
#   end
#
# `pairs` is an Array of [job_key (String), fire_time (Integer Unix seconds)],
# fresh for every call (no pair is ever offered twice, so every claim wins).
# Both blocks must make every pair durable / claimed before returning; the
# frame counts pairs per second of wall time. A block may return the number
# of pairs it won; when it does, the frame checks it equals pairs.size.
require "securerandom"

$LOAD_PATH.unshift File.expand_path("../lib", __dir__)
require "kaal"

module KaalBench
  module Claims
    SECONDS = Float(ENV.fetch("KAAL_BENCH_SECONDS", "3"))
    BATCH = Integer(ENV.fetch("KAAL_BENCH_BATCH", "1000"))
    KEYS = 50 # distinct job keys per batch round robin
    LEASE_MS = 60_000

    # One registered backend.
    class Case
      attr_reader :name, :raw_label, :skip_reason, :namespace, :raw_namespace
      attr_accessor :backend # kaal's handle, built by setup

      def initialize(name)
        @name = name
        @skip_reason = nil
        @setup = @teardown = @kaal = @raw = nil
        @raw_label = "raw client"
      end

      def skip(reason)
        @skip_reason ||= reason
      end

      # Skips the case unless the kind backend is built, the gems load and
      # (a server backend) the url_env variable is set; returns its URL.
      def needs(kind, *gems, url_env: nil)
        url = url_env && ENV.fetch(url_env, "")
        skip "set #{url_env} (bin/services start #{kind})" if url&.empty?
        skip "#{kind} backend not built" unless Kaal::Native.backends.include?(kind)
        gems.each do |gem|
          require gem
        rescue LoadError
          skip "gem #{gem} not installed"
        end
        url
      end

      def setup(&blk) = (@setup = blk)
      def teardown(&blk) = (@teardown = blk)
      def kaal(&blk) = (@kaal = blk)

      def raw(label = nil, &blk)
        @raw_label = label if label
        @raw = blk
      end

      def run_setup(ns)
        @namespace = ns
        @raw_namespace = "#{ns}-raw"
        @setup&.call(ns)
      end

      def run_teardown
        @teardown&.call
      ensure
        @backend&.close
        @backend = nil
      end

      def call_kaal(pairs)
        return @kaal.call(pairs) if @kaal

        backend.claim(pairs, lease_ms: LEASE_MS, node: "bench", now: Time.now).count(true)
      end

      def call_raw(pairs) = @raw.call(pairs)

      def complete?
        (@kaal || @setup) && @raw
      end
    end

    @cases = []

    class << self
      attr_reader :cases

      def register(name)
        c = Case.new(name.to_s)
        yield c
        @cases << c
        c
      end

      def run(only = [])
        Dir[File.join(__dir__, "claims", "*.rb")].sort.each { |f| require f }
        names = cases.map(&:name)
        if only.intersect?(%w[-h --help])
          puts "usage: bundle exec ruby benchmarks/claims.rb [#{names.join("|")} ...] " \
               "(env: KAAL_BENCH_SECONDS, KAAL_BENCH_BATCH, KAAL_TEST_<BACKEND>_URL)"
          return
        end
        unknown = only - names
        abort "claims.rb: unknown backend #{unknown.first.inspect} (known: #{names.join(", ")})" if unknown.any?
        selected = only.empty? ? cases : cases.select { |c| only.include?(c.name) }
        puts format("claims/s, batches of %d pairs, ~%.0f s per side, interleaved", BATCH, SECONDS)
        puts format("%-10s %14s %14s %8s   %s", "backend", "kaal/s", "raw/s", "kaal/raw", "raw side")
        selected.each { |c| report(c) }
      end

      def report(c)
        if c.skip_reason
          puts format("%-10s skipped: %s", c.name, c.skip_reason)
          return
        end
        raise "#{c.name}: register c.raw and c.kaal (or c.setup setting c.backend)" unless c.complete?

        kaal_rate, raw_rate = measure(c)
        puts format("%-10s %14.0f %14.0f %7.2fx   %s", c.name, kaal_rate, raw_rate,
                    kaal_rate / raw_rate, c.raw_label)
      rescue StandardError => e
        puts format("%-10s failed: %s: %s", c.name, e.class, e.message)
      end

      # Returns [kaal pairs/s, raw pairs/s].
      def measure(c)
        ns = "kaal-bench-#{SecureRandom.hex(4)}"
        c.run_setup(ns)
        fire = 1_700_000_000
        next_pairs = lambda do
          fire += 1
          Array.new(BATCH) { |i| ["bench-job-#{i % KEYS}-#{i / KEYS}", fire] }
        end
        # warm up (connections, script cache, JIT-less Ruby caches)
        3.times { timed(c, :kaal, next_pairs.call) && timed(c, :raw, next_pairs.call) }
        spent = { kaal: 0.0, raw: 0.0 }
        pairs = { kaal: 0, raw: 0 }
        while spent[:kaal] < SECONDS || spent[:raw] < SECONDS
          %i[kaal raw].each do |side|
            spent[side] += timed(c, side, next_pairs.call)
            pairs[side] += BATCH
          end
        end
        [pairs[:kaal] / spent[:kaal], pairs[:raw] / spent[:raw]]
      ensure
        c.run_teardown
      end

      def timed(c, side, batch)
        t0 = Kaal::Clock.monotonic
        won = side == :kaal ? c.call_kaal(batch) : c.call_raw(batch)
        elapsed = Kaal::Clock.monotonic - t0
        if won.is_a?(Integer) && won != batch.size
          raise "#{c.name} #{side}: won #{won} of #{batch.size} fresh pairs"
        end

        elapsed
      end
    end
  end
end

KaalBench::Claims.run(ARGV) if $PROGRAM_NAME == __FILE__
