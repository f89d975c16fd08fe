# frozen_string_literal: true

# Cluster throughput: N real `kaal start` nodes on one Redis or PostgreSQL,
# J jobs each firing every second, jobs that do nothing (they only note when
# they ran), no kills. Prints fires per second, duplicates and lateness next
# to the targets (issue: 5 nodes, 10,000 jobs, 60 s: 10,000 fires per second,
# 0 duplicates, lateness p99 under 1 s), and the CPU the nodes and the
# server used per run. The nodes log as an operator of such a cluster would
# have them log: log_dispatches: summary (one line per tick, not per run).
#
#   ruby benchmarks/cluster.rb [--backend redis|postgres] [--nodes 5] [--jobs 10000]
#                              [--duration 60] [--warmup 10] [--url URL] [--profile]
#
# Without --url it starts a private server (bin/services in a temporary
# directory) and stops it at the end. The nodes first place their jobs (the
# start tick); the measured window begins --warmup seconds after the last
# node logged its first tick; after it, the nodes run until every run of the
# window is noted (at most 30 s more: late runs count, with their lateness).
# Runs CPU-heavy for a minute: run it niced on a
# shared machine (nice -n 19 ruby benchmarks/cluster.rb). --profile writes a
# stackprof CPU profile of each node (gem install stackprof) to
# <dir>/records/<node>.stackprof (read with `stackprof FILE`).

$LOAD_PATH.unshift File.expand_path("../lib", __dir__)
require "optparse"
require "fileutils"
require "tmpdir"
require "yaml"
require "rbconfig"
require "securerandom"
require "etc"
require "kaal"
require_relative "../test/chaos/server"

