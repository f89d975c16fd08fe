# frozen_string_literal: true

# Stored schedules on SQLite and PostgreSQL (Kaal.schedules, Kaal::ScheduleFeed).
#
#   bundle exec ruby benchmarks/stored_schedules.rb [sqlite] [postgres]
#   KAAL_BENCH_SIZES=1000,10000,100000 bundle exec ruby benchmarks/stored_schedules.rb sqlite
#
# For each size N, in a fresh namespace:
# - store: N schedules through Kaal.schedules.upsert (each checked and written
#   in its own transaction), schedules per second;
# - start: a node's first poll, which loads every stored schedule into an
#   empty registry (pages of 1,000 by version, each row checked and
#   registered), and the first tick of a scheduler over it;
# - idle poll: the feed's cost per tick when nothing changed (one read of the
#   namespace's change counter), median and p99 of 500 polls;
# - 10 changed: the poll after 10 schedules changed (the counter, then the 10
#   rows), median of 50 rounds.
# PostgreSQL needs KAAL_TEST_POSTGRES_URL (bin/services start; source
# tmp/services/env). Figures vary with the machine's load.

$LOAD_PATH.unshift File.expand_path("../lib", __dir__)
require "kaal"
require "logger"
require "tmpdir"

module StoredScheduleBench
  module_function

  def clock
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  START_TARGET = { 100_000 => 0.5, 1_000_000 => 3.0 }.freeze

  def cpu
    Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
  end

  def ms(seconds)
    format("%.3f ms", seconds * 1000)
  end

  def median(samples)
    samples.sort[samples.size / 2]
  end

  def p99(samples)
    samples.sort[(samples.size * 0.99).floor.clamp(0, samples.size - 1)]
  end

  def configure(kind, dir)
    Kaal.reset!
    Kaal.configure do |c|
      c.backend = kind
      c.backend_config = kind == "sqlite" ? { path: File.join(dir, "bench.sqlite3") } : { url: ENV.fetch("KAAL_TEST_POSTGRES_URL") }
      c.namespace = "bench-sched-#{rand(1 << 30)}"
      c.logger = Logger.new(File::NULL)
      c.tick_interval = 1
      c.enable_dispatch_recovery = false
    end
    Kaal.backend.migrate
  end

  def feed(backend, registry)
    build = ->(row) { Kaal::Schedules.job_from(row, default_time_zone: "UTC") }
    Kaal::ScheduleFeed.new(backend: backend, registry: registry, build: build, policy: -> { :error },
                           events: Kaal::Events.new)
  end

  def run(kind, n)
    Dir.mktmpdir("kaal-bench") do |dir|
      configure(kind, dir)
      schedules = Kaal.schedules
      t = clock
      n.times do |i|
        schedules.upsert(key: "tenant-#{i}:report", cron: "#{i % 60} #{i % 24} * * *", job_class: "ReportJob",
                         args: [i], time_zone: i.even? ? "Europe/Paris" : "America/New_York")
      end
      store = clock - t

      node = Kaal::Backend.build(kind, namespace: Kaal.configuration.namespace, config: Kaal.configuration.backend_options)
      registry = Kaal::Registry.new
      node_feed = feed(node, registry)
      t = clock
      c = cpu
      loaded = node_feed.poll
      start = clock - t
      start_cpu = cpu - c
      scheduler = Kaal::Scheduler.new(config: Kaal.configuration, registry: registry, backend: node,
                                      logger: ->(*) {}, feed: node_feed)
      now = Time.utc(2026, 6, 1, 12, 0, 30).to_i
      t = clock
      c = cpu
      scheduler.tick(now)
      first_tick = clock - t
      start_cpu += cpu - c
      raise "loaded #{loaded} of #{n}" unless loaded == n && registry.size == n

      idle = Array.new(500) do
        s = clock
        node_feed.poll
        clock - s
      end
      changed = Array.new(50) do |round|
        10.times { |j| schedules.upsert(key: "tenant-#{(round * 10 + j) % n}:report", cron: "5 5 * * *", job_class: "ReportJob") }
        s = clock
        applied = node_feed.poll
        elapsed = clock - s
        raise "applied #{applied}" unless applied == 10

        elapsed
      end
      node.close
      target = START_TARGET[n]
      mark = target ? format("  [start + first tick target <= %.1f s: %s]", target,
                             start + first_tick <= target ? "ok" : "MISSED") : ""
      puts format("%-8s N=%-7d store %8.0f/s  start (load %d) %-12s first tick %-12s (CPU %.2f s) idle poll median %-10s " \
                  "p99 %-10s 10 changed %s%s", kind, n, n / store, loaded, ms(start), ms(first_tick), start_cpu,
                  ms(median(idle)), ms(p99(idle)), ms(median(changed)), mark)
    end
  ensure
    Kaal.reset!
  end
end

if $PROGRAM_NAME == __FILE__
  kinds = ARGV.empty? ? %w[sqlite postgres] : ARGV
  sizes = (ENV["KAAL_BENCH_SIZES"] || "1000,10000").split(",").map { |s| Integer(s) }
  kinds.each do |kind|
    if kind == "postgres" && ENV["KAAL_TEST_POSTGRES_URL"].to_s.empty?
      warn "postgres: set KAAL_TEST_POSTGRES_URL (bin/services start; source tmp/services/env)"
      next
    end
    sizes.each { |n| StoredScheduleBench.run(kind, n) }
  end
end
