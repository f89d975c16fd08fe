# frozen_string_literal: true

# Tick cost of the scheduler runtime on the memory backend.
#
#   ruby -Ilib benchmarks/tick.rb            # 1k, 10k, 100k idle; 10k due; RSS of `kaal start`
#   KAAL_BENCH_SIZES=1000,10000 ruby -Ilib benchmarks/tick.rb
#
# - idle: N registered jobs, none due (yearly cron): the time of one tick
#   (heap peek + the per-tick backend calls: states, heartbeat, delayed sweep).
#   Target: 100k jobs <= 1 ms per tick.
# - due: 10k jobs due in the same second: one claim call for all pairs, then
#   each claimed run handed to the worker pool (the pool's work is not timed;
#   logging goes to /dev/null; a GC between rounds, not timed). Target: <= 50 ms.
# - rss: peak RSS (VmHWM) of `kaal start` with 10k jobs in the scheduler file,
#   after a few ticks. Target: <= 60 MB.

$LOAD_PATH.unshift File.expand_path("../lib", __dir__)
require "kaal"
require "logger"
require "tmpdir"
require "yaml"
require "rbconfig"

module TickBench
  module_function

  def clock
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

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
    t = clock
    n.times { |i| Kaal.register(key: "idle-#{i}", cron: "0 0 1 1 *", job_class: NoopJob) }
    reg = clock - t
    now = Time.utc(2026, 6, 1, 12, 0, 0).to_i
    t = clock
    Kaal.tick!(now: now)
    first = clock - t
    samples = Array.new(ticks) do |i|
      s = clock
      Kaal.tick!(now: now + 1 + i, wait: false)
      clock - s
    end.sort
    { n: n, register_s: reg, first_tick_ms: first * 1000, median_ms: samples[samples.size / 2] * 1000,
      p95_ms: samples[(samples.size * 0.95).floor] * 1000 }
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

  def rss(n, seconds: 4)
    Dir.mktmpdir("kaal-bench") do |dir|
      Dir.mkdir(File.join(dir, "config"))
      File.write(File.join(dir, "config", "kaal.yml"),
                 YAML.dump("defaults" => { "backend" => "memory", "tick_interval" => 1,
                                           "scheduler_config_path" => "config/kaal-scheduler.yml" }))
      jobs = Array.new(n) { |i| { "key" => "job-#{i}", "cron" => "0 0 1 1 *", "job_class" => "NoopJob" } }
      File.write(File.join(dir, "config", "kaal-scheduler.yml"), YAML.dump("defaults" => { "jobs" => jobs }))
      pid = Process.spawn(RbConfig.ruby, "-I", File.expand_path("../lib", __dir__),
                          File.expand_path("../bin/kaal", __dir__), "start",
                          chdir: dir, out: File::NULL, err: File::NULL)
      sleep seconds
      status = File.read("/proc/#{pid}/status")
      hwm = status[/^VmHWM:\s+(\d+) kB/, 1].to_i
      Process.kill("TERM", pid)
      Process.wait(pid)
      { n: n, vmhwm_mb: hwm / 1024.0, exit: $?.exitstatus }
    end
  end
end

sizes = (ENV["KAAL_BENCH_SIZES"] || "1000,10000,100000").split(",").map(&:to_i)
puts "kaal #{Kaal::VERSION}, ruby #{RUBY_VERSION}, memory backend"
sizes.each do |n|
  r = TickBench.idle(n)
  printf("idle tick  %7d jobs: median %.3f ms, p95 %.3f ms  (register %.2f s, first tick %.1f ms)%s\n",
         n, r[:median_ms], r[:p95_ms], r[:register_s], r[:first_tick_ms],
         n >= 100_000 ? (r[:median_ms] <= 1.0 ? "  [target <= 1 ms: ok]" : "  [target <= 1 ms: MISSED]") : "")
end
r = TickBench.due(10_000)
printf("due tick   %7d jobs due in one second: median %.1f ms, best %.1f ms  [target <= 50 ms: %s]\n",
       r[:n], r[:median_ms], r[:min_ms], r[:median_ms] <= 50 ? "ok" : "MISSED")
Kaal.reset!
r = TickBench.rss(10_000)
printf("kaal start %7d jobs: peak RSS (VmHWM) %.1f MB, TERM exit %d  [target <= 60 MB: %s]\n",
       r[:n], r[:vmhwm_mb], r[:exit], r[:vmhwm_mb] <= 60 ? "ok" : "MISSED")