module ClusterBench
  ROOT = File.expand_path("..", __dir__)
  JOB_RB = File.join(__dir__, "cluster_job.rb")

  Options = Struct.new(:backend, :nodes, :jobs, :duration, :warmup, :url, :dir, :profile, keyword_init: true)

  class Run
    def initialize(opts)
      @opts = opts
      @namespace = "kaal-cluster-#{SecureRandom.hex(4)}"
    end

    def run
      @dir = @opts.dir ? FileUtils.mkdir_p(@opts.dir).first : Dir.mktmpdir("kaal-cluster-#{@opts.backend}-")
      File.chmod(0o755, @dir)
      @records = File.join(@dir, "records")
      FileUtils.mkdir_p([@records, File.join(@dir, "logs"), File.join(@dir, "config")])
      unless @opts.url
        @server = Kaal::Chaos::Server.new(@opts.backend, File.join(@dir, "services"), durable: false).start
      end
      url = @opts.url || @server.url
      handle = Kaal::Backend.build(@opts.backend, namespace: @namespace, config: { url: url })
      handle.migrate
      write_app(url)
      say "#{@opts.nodes} nodes, #{@opts.jobs} jobs every second, #{@opts.backend} (#{@dir})"
      t_spawn = Time.now.to_f
      @pids = Array.new(@opts.nodes) { |i| spawn_node(i) }
      first_ticks = wait_first_ticks(handle, t_spawn)
      window_from = Time.now.to_f.ceil + @opts.warmup
      window_to = window_from + @opts.duration
      say "all nodes ticking (start to first tick: #{first_ticks.map { |s| format("%.1f s", s) }.join(", ")}); " \
          "measuring #{@opts.duration.to_i} s after #{@opts.warmup.to_i} s of warm-up"
      cpu_from = cpu_seconds
      server_from = server_cpu_seconds
      sleep_until(window_to)
      cpu = cpu_seconds.zip(cpu_from).map { |a, b| (a - b) / @opts.duration }
      server_cpu = server_from && server_cpu_seconds && ((server_cpu_seconds - server_from) / @opts.duration)
      wait_window_run(window_from, window_to) # a late cluster's last runs of the window count, late
      stop_nodes
      analyse(window_from, window_to, first_ticks).merge(cpu: cpu, server_cpu: server_cpu)
    ensure
      @pids&.each { |pid| kill(pid) }
      handle&.close
      @server&.stop
    end

    private

    def say(text)
      warn "cluster: #{text}"
    end

    def write_app(url)
      config = { "backend" => @opts.backend, "backend_config" => { "url" => url }, "namespace" => @namespace,
                 "tick_interval" => 1, "worker_threads" => 5, "shutdown_timeout" => 10, "log_dispatches" => "summary",
                 "scheduler_config_path" => "config/kaal-scheduler.yml" }
      File.write(File.join(@dir, "config", "kaal.yml"), YAML.dump("defaults" => config))
      jobs = Array.new(@opts.jobs) do |i|
        { "key" => format("job-%05d", i), "cron" => "* * * * * *", "job_class" => "KaalClusterJob",
          "args" => ["{{key}}", "{{fire_time.unix}}"] }
      end
      File.write(File.join(@dir, "config", "kaal-scheduler.yml"), YAML.dump("defaults" => { "jobs" => jobs }))
    end

    def spawn_node(index)
      env = { "KAAL_ENV" => "production", "KAAL_NODE_ID" => "node-#{index}", "KAAL_CLUSTER_RECORD_DIR" => @records }
      env["KAAL_CLUSTER_PROFILE"] = "1" if @opts.profile
      log = File.join(@dir, "logs", "node-#{index}.log")
      Process.spawn(env, RbConfig.ruby, "-I", File.join(ROOT, "lib"), File.join(ROOT, "bin", "kaal"), "start",
                    "--require", JOB_RB, chdir: @dir, in: File::NULL, out: [log, "a"], err: [log, "a"])
    end

    # Seconds from spawn to each node's first heartbeat (written at the end
    # of its first tick), waiting at most 120 s.
    def wait_first_ticks(handle, t_spawn)
      deadline = Time.now.to_f + 120
      seen = {}
      until seen.size == @opts.nodes
        raise "nodes did not all tick within 120 s (see #{@dir}/logs)" if Time.now.to_f > deadline

        @pids.each_with_index do |pid, i|
          done = Process.waitpid(pid, Process::WNOHANG)
          raise "node-#{i} exited early (see #{@dir}/logs/node-#{i}.log)" if done
        end
        handle.nodes(since: 0).each { |n| seen[n[:node]] ||= Time.now.to_f - t_spawn }
        sleep 0.1
      end
      seen.values.sort
    end

    # Waits until every run of the window is noted (the records are
    # written every half second), at least 3 s and at most LATE_MAX s after
    # the window's end: a run that comes late counts, with its lateness,
    # instead of being cut off by the stop.
    LATE_MAX = 30

    def wait_window_run(from, to)
      expected = @opts.jobs * (to - from)
      sleep_until(to + 3)
      loop do
        break if Time.now.to_f > to + LATE_MAX || window_runs(from, to) >= expected

        sleep 2
      end
    end

    def window_runs(from, to)
      Dir[File.join(@records, "*.rec")].sum do |path|
        File.foreach(path).count { |line| (fire = line.split(" ", 3)[1].to_i) >= from && fire < to }
      end
    end

    # CPU seconds (user + system) each node has used so far (Linux /proc).
    def cpu_seconds
      hz = 100.0 # USER_HZ
      @pids.map do |pid|
        fields = File.read("/proc/#{pid}/stat").split(") ", 2).last.split(" ")
        (fields[11].to_i + fields[12].to_i) / hz
      rescue Errno::ENOENT
        0.0
      end
    end

    # CPU seconds the private server has used so far: the server process
    # and its children (PostgreSQL's backends of the nodes' connections);
    # nil with --url.
    def server_cpu_seconds
      root = @server&.pid
      return nil unless root

      Dir["/proc/[0-9]*/stat"].sum do |path|
        fields = File.read(path).split(") ", 2).last.split(" ")
        pid = path[%r{/proc/(\d+)/}, 1].to_i
        pid == root || fields[1].to_i == root ? (fields[11].to_i + fields[12].to_i) / 100.0 : 0.0
      rescue Errno::ENOENT, Errno::ESRCH
        0.0
      end
    end

    def sleep_until(at)
      loop do
        left = at - Time.now.to_f
        break if left <= 0

        sleep [left, 1].min
      end
    end

    def stop_nodes
      @pids.each { |pid| Process.kill("TERM", pid) }
      @pids.each { |pid| Process.wait(pid) }
      @pids = nil
    end

    def kill(pid)
      Process.kill("KILL", pid)
      Process.wait(pid)
    rescue Errno::ESRCH, Errno::ECHILD
      nil
    end

    def analyse(from, to, first_ticks)
      runs = Hash.new(0)
      late = []
      per_node = Hash.new(0)
      Dir[File.join(@records, "*.rec")].each do |path|
        File.foreach(path) do |line|
          key, fire, node, ran_at = line.split(" ")
          fire = fire.to_i
          runs[[key, fire]] += 1
          next unless fire >= from && fire < to

          late << (ran_at.to_f - fire)
          per_node[node] += 1
        end
      end
      duplicates = runs.count { |_, n| n > 1 }
      late.sort!
      expected = @opts.jobs * (to - from)
      { backend: @opts.backend, nodes: @opts.nodes, jobs: @opts.jobs, seconds: to - from, expected: expected,
        ran: late.size, fires_per_second: late.size.fdiv(to - from), duplicates: duplicates,
        missing: expected - late.size, p50: pct(late, 0.5), p99: pct(late, 0.99), max: late.last,
        per_node: per_node.sort.to_h, first_ticks: first_ticks }
    end

    def pct(sorted, q)
      sorted.empty? ? nil : sorted[[(sorted.size * q).ceil - 1, 0].max]
    end
  end

  module_function

  def report(r)
    target = r[:jobs]
    ok = ->(cond) { cond ? "ok" : "MISSED" }
    lines = []
    lines << format("cluster %s: %d nodes, %d jobs every second, %d s measured", r[:backend], r[:nodes], r[:jobs], r[:seconds])
    lines << format("  fires per second  %9.0f   [target %d: %s]  (%d of %d expected runs, %d missing)",
                    r[:fires_per_second], target, ok.call(r[:missing] <= 0), r[:ran], r[:expected], r[:missing])
    lines << format("  duplicates        %9d   [target 0: %s]", r[:duplicates], ok.call(r[:duplicates].zero?))
    lines << format("  lateness p99      %9.3f s [target < 1 s: %s]  (p50 %.3f s, max %.3f s)",
                    r[:p99] || Float::NAN, ok.call(r[:p99] && r[:p99] < 1), r[:p50] || Float::NAN, r[:max] || Float::NAN)
    lines << "  runs per node     #{r[:per_node].map { |n, c| "#{n} #{c}" }.join(", ")}"
    lines << "  spawn to first tick #{r[:first_ticks].map { |s| format("%.1f s", s) }.join(", ")}"
    lines << "  CPU per node      #{r[:cpu].map { |c| format("%.2f", c) }.join(", ")} cores while measuring " \
             "(#{Etc.nprocessors} cores here; load average #{File.read("/proc/loadavg").split.first})"
    per_run = ->(cores) { r[:fires_per_second].positive? ? cores / r[:fires_per_second] * 1e6 : Float::NAN }
    nodes = r[:cpu].sum
    lines << format("  CPU per run       %.1f us in the nodes (%.2f cores in all)", per_run.call(nodes), nodes)
    if r[:server_cpu]
      lines << format("                    %.1f us in the %s server (%.2f cores)", per_run.call(r[:server_cpu]),
                      r[:backend], r[:server_cpu])
    end
    lines.join("\n")
  end
end

opts = ClusterBench::Options.new(backend: "redis", nodes: 5, jobs: 10_000, duration: 60, warmup: 10)
OptionParser.new do |o|
  o.banner = "usage: ruby benchmarks/cluster.rb [options]"
  o.on("--backend NAME", %w[redis postgres], "redis | postgres (default redis)") { |v| opts.backend = v }
  o.on("--nodes N", Integer, "kaal start processes (default 5)") { |v| opts.nodes = v }
  o.on("--jobs N", Integer, "jobs, each firing every second (default 10000)") { |v| opts.jobs = v }
  o.on("--duration SECONDS", Integer, "measured seconds (default 60)") { |v| opts.duration = v }
  o.on("--warmup SECONDS", Integer, "seconds after the first ticks before measuring (default 10)") { |v| opts.warmup = v }
  o.on("--url URL", "use this server instead of a private one") { |v| opts.url = v }
  o.on("--profile", "each node writes a stackprof CPU profile to <dir>/records/<node>.stackprof") { opts.profile = true }
  o.on("--dir DIR", "run directory (default a new /tmp/kaal-cluster-*)") { |v| opts.dir = v }
end.parse!(ARGV)

puts ClusterBench.report(ClusterBench::Run.new(opts).run)
