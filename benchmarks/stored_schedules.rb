# frozen_string_literal: true

# Stored schedules on SQLite and PostgreSQL (Kaal.schedules, Kaal::ScheduleFeed).
#
#   bundle exec ruby benchmarks/stored_schedules.rb [sqlite] [postgres]
#   KAAL_BENCH_SIZES=100000,1000000 bundle exec ruby benchmarks/stored_schedules.rb sqlite
#
# For each size N (default 1,000, 10,000 and 100,000), in a fresh namespace,
# N schedules shaped like per-customer reports: distinct args ([i]), 120
# distinct cron / zone combinations, one job class:
# - store: the first min(N, 20,000) through Kaal.schedules.upsert (each
#   checked and written in its own transaction): schedules per second. The
#   rest is written by one INSERT ... SELECT of this benchmark (rows and
#   change counter as upsert leaves them), so that 1M takes seconds;
# - start: a node's first poll, which loads every stored schedule into an
#   empty registry (the feed's pages of 25,000 by version), and the first
#   tick of a scheduler over it; wall clock and CPU time. Targets: 100k
#   <= 0.5 s, 1M <= 3 s;
# - kaal start: `bin/kaal start` spawned against the same store (and a
#   scheduler file with one job firing every second); the time from spawn
#   to the end of its first tick (a Kaal.subscribe(:tick) in a --require
#   file notes it), its CPU time, and its peak RSS (VmHWM) a few ticks
#   later. Targets: RSS 1M <= 400 MB; spawn to first tick 100k <= 0.5 s,
#   1M <= 3 s (Ruby's boot included);
# - idle poll: the feed's cost per tick when nothing changed (one read of the
#   namespace's change counter), median and p99 of 500 polls. Target: 1M
#   <= 0.1 ms;
# - 10 changed: the poll after 10 schedules changed (the counter, then the 10
#   rows), median of 50 rounds.
# PostgreSQL needs KAAL_TEST_POSTGRES_URL (bin/services start; source
# tmp/services/env). Figures vary with the machine's load: the CPU figures
# next to the wall-clock ones show how much.

$LOAD_PATH.unshift File.expand_path("../lib", __dir__)
require "kaal"
require_relative "support"
require "logger"
require "tmpdir"
require "yaml"
require "rbconfig"
require "etc"

