# frozen_string_literal: true

# CPU per recurring run on one node: N jobs every second (a plain job that
# does nothing), one node winning every run, R ticks at consecutive seconds;
# each tick's worker pool is waited for, so the figure covers everything a
# run costs a node: due computation, claim, dispatch, the job call, the
# dispatch-log write, the events and the log line (kaal's own logger,
# writing to /dev/null at log_level info, as `kaal start` does).
#
#   ruby benchmarks/dispatch.rb [--backend memory|redis|postgres] [--jobs 10000] [--ticks 10]
#                               [--log-level info] [--log-dispatches each|summary]
#                               [--metrics] [--url URL] [--profile FILE]
#
# redis and postgres need --url (or KAAL_TEST_REDIS_URL / KAAL_TEST_POSTGRES_URL,
# as `bin/services start` writes them). CPU is this process's (all threads),
# so it does not count the server's. --profile writes a stackprof CPU
# profile of the measured ticks (gem install stackprof).

$LOAD_PATH.unshift File.expand_path("../lib", __dir__)
require "optparse"
require "kaal"
require_relative "support"

module DispatchBench
  # The job: does nothing.
  class NoopJob
    def self.perform(*); end
  end

  extend BenchSupport
  module_function

  def run(backend:, jobs:, ticks:, url:, profile:, log_level:, log_dispatches:, metrics:)
    Kaal.reset!
    Kaal.configure do |c|
      c.backend = backend.to_sym
      c.backend_config = { url: url } if url
      c.namespace = "bench-dispatch-#{rand(1 << 30)}"
      c.logger = Kaal::Log.build(File.open(File::NULL, "w")).tap { |l| l.level = Kaal::Log.level(log_level) }
      c.log_dispatches = log_dispatches if c.respond_to?(:log_dispatches=) # (a tree before the option: each)
      c.tick_interval = 1
      c.worker_threads = 5
      c.enable_dispatch_recovery = false
    end
    Kaal.backend.migrate if Kaal.backend.respond_to?(:migrate)
    installed = Kaal::Metrics.new.install if metrics
    jobs.times do |i|
      Kaal.register(key: format("job-%05d", i), cron: "* * * * * *", job_class: NoopJob,
                    args: ["{{key}}", "{{fire_time.unix}}"])
    end
    now = Time.now.to_i
    Kaal.tick!(now: now) # places the jobs
    Kaal.scheduler.pool.wait_idle(60)
    one_tick(now + 1) # warm-up
    GC.start
    require "stackprof" if profile
    StackProf.start(mode: :cpu, raw: true, interval: 1000) if profile
    c = cpu
    t = clock
    runs = 0
    ticks.times { |i| runs += one_tick(now + 2 + i) }
    used = cpu - c
    wall = clock - t
    if profile
      StackProf.stop
      StackProf.results(profile)
    end
    { backend: backend, jobs: jobs, ticks: ticks, runs: runs, cpu_s: used, wall_s: wall,
      cpu_us_per_run: used / runs * 1e6, gc: GC.stat(:count) }
  ensure
    installed&.uninstall
    Kaal.reset!
  end

  def one_tick(at)
    out = Kaal.tick!(now: at)
    Kaal.scheduler.pool.wait_idle(120)
    out.size
  end
end

opts = { backend: "memory", jobs: 10_000, ticks: 10, url: nil, profile: nil, log_level: :info, log_dispatches: :each,
         metrics: false }
OptionParser.new do |o|
  o.banner = "usage: ruby benchmarks/dispatch.rb [options]"
  o.on("--backend NAME", %w[memory redis postgres]) { |v| opts[:backend] = v }
  o.on("--jobs N", Integer) { |v| opts[:jobs] = v }
  o.on("--ticks N", Integer) { |v| opts[:ticks] = v }
  o.on("--url URL") { |v| opts[:url] = v }
  o.on("--log-level LEVEL", %w[debug info warn error]) { |v| opts[:log_level] = v.to_sym }
  o.on("--log-dispatches MODE", %w[each summary]) { |v| opts[:log_dispatches] = v.to_sym }
  o.on("--metrics", "count the runs for /metrics too (as `kaal start --http` does)") { opts[:metrics] = true }
  o.on("--profile FILE", "stackprof CPU profile of the measured ticks") { |v| opts[:profile] = v }
end.parse!(ARGV)
opts[:url] ||= { "redis" => ENV["KAAL_TEST_REDIS_URL"], "postgres" => ENV["KAAL_TEST_POSTGRES_URL"] }[opts[:backend]]
abort "--backend #{opts[:backend]} needs --url" if opts[:backend] != "memory" && opts[:url].nil?

r = DispatchBench.run(**opts)
puts format("dispatch %-8s %d jobs x %d ticks: %d runs, %.1f us CPU per run (%.2f s CPU, %.2f s wall, " \
            "log_level %s, log_dispatches %s%s)", r[:backend], r[:jobs], r[:ticks], r[:runs], r[:cpu_us_per_run], r[:cpu_s],
            r[:wall_s], opts[:log_level], opts[:log_dispatches], opts[:metrics] ? ", metrics" : "")
