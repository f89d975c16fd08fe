# frozen_string_literal: true

# Start, tick cost and memory of the scheduler runtime on the memory backend.
#
#   ruby -Ilib benchmarks/tick.rb                  # 1k, 10k, 100k jobs; `kaal start` with 10k and 100k
#   KAAL_BENCH_MILLION=1 ruby -Ilib benchmarks/tick.rb   # also 1,000,000 (a few minutes, ~1 GB free)
#   KAAL_BENCH_SIZES=1000,10000 ruby -Ilib benchmarks/tick.rb
#
# - start (code): N jobs registered with Kaal.register, then the first tick
#   (it places every job): both timed, wall clock and this process's CPU
#   time. Targets: 100k <= 0.5 s and 1M <= 3 s from the first register to
#   the end of the first tick.
# - start (code, distinct args): the same with a job per customer, as an app
#   registers them at boot: args: [id] and a cron and zone of its own, from
#   36 combinations that come interleaved (not one after the other). Same
#   targets.
# - idle: N registered jobs, none due (yearly cron): the time of one tick
#   (heap peek + the per-tick backend calls: states, heartbeat, delayed sweep).
#   Targets: 100k <= 1 ms, 1M <= 0.1 ms per tick.
# - due: 10k jobs due in the same second: one claim call for all pairs, then
#   each claimed run handed to the worker pool (the pool's work is not timed;
#   logging goes to /dev/null; a GC between rounds, not timed). Target: <= 50 ms.
# - kaal start (file): N jobs in the scheduler file, `kaal start` spawned;
#   the time from spawn to the end of the first tick (a Kaal.subscribe(:tick)
#   in a --require file notes it; a job firing every second must run too) and
#   the peak RSS (VmHWM) after a few ticks. Targets: RSS
#   10k <= 60 MB, 1M <= 400 MB; spawn to first tick 100k <= 0.5 s (plus
#   Ruby's own boot), 1M <= 3 s.
#
# On a shared machine the wall-clock figures are inflated; the CPU figures
# next to them show how much.

$LOAD_PATH.unshift File.expand_path("../lib", __dir__)
require "kaal"
require_relative "support"
require "logger"
require "tmpdir"
require "yaml"
require "rbconfig"
require "etc"

module TickBench
  extend BenchSupport
  module_function

  def fresh(**settings)
    Kaal.reset!
    Kaal.configure do |c|
      c.namespace = "bench-#{rand(1 << 30)}"
      c.logger = Logger.new(File::NULL)
      c.tick_interval = 1
      c.enable_dispatch_recovery = false
      settings.each { |k, v| c.public_send("#{k}=", v) }
    end
  end

  # Idle job (class with .perform that does nothing).
  class NoopJob
    def self.perform(*); end
  end

  def idle(n, ticks: 200)
    fresh
    GC.start
    t = clock
    c = cpu
    n.times { |i| Kaal.register(key: "idle-#{i}", cron: "0 0 1 1 *", job_class: NoopJob) }
    reg = clock - t
    reg_cpu = cpu - c
    now = Time.utc(2026, 6, 1, 12, 0, 0).to_i
    t = clock
    c = cpu
    Kaal.tick!(now: now)
    first = clock - t
    first_cpu = cpu - c
    samples = Array.new(ticks) do |i|
      s = clock
      Kaal.tick!(now: now + 1 + i, wait: false)
      clock - s
    end.sort
    { n: n, register_s: reg, register_cpu_s: reg_cpu, first_tick_s: first, first_tick_cpu_s: first_cpu,
      median_ms: samples[samples.size / 2] * 1000, p95_ms: samples[(samples.size * 0.95).floor] * 1000 }
  end

  # Customers of a multi-tenant app: [id, cron, zone], the 36 definitions
  # interleaved.
  def customers(n)
    crons = ["0 9 * * *", "30 8 * * *", "0 7 * * 1-5", "15 6 * * *", "0 10 * * 1", "45 9 * * *"]
    zones = %w[UTC Europe/Paris America/New_York Asia/Tokyo Australia/Sydney Europe/London]
    combos = crons.product(zones)
    Array.new(n) { |i| [i, *combos[(i * 7919) % combos.size]] }
  end

  def per_customer(n)
    fresh
    list = customers(n)
    GC.start
    t = clock
    c = cpu
    list.each do |id, cron, zone|
      Kaal.register(key: "report:#{id}", cron: cron, job_class: NoopJob, args: [id], time_zone: zone)
    end
    reg = clock - t
    reg_cpu = cpu - c
    t = clock
    c = cpu
    Kaal.tick!(now: Time.utc(2026, 6, 1, 12, 0, 0).to_i)
    { register_s: reg, first_tick_s: clock - t, cpu_s: reg_cpu + cpu - c }
  end

  def due(n, rounds: 9)
    fresh(worker_threads: 5)
    n.times { |i| Kaal.register(key: "due-#{i}", cron: "* * * * * *", job_class: NoopJob, args: ["{{fire_time.unix}}"]) }
    now = Time.utc(2026, 6, 1, 12, 0, 0).to_i
    Kaal.tick!(now: now) # places the jobs (first tick)
    samples = Array.new(rounds) do |i|
      GC.start # not timed: leftovers of the previous round
      s = clock
      out = Kaal.tick!(now: now + 1 + i, wait: false)
      took = clock - s
      raise "expected #{n} dispatches, got #{out.size}" unless out.size == n

      Kaal.scheduler.pool.wait_idle(60)
      took
    end.sort
    { n: n, median_ms: samples[samples.size / 2] * 1000, min_ms: samples.first * 1000 }
  end

  # `kaal start` with n jobs in the scheduler file (plus one firing every
  # second, whose run marks the first tick).
  def start(n, settle: 3)
    Dir.mktmpdir("kaal-bench") do |dir|
      Dir.mkdir(File.join(dir, "config"))
      marker = File.join(dir, "first-tick")
      ran = File.join(dir, "first-run")
      File.write(File.join(dir, "marker.rb"), marker_code(marker, ran))
      File.write(File.join(dir, "config", "kaal.yml"),
                 YAML.dump("defaults" => { "backend" => "memory", "tick_interval" => 1,
                                           "scheduler_config_path" => "config/kaal-scheduler.yml" }))
      File.open(File.join(dir, "config", "kaal-scheduler.yml"), "w") do |f|
        f.write("defaults:\n  jobs:\n  - key: marker\n    cron: \"* * * * * *\"\n    job_class: BenchMarkerJob\n")
        n.times { |i| f.write("  - key: job-#{i}\n    cron: 0 0 1 1 *\n    job_class: NoopJob\n") }
      end
      kaal_start(dir, File.join(dir, "marker.rb"), marker, ran, settle: settle).merge(n: n)
    end
  end