module StoredScheduleBench
  extend BenchSupport
  module_function

  START_TARGET = { 100_000 => 0.5, 1_000_000 => 3.0 }.freeze
  RSS_TARGET = { 1_000_000 => 400 }.freeze
  IDLE_TARGET = { 1_000_000 => 0.1 }.freeze # ms
  UPSERTED = 20_000 # schedules stored through Kaal.schedules.upsert; the rest in bulk

  def ms(seconds)
    format("%.3f ms", seconds * 1000)
  end

  def median(samples)
    samples.sort[samples.size / 2]
  end

  def p99(samples)
    samples.sort[(samples.size * 0.99).floor.clamp(0, samples.size - 1)]
  end

  def backend_config(kind, dir)
    kind == "sqlite" ? { path: File.join(dir, "bench.sqlite3") } : { url: ENV.fetch("KAAL_TEST_POSTGRES_URL") }
  end

  def configure(kind, dir)
    Kaal.reset!
    Kaal.configure do |c|
      c.backend = kind
      c.backend_config = backend_config(kind, dir)
      c.namespace = "bench-sched-#{rand(1 << 30)}"
      c.logger = Logger.new(File::NULL)
      c.tick_interval = 1
      c.enable_dispatch_recovery = false
    end
    Kaal.backend.migrate
  end

  def zone(i)
    i.even? ? "Europe/Paris" : "America/New_York"
  end

  # Stores schedules 0...n: through upsert up to UPSERTED, the rest in bulk.
  # Returns the upsert rate.
  def store(kind, n)
    schedules = Kaal.schedules
    upserted = [n, UPSERTED].min
    t = clock
    upserted.times do |i|
      schedules.upsert(key: "tenant-#{i}:report", cron: "#{i % 60} #{i % 24} * * *", job_class: "ReportJob",
                       args: [i], time_zone: zone(i))
    end
    rate = upserted / (clock - t)
    bulk_insert(kind, upserted, n) if n > upserted
    raise "stored #{schedules.count} of #{n}" unless schedules.count == n

    rate
  end

  # Rows from..to-1 as upsert writes them, each with the next version, then
  # the namespace's change counter moved past them.
  def bulk_insert(kind, from, to)
    ns = Kaal.configuration.namespace
    now = Time.now.to_i
    if kind == "sqlite"
      require "sqlite3"
      db = SQLite3::Database.new(Kaal.configuration.backend_options.fetch(:path))
      db.busy_timeout = 10_000
      db.transaction do
        base = db.get_first_value("SELECT version FROM kaal_schedule_versions WHERE namespace = ?", [ns])
        db.execute(<<~SQL, [from, to - 1, ns, base - from + 1, now])
          WITH RECURSIVE seq(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?2)
          INSERT INTO kaal_schedules (namespace, job_key, cron, job_class, args, kwargs, time_zone, queue,
                                      enabled, deleted, version, updated_at)
          SELECT ?3, 'tenant-' || i || ':report', (i % 60) || ' ' || (i % 24) || ' * * *', 'ReportJob',
                 '[' || i || ']', '{}', CASE i % 2 WHEN 0 THEN 'Europe/Paris' ELSE 'America/New_York' END, NULL,
                 1, 0, ?4 + i, ?5 FROM seq
        SQL
        db.execute("UPDATE kaal_schedule_versions SET version = ? WHERE namespace = ?", [base + to - from, ns])
      end
      db.close
    else
      require "pg"
      pg = PG.connect(ENV.fetch("KAAL_TEST_POSTGRES_URL"))
      pg.transaction do |tx|
        base = tx.exec_params("SELECT version FROM kaal_schedule_versions WHERE namespace = $1", [ns]).getvalue(0, 0).to_i
        tx.exec_params(<<~SQL, [from, to - 1, ns, base - from + 1, now])
          INSERT INTO kaal_schedules (namespace, job_key, cron, job_class, args, kwargs, time_zone, queue,
                                      enabled, deleted, version, updated_at)
          SELECT $3, 'tenant-' || i || ':report', (i % 60) || ' ' || (i % 24) || ' * * *', 'ReportJob',
                 '[' || i || ']', '{}', CASE i % 2 WHEN 0 THEN 'Europe/Paris' ELSE 'America/New_York' END, NULL,
                 true, false, $4::bigint + i, $5::bigint FROM generate_series($1::bigint, $2::bigint) AS i
        SQL
        tx.exec_params("UPDATE kaal_schedule_versions SET version = $1 WHERE namespace = $2", [base + to - from, ns])
      end
      pg.close
    end
  end

  def feed(backend, registry)
    build = ->(row) { Kaal::Schedules.job_from(row, default_time_zone: "UTC") }
    Kaal::ScheduleFeed.new(backend: backend, registry: registry, build: build, policy: -> { :error },
                           events: Kaal::Events.new)
  end

  # `kaal start` against the stored schedules of the configured namespace.
  def kaal_start(kind, dir, settle: 3)
    app = File.join(dir, "app")
    Dir.mkdir(app)
    Dir.mkdir(File.join(app, "config"))
    marker = File.join(app, "first-tick")
    ran = File.join(app, "first-run")
    File.write(File.join(app, "jobs.rb"), "class ReportJob\n  def self.perform(*); end\nend\n#{marker_code(marker, ran)}")
    config = { "backend" => kind, "backend_config" => backend_config(kind, dir).transform_keys(&:to_s),
               "namespace" => Kaal.configuration.namespace, "tick_interval" => 1,
               "enable_dispatch_recovery" => false, "scheduler_config_path" => "config/kaal-scheduler.yml" }
    File.write(File.join(app, "config", "kaal.yml"), YAML.dump("defaults" => config))
    File.write(File.join(app, "config", "kaal-scheduler.yml"),
               "defaults:\n  jobs:\n  - key: marker\n    cron: \"* * * * * *\"\n    job_class: BenchMarkerJob\n")
    BenchSupport.kaal_start(app, File.join(app, "jobs.rb"), marker, ran, settle: settle)
  end

  def run(kind, n)
    Dir.mktmpdir("kaal-bench") do |dir|
      configure(kind, dir)
      rate = store(kind, n)

      node = Kaal::Backend.build(kind, namespace: Kaal.configuration.namespace, config: Kaal.configuration.backend_options)
      registry = Kaal::Registry.new
      node_feed = feed(node, registry)
      GC.start
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
      first_tick_cpu = cpu - c
      raise "loaded #{loaded} of #{n}" unless loaded == n && registry.size == n

      idle = Array.new(500) do
        s = clock
        node_feed.poll
        clock - s
      end
      changed = Array.new(50) do |round|
        10.times { |j| Kaal.schedules.upsert(key: "tenant-#{(round * 10 + j) % n}:report", cron: "5 5 * * *", job_class: "ReportJob") }
        s = clock
        applied = node_feed.poll
        elapsed = clock - s
        raise "applied #{applied}" unless applied == 10

        elapsed
      end
      node.close
      registry = node_feed = scheduler = nil
      GC.start
      target = START_TARGET[n]
      total = start + first_tick
      puts format("%-8s N=%-7d store %6.0f/s  start: load %.3f s (CPU %.3f) + first tick %.3f s (CPU %.3f) = %.3f s%s",
                  kind, n, rate, start, start_cpu, first_tick, first_tick_cpu, total,
                  target ? format("  [target <= %.1f s: %s]", target, verdict(total <= target)) : "")
      idle_target = IDLE_TARGET[n]
      puts format("%-8s N=%-7d idle poll median %s p99 %s%s; 10 changed: median %s", kind, n, ms(median(idle)),
                  ms(p99(idle)), idle_target ? "  [target <= #{idle_target} ms: #{verdict(median(idle) * 1000 <= idle_target)}]" : "",
                  ms(median(changed)))
      r = kaal_start(kind, dir)
      marks = []
      marks << "RSS target <= #{RSS_TARGET[n]} MB: #{verdict(r[:vmhwm_mb] <= RSS_TARGET[n])}" if RSS_TARGET[n]
      if START_TARGET[n] # Ruby's boot included, as for tick.rb's kaal start rows
        marks << "start target <= #{START_TARGET[n]} s: #{verdict(r[:first_tick_s] <= START_TARGET[n])}"
      end
      puts format("%-8s N=%-7d kaal start: spawn to first tick %.2f s (CPU %.2f s), peak RSS (VmHWM) %.1f MB%s",
                  kind, n, r[:first_tick_s], r[:cpu_s], r[:vmhwm_mb], marks.empty? ? "" : "  [#{marks.join("; ")}]")
    end
  ensure
    drop_rows if kind == "postgres"
    Kaal.reset!
  end

  # The benchmark's rows leave the shared PostgreSQL database (SQLite's file
  # goes with its temp directory).
  def drop_rows
    require "pg"
    ns = Kaal.configuration.namespace
    pg = PG.connect(ENV.fetch("KAAL_TEST_POSTGRES_URL"))
    pg.exec_params("DELETE FROM kaal_schedules WHERE namespace = $1", [ns])
    pg.exec_params("DELETE FROM kaal_schedule_versions WHERE namespace = $1", [ns])
    pg.close
  rescue PG::Error => e
    warn "postgres: could not remove the benchmark's rows (#{e.message.strip})"
  end
end

if $PROGRAM_NAME == __FILE__
  kinds = ARGV.empty? ? %w[sqlite postgres] : ARGV
  sizes = (ENV["KAAL_BENCH_SIZES"] || "1000,10000,100000").split(",").map { |s| Integer(s) }
  puts "kaal #{Kaal::VERSION}, ruby #{RUBY_VERSION}, #{Etc.nprocessors} cores, " \
       "load average #{File.read("/proc/loadavg").split.first}"
  kinds.each do |kind|
    if kind == "postgres" && ENV["KAAL_TEST_POSTGRES_URL"].to_s.empty?
      warn "postgres: set KAAL_TEST_POSTGRES_URL (bin/services start; source tmp/services/env)"
      next
    end
    sizes.each { |n| StoredScheduleBench.run(kind, n) }
  end
end
