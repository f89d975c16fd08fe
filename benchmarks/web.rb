# frozen_string_literal: true

# Render time of the dashboard's pages with many jobs and a long dispatch log.
#
#   bundle exec ruby -Ilib benchmarks/web.rb
#   KAAL_BENCH_JOBS=10000 KAAL_BENCH_BACKEND=sqlite bundle exec ruby -Ilib benchmarks/web.rb
#
# Registers KAAL_BENCH_JOBS jobs (default 10,000) with varied crons and
# zones, records a dispatch log of 20 runs each for the first 1,000 jobs
# (20,000 rows) plus failures, then times full GET requests through Rack
# (rendering included): the jobs page (first and last page), a job page and
# the problems page. Target: the jobs page with 10,000 jobs under 300 ms.

$LOAD_PATH.unshift File.expand_path("../lib", __dir__)
require "kaal/web"
require "rack/mock"
require "tmpdir"

module WebBench
  module_function

  def clock
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  def median_ms(rounds)
    times = Array.new(rounds) do
      t = clock
      yield
      (clock - t) * 1000
    end
    times.sort[rounds / 2]
  end

  def run
    n = Integer(ENV.fetch("KAAL_BENCH_JOBS", "10000"))
    kind = ENV.fetch("KAAL_BENCH_BACKEND", "memory")
    dir = Dir.mktmpdir("kaal-web-bench")
    Kaal.configure do |c|
      c.backend = kind
      c.backend_config = { path: File.join(dir, "bench.sqlite3") } if kind == "sqlite"
      c.namespace = "bench"
    end
    Kaal.backend.migrate
    crons = ["*/5 * * * *", "30 2 * * *", "0 9 * * MON-FRI", "15 */4 * * *", "0 0 1 * *", "0 6 L * *"]
    zones = %w[UTC Europe/Berlin America/New_York Asia/Tokyo]
    n.times do |i|
      Kaal.register(key: format("job-%05d", i), cron: crons[i % crons.size], time_zone: zones[i % zones.size]) { nil }
    end
    now = Time.now.to_i
    [n, 1000].min.times do |i|
      key = format("job-%05d", i)
      pairs = Array.new(20) { |j| [key, now - (j + 1) * 300] }
      Kaal.backend.claim(pairs, lease_ms: 1000, node: "bench-node", now: now)
      pairs.each_with_index do |(k, f), j|
        Kaal.backend.record(k, f, j % 7 == 0 ? "failed" : "dispatched", node: "bench-node",
                            error: j % 7 == 0 ? "RuntimeError: boom" : nil, now: f + 1)
      end
    end
    app = Kaal::Web.new
    pages = { "jobs page 1" => "/", "jobs page #{(n / 50.0).ceil}" => "/?page=#{(n / 50.0).ceil}",
              "job page (20 log rows)" => "/jobs/job-00001", "problems page" => "/problems" }
    puts "Kaal::Web over #{kind}, #{n} jobs, #{[n, 1000].min * 20} dispatch-log rows (median of 15 requests):"
    pages.each do |label, path|
      res = Rack::MockRequest.new(app).get(path)
      raise "#{path}: #{res.status}" unless res.status == 200

      ms = median_ms(15) { Rack::MockRequest.new(app).get(path) }
      puts format("  %-24s %8.1f ms  (%d KB)", label, ms, res.body.bytesize / 1024)
    end
  ensure
    Kaal.reset!
    FileUtils.rm_rf(dir) if dir
  end
end

WebBench.run if $PROGRAM_NAME == __FILE__
