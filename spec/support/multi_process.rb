# frozen_string_literal: true

require "fileutils"
require "rbconfig"
require "securerandom"
require "tmpdir"
require "yaml"

module Kaal
  module Spec
    # Runs several real `kaal start` processes against one shared backend,
    # SIGKILLs and restarts them at random, and checks from the jobs' own
    # append-only record that no (job key, fire time) ran twice.
    #
    #   result = Kaal::Spec::MultiProcess.run(
    #     backend: "redis", backend_config: { "url" => ENV["KAAL_TEST_REDIS_URL"] },
    #     nodes: 3, jobs: 5, duration: 30
    #   )
    #   result.duplicates  # => [] ("key fire_time" pairs that ran more than once)
    #   result.coverage    # => 0.0..100.0 (% of expected pairs that ran)
    #   puts result.summary
    #
    # Every job fires every second (`* * * * * *`, tick_interval 1) and its
    # class appends "key fire_time_unix node pid ran_at\n" to one shared file with
    # O_APPEND: one write(2) per line shorter than PIPE_BUF, so lines from
    # different processes never interleave. Expected pairs are every second of
    # the run window for every job, leaving out a margin after the first
    # dispatch and before the TERM (start-up and shutdown are not steady state).
    # Each run uses a fresh namespace, so runs never see each other's state.
    module MultiProcess
      BIN_KAAL = File.expand_path("../../bin/kaal", __dir__)
      LIB = File.expand_path("../../lib", __dir__)

      Result = Struct.new(
        :backend, :nodes, :jobs, :duration, :kills, :dispatches, :duplicates, :expected, :covered,
        :window, :crashes, :dir, :node_logs, :records, :events,
        keyword_init: true
      ) do
        def coverage
          expected.zero? ? 0.0 : (100.0 * covered / expected).round(2)
        end

        def summary
          format("multi-process %<backend>s, %<nodes>d nodes, %<jobs>d jobs, %<dur>.1fs, %<kills>d SIGKILLs: " \
                 "%<disp>d dispatches, %<dups>d duplicate pairs, %<cov>d/%<exp>d expected pairs " \
                 "ran (%<pct>.2f%% coverage), %<crashes>d unexpected exits",
                 backend: backend, nodes: nodes, jobs: jobs, dur: duration, kills: kills, disp: dispatches,
                 dups: duplicates.size, cov: covered, exp: expected, pct: coverage,
                 crashes: crashes.size)
        end
      end

      # One `kaal start` child.
      class Node
        attr_reader :name, :pid, :log, :started_at

        def initialize(name, dir, env)
          @name = name
          @dir = dir
          @env = env
          @log = File.join(dir, "#{name}.log")
          @pid = nil
        end

        def start
          @started_at = Clock.monotonic
          @pid = Process.spawn(
            @env.merge("KAAL_MP_NODE" => name),
            RbConfig.ruby, "-I", LIB, BIN_KAAL, "start", "--require", "./jobs.rb",
            chdir: @dir, in: File::NULL, out: [@log, "a"], err: [@log, "a"], pgroup: true
          )
        end

        def alive?
          return false unless @pid

          done, status = Process.waitpid2(@pid, Process::WNOHANG)
          @last_status = status if done
          done.nil?
        rescue Errno::ECHILD
          false
        end

        attr_reader :last_status

        # SIGKILL and reap. Returns true when the process was still running.
        def kill!
          return false unless @pid

          was_alive = alive?
          signal("KILL")
          reap(5)
          @pid = nil
          was_alive
        end

        def signal(sig)
          Process.kill(sig, @pid) if @pid
        rescue Errno::ESRCH
          nil
        end

        # Wait up to `timeout` seconds; returns the exit status or nil.
        def reap(timeout)
          return nil unless @pid

          deadline = Clock.monotonic + timeout
          loop do
            done, status = Process.waitpid2(@pid, Process::WNOHANG)
            return @last_status = status if done
            return nil if Clock.monotonic > deadline

            sleep 0.05
          end
        rescue Errno::ECHILD
          @last_status # reaped earlier by alive?
        end

        def log_tail(lines = 20)
          File.exist?(@log) ? File.readlines(@log).last(lines).join : ""
        end
      end

      module_function

      # backend: "redis" | "postgres" | "mysql" | "sqlite"; backend_config: the
      # `backend_config` hash for config/kaal.yml (string keys). kill_every:
      # range of seconds between two SIGKILLs (nil: no kills). margin: seconds
      # left out at the start and end of the window. events: [[seconds after
      # start, label, callable], ...] run once each during the run (say, stop
      # the backend's server); result.events has [label, Time] of each.
      # result.records: every run as [key, fire_time, node, pid, ran_at (Float)].
      # settings: more options for config/kaal.yml (say, "max_backoff" => 2).
      def run(backend:, backend_config:, nodes: 3, jobs: 5, duration: 30, kill_every: 3.0..6.0,
              restart_after: 0.2..1.0, margin: 3, seed: Random.new_seed, keep_dir: false, events: [], settings: {})
        rng = Random.new(seed)
        dir = Dir.mktmpdir("kaal-mp-")
        record = File.join(dir, "record.txt")
        write_app(dir, backend, backend_config, jobs, record, settings)
        env = { "KAAL_ENV" => "test", "KAAL_MP_RECORD" => record }
        children = Array.new(nodes) { |i| Node.new("node-#{i}", dir, env) }
        crashes = []
        kills = 0
        pending = events.sort_by(&:first)
        happened = []
        started_at = Time.now
        t0 = Clock.monotonic
        children.each(&:start)
        deadline = t0 + duration
        quiet = [5.0, duration / 4.0].min
        next_kill = kill_every ? Clock.monotonic + rng.rand(kill_every) : Float::INFINITY
        while Clock.monotonic < deadline
          sleep 0.1
          while pending.any? && Clock.monotonic - t0 >= pending.first[0]
            _, label, action = pending.shift
            action.call
            happened << [label, Time.now]
          end
          children.each do |n|
            next if n.alive?

            crashes << "#{n.name}: exited on its own (#{n.last_status.inspect})\n#{n.log_tail}"
            n.start
          end
          # no kill in the last seconds: a node restarted then may still be
          # booting when the TERM comes
          next unless Clock.monotonic >= next_kill && Clock.monotonic < deadline - quiet

          victim = children[rng.rand(children.size)]
          kills += 1 if victim.kill!
          sleep rng.rand(restart_after)
          victim.start
          next_kill = Clock.monotonic + rng.rand(kill_every)
        end
        pending.each do |_, label, action|
          action.call
          happened << [label, Time.now]
        end
        stopped_at = Time.now
        children.each { |n| n.signal("TERM") }
        children.each do |n|
          status = n.reap(20)
          if status.nil?
            crashes << "#{n.name}: did not stop within 20 s of TERM\n#{n.log_tail}"
            n.kill!
          elsif !status.success? && !(status.termsig == Signal.list["TERM"] && Clock.monotonic - n.started_at < 8)
            # (a TERM that arrives before kaal installed its handler kills a
            # node that is still booting: not a failure of kaal)
            crashes << "#{n.name}: did not exit 0 on TERM: #{status.inspect}\n#{n.log_tail}"
          end
        end
        analyse(record, jobs, started_at, stopped_at, margin).merge!(
          backend: backend, nodes: nodes, jobs: jobs, duration: (stopped_at - started_at).round(1), kills: kills,
          crashes: crashes, dir: keep_dir ? dir : nil, events: happened,
          node_logs: children.to_h { |n| [n.name, n.log_tail(40)] }
        ).then { |h| Result.new(**h) }
      ensure
        children&.each { |n| n.kill! if n.alive? }
        FileUtils.rm_rf(dir) if dir && !keep_dir
      end

      # Example methods for the multi-process specs (RSpec `include`): the
      # two runs every shared backend must pass.
      module Examples
        def explain(result)
          ([result.summary] + result.crashes + result.node_logs.map { |n, log| "#{n}:\n#{log}" }).join("\n---\n")
        end

        # 3 nodes, 5 jobs, one node SIGKILLed and restarted every few seconds
        # for KAAL_MP_SECONDS (default 30): expects no crash, at least
        # min_kills kills, no pair run twice and >= 90% coverage. Returns the
        # result.
        def expect_random_kills_survived(backend, backend_config, duration: Float(ENV.fetch("KAAL_MP_SECONDS", "30")),
                                         min_kills: [(duration / 8).floor, 1].max)
          result = MultiProcess.run(backend: backend, backend_config: backend_config,
                                    nodes: 3, jobs: 5, duration: duration)
          puts "\n  #{result.summary}"

          expect(result.crashes).to be_empty, -> { explain(result) }
          expect(result.kills).to be >= min_kills
          expect(result.dispatches).to be > 0, -> { explain(result) }
          expect(result.duplicates).to be_empty, -> { explain(result) }
          expect(result.coverage).to be >= 90.0, -> { explain(result) }
          result
        end

        # 2 nodes, 3 jobs, 20 s, no kills; the backend goes away 7 s in
        # (down: [label, callable]) and returns 4 s later (up: the same).
        # Expects the nodes to survive, run nothing while it is gone (fail
        # closed; 1 s of grace for runs already under way), catch the missed
        # seconds up from the lookback window once it is back, and run no pair
        # twice. Returns the result.
        def expect_outage_survived(backend, backend_config, down:, up:)
          result = MultiProcess.run(
            backend: backend, backend_config: backend_config, nodes: 2, jobs: 3, duration: 20,
            kill_every: nil, events: [[7, *down], [11, *up]]
          )
          happened = result.events.to_h
          down_at = happened.fetch(down.first)
          up_at = happened.fetch(up.first)
          puts "\n  outage: #{result.summary}"

          expect(result.crashes).to be_empty, -> { explain(result) }
          expect(result.duplicates).to be_empty, -> { explain(result) }
          ran_while_down = result.records.select { |*, ran_at| ran_at > down_at.to_f + 1.0 && ran_at < up_at.to_f }
          expect(ran_while_down).to be_empty, -> { explain(result) }
          missed = result.records.select { |_, fire, *| fire.between?(down_at.to_i + 1, up_at.to_i - 1) }
          expect(missed).not_to be_empty, -> { explain(result) } # the outage's seconds were caught up ...
          expect(missed.map(&:last).min).to be >= up_at.to_f # ... after it came back
          expect(result.coverage).to be >= 90.0, -> { explain(result) }
          result
        end
      end

      def job_key(index)
        format("mp-job-%02d", index)
      end

      def write_app(dir, backend, backend_config, jobs, _record, settings = {})
        FileUtils.mkdir_p(File.join(dir, "config"))
        namespace = "kaal-mp-#{SecureRandom.hex(6)}"
        config = {
          "backend" => backend.to_s,
          "backend_config" => backend_config.transform_keys(&:to_s),
          "namespace" => namespace,
          "tick_interval" => 1,
          "scheduler_config_path" => "config/kaal-scheduler.yml"
        }.merge(settings)
        File.write(File.join(dir, "config", "kaal.yml"), YAML.dump("defaults" => config))
        job_list = Array.new(jobs) do |i|
          { "key" => job_key(i), "cron" => "* * * * * *", "job_class" => "KaalMultiProcessJob",
            "args" => ["{{key}}", "{{fire_time.unix}}"] }
        end
        File.write(File.join(dir, "config", "kaal-scheduler.yml"),
                   YAML.dump("defaults" => { "jobs" => job_list }))
        File.write(File.join(dir, "jobs.rb"), <<~RUBY)
          # frozen_string_literal: true

          # Written by Kaal::Spec::MultiProcess: one O_APPEND write per run.
          class KaalMultiProcessJob
            RECORD = ENV.fetch("KAAL_MP_RECORD")
            NODE = ENV.fetch("KAAL_MP_NODE")

            def self.perform(key, fire_time)
              line = format("%s %d %s %d %.3f\\n", key, Integer(fire_time), NODE, Process.pid, Time.now.to_f)
              File.open(RECORD, File::WRONLY | File::APPEND | File::CREAT, 0o644) do |f|
                f.syswrite(line)
              end
            end
          end
        RUBY
      end

      # Figures from the record: every line is one run.
      def analyse(record, jobs, started_at, stopped_at, margin)
        lines = File.exist?(record) ? File.readlines(record, chomp: true) : []
        records = lines.map(&:split).select { |f| f.size == 5 }
                       .map { |k, t, n, pid, at| [k, Integer(t), n, Integer(pid), Float(at)] }
        runs = records.map { |k, t, _n, _pid, _at| [k, t] }
        counts = runs.tally
        duplicates = counts.select { |_, c| c > 1 }.map { |(k, t), c| "#{k} #{t} (#{c} runs)" }
        first = runs.map(&:last).select { |t| t >= started_at.to_i }.min
        window = nil
        expected = covered = 0
        if first
          from = first + margin
          to = stopped_at.to_i - margin
          window = [from, to]
          keys = Array.new(jobs) { |i| job_key(i) }
          (from..to).each do |t|
            keys.each do |k|
              expected += 1
              covered += 1 if counts.key?([k, t])
            end
          end
        end
        { dispatches: runs.size, duplicates: duplicates, expected: expected, covered: covered,
          window: window, records: records }
      end
    end
  end
end