end

def verdict(ok)
  BenchSupport.verdict(ok)
end

million = ENV["KAAL_BENCH_MILLION"] == "1"
sizes = (ENV["KAAL_BENCH_SIZES"] || (million ? "1000,10000,100000,1000000" : "1000,10000,100000")).split(",").map(&:to_i)
puts "kaal #{Kaal::VERSION}, ruby #{RUBY_VERSION}, memory backend, #{Etc.nprocessors} cores, " \
     "load average #{File.read("/proc/loadavg").split.first}"
START_TARGET = { 100_000 => 0.5, 1_000_000 => 3.0 }.freeze
IDLE_TARGET = { 100_000 => 1.0, 1_000_000 => 0.1 }.freeze
sizes.each do |n|
  r = TickBench.idle(n)
  total = r[:register_s] + r[:first_tick_s]
  target = START_TARGET[n]
  printf("start      %7d jobs (code): register %.2f s + first tick %.2f s = %.2f s (CPU %.2f s)%s\n",
         n, r[:register_s], r[:first_tick_s], total, r[:register_cpu_s] + r[:first_tick_cpu_s],
         target ? "  [target <= #{target} s: #{verdict(total <= target)}]" : "")
  Kaal.reset!
  GC.start
  r2 = TickBench.per_customer(n)
  total2 = r2[:register_s] + r2[:first_tick_s]
  printf("start      %7d jobs (code, distinct args): register %.2f s + first tick %.2f s = %.2f s (CPU %.2f s)%s\n",
         n, r2[:register_s], r2[:first_tick_s], total2, r2[:cpu_s],
         target ? "  [target <= #{target} s: #{verdict(total2 <= target)}]" : "")
  target = IDLE_TARGET[n]
  printf("idle tick  %7d jobs: median %.3f ms, p95 %.3f ms%s\n", n, r[:median_ms], r[:p95_ms],
         target ? "  [target <= #{target} ms: #{verdict(r[:median_ms] <= target)}]" : "")
  Kaal.reset!
  GC.start
end
r = TickBench.due(10_000)
printf("due tick   %7d jobs due in one second: median %.1f ms, best %.1f ms  [target <= 50 ms: %s]\n",
       r[:n], r[:median_ms], r[:min_ms], verdict(r[:median_ms] <= 50))
Kaal.reset!
GC.start
RSS_TARGET = { 10_000 => 60, 1_000_000 => 400 }.freeze
(million ? [10_000, 100_000, 1_000_000] : [10_000, 100_000]).each do |n|
  r = TickBench.start(n)
  marks = []
  marks << "RSS target <= #{RSS_TARGET[n]} MB: #{verdict(r[:vmhwm_mb] <= RSS_TARGET[n])}" if RSS_TARGET[n]
  marks << "start target <= #{START_TARGET[n]} s: #{verdict(r[:first_tick_s] <= START_TARGET[n])}" if START_TARGET[n]
  printf("kaal start %7d jobs (file): spawn to first tick %.2f s (CPU %.2f s), peak RSS (VmHWM) %.1f MB, TERM exit %d  [%s]\n",
         n, r[:first_tick_s], r[:cpu_s], r[:vmhwm_mb], r[:exit], marks.join("; "))
end
