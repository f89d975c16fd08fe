# frozen_string_literal: true

require "fileutils"
require "json"
require "time"
require "rbconfig"
require "securerandom"
require "tmpdir"
require "yaml"

require_relative "server"
require_relative "tls_files"

module Kaal
  module Chaos
    ROOT = File.expand_path("../..", __dir__)
    BIN_KAAL = File.join(ROOT, "bin", "kaal")
    LIB = File.join(ROOT, "lib")
    JOBS_RB = File.join(__dir__, "jobs.rb")
    SIDEKIQ_JOBS_RB = File.join(__dir__, "sidekiq_jobs.rb")
    SOLID_QUEUE_APP_RB = File.join(__dir__, "solid_queue_app.rb")
    BACKENDS = %w[redis postgres mysql sqlite].freeze
    # Who runs the jobs: kaal's worker pool (plain Ruby jobs, at most once),
    # or real Sidekiq / solid_queue workers fed by the exactly-once hand-off.
    TARGETS = %w[kaal sidekiq solid_queue].freeze
    SIDEKIQ_QUEUE = "chaos"
    # memory is the harness control: every node has its own store, so every
    # node runs every job and the report must show duplicates.
    CONTROL = "memory"

    # What one run does (bin/chaos options).
    Options = Struct.new(
      :backend, :nodes, :jobs, :duration, :seed, :skew, :server_restart, :url, :json, :dir,
      :kill_every, :restart_after, :outage, :outages, :margin, :window_lookback, :quiet, :lossy, :spare_node0,
      :from_ready, :target, :workers, :tls,
      :upgrade_from, :migrate_at,
      keyword_init: true
    ) do
      def self.defaults
        new(backend: "redis", nodes: 5, jobs: 100, duration: 60, seed: nil, skew: 2.0, server_restart: true,
            url: nil, json: false, dir: nil, kill_every: 3.0..8.0, restart_after: 0.2..2.0, outage: 3.0..6.0,
            outages: nil, margin: 3, window_lookback: 15, quiet: 6.0, lossy: false, spare_node0: false, from_ready: false,
            target: "kaal", workers: 2, tls: false, upgrade_from: nil, migrate_at: nil)
      end

      # The claim must outlive the window a node looks back over, also as
      # seen from a node whose clock is `skew` seconds off in either
      # direction: lease_ttl >= window_lookback + tick_interval + 2 * skew.
      def lease_ttl
        window_lookback + 1 + (2 * skew).ceil
      end
    end

    # One `kaal start` process. Each (re)start is a new incarnation with its
    # own node id ("node-2.3": node 2, third start), so the dispatch log
    # says which incarnation claimed a pair. With --upgrade-from, a node's
    # first incarnation runs the previous release's checkout ("node-2.1-old")
    # and every restart the current one: a rolling upgrade.
    class Node
      attr_reader :index, :pid, :incarnation, :offset, :started_mono, :last_status

      def initialize(index, run)
        @index = index
        @run = run
        @generation = 0
        @pid = nil
      end

      def name
        "node-#{@index}"
      end

      def old_release?
        !@run.upgrade_from.nil? && @generation == 1
      end

      def start(offset)
        @generation += 1
        @offset = offset
        @incarnation = "#{name}.#{@generation}#{"-old" if old_release?}"
        env = {
          "KAAL_ENV" => "chaos",
          "KAAL_NODE_ID" => @incarnation,
          "KAAL_CHAOS_NODE" => @incarnation,
          "KAAL_CHAOS_RECORD_DIR" => @run.record_dir,
          "KAAL_TEST_CLOCK_OFFSET" => format("%.3f", offset)
        }.merge(@run.target_env)
        log = File.join(@run.log_dir, "#{name}.log")
        File.open(log, "a") { |f| f.puts "==== chaos: start #{@incarnation} clock offset #{format("%+.3f", offset)}s" }
        @started_mono = Clock.monotonic
        @ready = false
        lib, bin = old_release? ? [File.join(@run.upgrade_from, "lib"), File.join(@run.upgrade_from, "bin", "kaal")] : [LIB, BIN_KAAL]
        @pid = Process.spawn(env, RbConfig.ruby, *@run.preload, "-I", lib, bin, "start", "--require", @run.jobs_rb,
                             chdir: @run.dir, in: File::NULL, out: [log, "a"], err: [log, "a"], pgroup: true)
      end

      # true once this incarnation logged "scheduler started" (its code is
      # loaded and it ticks); the log is read on from where the last look
      # stopped.
      def ready?
        return @ready if @ready || @pid.nil?

        path = File.join(@run.log_dir, "#{name}.log")
        File.open(path) do |f|
          f.seek(@log_seen ||= 0)
          chunk = f.read
          @log_seen += chunk.bytesize
          @ready = chunk.include?("scheduler started: node #{@incarnation},")
        end
        @ready
      rescue Errno::ENOENT
        false
      end

      def alive?
        return false unless @pid

        done, status = Process.waitpid2(@pid, Process::WNOHANG)
        return true unless done

        @last_status = status
        @pid = nil
        false
      rescue Errno::ECHILD
        @pid = nil
        false
      end

      def signal(sig)
        Process.kill(sig, @pid) if @pid
      rescue Errno::ESRCH
        nil
      end

      # SIGKILL and reap; true when it was running.
      def kill!
        return false unless alive?

        signal("KILL")
        reap(10)
        true
      end

      # Exit status, or nil when it is still running after +seconds+.
      def reap(seconds)
        return @last_status unless @pid

        deadline = Clock.monotonic + seconds
        loop do
          done, status = Process.waitpid2(@pid, Process::WNOHANG)
          if done
            @pid = nil
            return @last_status = status
          end
          return nil if Clock.monotonic > deadline

          sleep 0.05
        end
      rescue Errno::ECHILD
        @pid = nil
        @last_status
      end

      def log_tail(lines = 30)
        path = File.join(@run.log_dir, "#{name}.log")
        File.exist?(path) ? File.readlines(path).last(lines).join : ""
      end
    end

    # One real worker process of the target's queue (--target sidekiq: a
    # Sidekiq process; solid_queue: its supervisor), consuming the chaos
    # queue from kaal's own store. Never killed: the run is about kaal's
    # hand-off, not about the queue's own delivery (a SIGKILLed Sidekiq with
    # basic fetch loses the jobs it had taken).
    class Worker
      attr_reader :name, :pid

      def initialize(index, run)
        @name = "#{run.opts.target}-#{index}"
        @run = run
        @pid = nil
      end

      def start
        env = @run.target_env.merge("KAAL_CHAOS_NODE" => @name, "KAAL_CHAOS_RECORD_DIR" => @run.record_dir)
        log = File.join(@run.log_dir, "#{@name}.log")
        command = if @run.opts.target == "sidekiq"
                    [Gem.bin_path("sidekiq", "sidekiq"), "-r", @run.jobs_rb, "-q", SIDEKIQ_QUEUE, "-c", "5", "-t", "8"]
                  else
                    ["-r", @run.jobs_rb, "-e", "SolidQueue::Supervisor.start"]
                  end
        @pid = Process.spawn(env, RbConfig.ruby, *command, chdir: @run.dir, in: File::NULL,
                                                           out: [log, "a"], err: [log, "a"], pgroup: true)
      end

      def alive?
        !@pid.nil? && Process.waitpid(@pid, Process::WNOHANG).nil?
      rescue Errno::ECHILD
        false
      end

      # TERM, then the exit status (SIGKILL after +seconds+).
      def stop(seconds = 20)
        return nil unless @pid

        Process.kill("TERM", @pid)
        deadline = Clock.monotonic + seconds
        loop do
          done, status = Process.waitpid2(@pid, Process::WNOHANG)
          return (@pid = nil) || status if done

          if Clock.monotonic > deadline
            Process.kill("KILL", @pid)
            Process.wait(@pid)
            @pid = nil
            return nil
          end
          sleep 0.05
        end
      rescue Errno::ESRCH, Errno::ECHILD
        @pid = nil
      end
    end

    # Makes the SQLite file unavailable: another process holds an exclusive
    # write lock on it (BEGIN EXCLUSIVE) for a few seconds, so every claim
    # fails with SQLITE_BUSY after the backend's busy timeout.
    class SqliteLock
      SCRIPT = <<~'RUBY'
        require "sqlite3"
        db = SQLite3::Database.new(ARGV[0])
        db.busy_timeout = 30_000
        db.execute("BEGIN EXCLUSIVE")
        $stdout.puts "locked"
        $stdout.flush
        sleep Float(ARGV[1])
        db.execute("ROLLBACK")
        db.close
        $stdout.puts "unlocked"
      RUBY

      def self.hold(path, seconds)
        reader, writer = IO.pipe
        pid = Process.spawn(RbConfig.ruby, "-e", SCRIPT, path, seconds.to_s, out: writer, in: File::NULL)
        writer.close
        line = reader.gets
        raise "sqlite lock holder failed to take the lock" unless line == "locked\n"

        [pid, reader]
      end
    end

    # One chaos run: N nodes on one backend, nodes SIGKILLed and restarted,
    # the backend's server crashed and restarted, skewed clocks; then the
    # analysis of the jobs' own records against the dispatch log.
    class Run
      attr_reader :opts, :dir, :record_dir, :log_dir, :events, :namespace

      # SQLite waits busy_timeout (5 s by default) for a lock: hold it longer,
      # so the claims fail and the nodes must fail closed, not merely wait.
      SQLITE_OUTAGE = 7.0..10.0

      # The previous release's checkout (--upgrade-from), or nil.
      def upgrade_from
        @opts.upgrade_from
      end

      def initialize(opts, progress: $stderr)
        @opts = opts
        @opts.target ||= "kaal"
        @opts.outage = SQLITE_OUTAGE if opts.backend == "sqlite" && opts.outage == Options.defaults.outage
        @opts.seed ||= Random.new_seed % 1_000_000
        @rng = Random.new(@opts.seed)
        @progress = progress
        @events = []
        @crashes = []
        @hangs = []
        @kills = 0
        @outages = []
        @namespace = "kaal-chaos-#{SecureRandom.hex(5)}"
      end

      def run
        setup_dirs
        @server = start_server
        @backend_config = backend_config
        migrate unless @opts.upgrade_from # the previous release's nodes come first
        write_app
        @nodes = Array.new(@opts.nodes) { |i| Node.new(i, self) }
        @started_at = Time.now
        @t0 = Clock.monotonic
        start_workers
        @nodes.each { |n| start_node(n, initial_offset(n.index)) }
        wait_ready if @opts.from_ready
        drive
        @stopped_at = Time.now
        stop_nodes
        drain_workers
        report = analyse
        File.write(File.join(@dir, "report.json"), JSON.pretty_generate(report))
        File.write(File.join(@dir, "report.txt"), Report.text(report))
        report
      ensure
        @nodes&.each { |n| n.kill! if n.pid }
        @workers&.each { |w| w.stop(5) if w.pid }
        @lock_pid && (Process.kill("KILL", @lock_pid) rescue nil) && (Process.wait(@lock_pid) rescue nil)
        @server&.stop
      end

      def sidekiq?
        @opts.target == "sidekiq"
      end

      def solid_queue?
        @opts.target == "solid_queue"
      end

      # A real queue's workers run the jobs (the hand-off targets).
      def queue_target?
        sidekiq? || solid_queue?
      end

      # --target solid_queue: pg is loaded before kaal, so the precompiled pg
      # gem's own libpq is the one the process resolves (the order kaal
      # itself now ensures; the 10-minute run in docs/guarantee.md was made
      # with this flag, before that fix).
      def preload
        solid_queue? ? %w[-rpg] : []
      end

      def jobs_rb
        { "sidekiq" => SIDEKIQ_JOBS_RB, "solid_queue" => SOLID_QUEUE_APP_RB }.fetch(@opts.target, JOBS_RB)
      end

      # Environment of the nodes and workers: Sidekiq's client and server
      # find the Redis of kaal's backend through REDIS_URL; the solid_queue
      # app its database through DATABASE_URL, its root in the run dir.
      def target_env
        if sidekiq? then { "REDIS_URL" => url }
        elsif solid_queue?
          # pool: the worker's threads plus solid_queue's own
          { "DATABASE_URL" => "#{url}#{url.include?("?") ? "&" : "?"}pool=20", "KAAL_CHAOS_APP_ROOT" => @dir,
            "RAILS_ENV" => "development" }
        else {}
        end
      end

      private

      def say(message)
        @progress&.puts(format("chaos: t+%6.1fs %s", @t0 ? Clock.monotonic - @t0 : 0.0, message))
        @progress&.flush
      end

      def event(kind, **data)
        t = @t0 ? (Clock.monotonic - @t0).round(2) : 0.0
        @events << { t: t, at: Time.now.to_f.round(3), kind: kind }.merge(data)
      end

      def setup_dirs
        @dir = File.expand_path(@opts.dir || Dir.mktmpdir("kaal-chaos-#{@opts.backend}-"))
        FileUtils.mkdir_p(@dir)
        File.chmod(0o755, @dir) # PostgreSQL runs as the postgres user under it
        @record_dir = File.join(@dir, "records")
        @log_dir = File.join(@dir, "logs")
        FileUtils.mkdir_p([@record_dir, @log_dir, File.join(@dir, "config")])
      end

      def start_server
        return nil if %w[sqlite memory].include?(@opts.backend) || @opts.url

        @tls = TlsFiles.new(File.join(@dir, "tls")) if @opts.tls
        server = Server.new(@opts.backend, File.join(@dir, "services"), durable: !@opts.lossy, tls: @tls)
        server.start
        say "private #{@opts.backend} server on 127.0.0.1:#{server.port} (#{server.dir})"
        server
      end

      def url
        @opts.url || @server&.url
      end

      def sqlite_path
        @sqlite_path ||= @opts.url || File.join(@dir, "kaal.sqlite3")
      end

      def backend_config
        case @opts.backend
        when "sqlite" then { "path" => sqlite_path }
        when "memory" then {}
        else @tls ? { "url" => url, "ssl_params" => { "ca_file" => @tls.ca } } : { "url" => url }
        end
      end

      def handle
        @handle ||= Kaal::Backend.build(@opts.backend, namespace: @namespace,
                                                       config: @backend_config.transform_keys(&:to_sym))
      end

      def migrate
        handle.migrate
        handle.close
        return unless solid_queue?

        # solid_queue's tables, from the schema the gem ships, in the same database
        schema = File.join(Gem::Specification.find_by_name("solid_queue").full_gem_path,
                           "lib/generators/solid_queue/install/templates/db/queue_schema.rb")
        env = target_env.merge("KAAL_CHAOS_NODE" => "setup", "KAAL_CHAOS_RECORD_DIR" => @record_dir)
        ok = system(env, RbConfig.ruby, "-r", SOLID_QUEUE_APP_RB, "-e", "load #{schema.inspect}", chdir: @dir,
                    out: File.join(@log_dir, "queue-schema.log"), err: %i[child out])
        raise "solid_queue schema failed (#{File.join(@log_dir, "queue-schema.log")})" unless ok
      end

      def write_app
        config = {
          "backend" => @opts.backend,
          "backend_config" => @backend_config,
          "namespace" => @namespace,
          "tick_interval" => 1,
          "window_lookback" => @opts.window_lookback,
          "lease_ttl" => @opts.lease_ttl,
          "max_backoff" => 2,
          "shutdown_timeout" => 10,
          "scheduler_config_path" => "config/kaal-scheduler.yml"
        }
        File.write(File.join(@dir, "config", "kaal.yml"), YAML.dump("defaults" => config))
        jobs = Array.new(@opts.jobs) do |i|
          job = { "key" => Chaos.job_key(i), "cron" => "* * * * * *", "job_class" => "KaalChaosJob",
                  "args" => ["{{key}}", "{{fire_time.unix}}"] }
          job.merge!("job_class" => "KaalChaosSidekiqJob", "queue" => SIDEKIQ_QUEUE, "handoff" => "atomic") if sidekiq?
          job.merge!("job_class" => "KaalChaosSolidQueueJob", "queue" => SIDEKIQ_QUEUE, "handoff" => "atomic") if solid_queue?
          job
        end
        File.write(File.join(@dir, "config", "kaal-scheduler.yml"), YAML.dump("defaults" => { "jobs" => jobs }))
        return unless solid_queue?

        queue = { "dispatchers" => [{ "polling_interval" => 1, "batch_size" => 500 }],
                  "workers" => [{ "queues" => "*", "threads" => 5, "processes" => @opts.workers, "polling_interval" => 0.1 }] }
        File.write(File.join(@dir, "config", "queue.yml"), YAML.dump("development" => queue))
      end

      # Node 0 keeps the true time; the others start at +skew and -skew
      # (alternating), and draw a random offset in [-skew, +skew] at each
      # restart.
      def initial_offset(index)
        return 0.0 if index.zero? || @opts.skew.zero?

        index.odd? ? @opts.skew : -@opts.skew
      end

      def random_offset(index)
        return 0.0 if index.zero? || @opts.skew.zero?

        (@rng.rand * 2 - 1) * @opts.skew
      end

      def start_node(node, offset)
        node.start(offset)
        event("start", node: node.incarnation, pid: node.pid, offset: offset.round(3))
      end

      # Outage start times (seconds after t0), spread over the middle of the
      # run, none in the last quiet seconds.
      def outage_plan
        return [] unless @opts.server_restart && @opts.backend != CONTROL
        return [] if @opts.url && @opts.backend != "sqlite" # not our server

        count = @opts.outages || [1, (@opts.duration / 120.0).round].max
        span_lo = [@opts.duration * 0.2, 4].max
        span_hi = @opts.duration - @opts.quiet - @opts.outage.max - 1
        if span_hi <= span_lo
          say "WARNING: --duration #{@opts.duration} is too short for a backend outage (no server restart)"
          return []
        end

        slot = (span_hi - span_lo) / count
        Array.new(count) { |i| span_lo + slot * i + @rng.rand * slot * 0.5 }
      end

      # --from-ready: the run (its length, kills and outages) starts when
      # every node's scheduler has started, so a slow boot (a Rails app per
      # node on a busy machine) does not eat into it. At most 180 s.
      def wait_ready
        deadline = Clock.monotonic + 180
        until @nodes.all?(&:ready?)
          dead = @nodes.find { |n| !n.alive? }
          raise "#{dead.incarnation} exited while loading (#{dead.last_status.inspect}):\n#{dead.log_tail}" if dead
          if Clock.monotonic > deadline
            raise "nodes not ready after 180 s: #{@nodes.reject(&:ready?).map(&:incarnation).join(", ")}"
          end

          sleep 0.1
        end
        @ready_after = (Clock.monotonic - @t0).round(1)
        say "all #{@nodes.size} nodes ready after #{@ready_after}s; the #{@opts.duration}s run starts now"
        @started_at = Time.now
        @t0 = Clock.monotonic
      end

      def drive
        deadline = @t0 + @opts.duration
        plan = outage_plan
        say "#{@opts.nodes} nodes, #{@opts.jobs} jobs every second, #{@opts.duration}s, seed #{@opts.seed}, " \
            "skew +-#{@opts.skew}s, window_lookback #{@opts.window_lookback}s, lease_ttl #{@opts.lease_ttl}s, " \
            "outages at #{plan.map { |t| "t+#{t.round}s" }.join(", ").then { |s| s.empty? ? "none" : s }}; " \
            "run dir #{@dir}"
        next_kill = Clock.monotonic + @rng.rand(@opts.kill_every)
        migrate_at = @opts.migrate_at && @t0 + @opts.migrate_at
        restarts = {} # node => monotonic time to start it again
        outage = nil  # [restart_at, kind]
        while Clock.monotonic < deadline
          sleep 0.1
          now = Clock.monotonic
          if outage.nil? && plan.any? && now - @t0 >= plan.first
            plan.shift
            outage = begin_outage
          elsif outage && now >= outage
            end_outage
            outage = nil
          end
          restart_dead_workers
          if migrate_at && now >= migrate_at
            migrate_at = nil
            upgrade_migrate
          end
          restarts.select { |_, at| now >= at }.each_key do |n|
            restarts.delete(n)
            start_node(n, random_offset(n.index))
          end
          @nodes.each do |n|
            next if restarts.key?(n) || n.alive?

            @crashes << { node: n.incarnation, status: n.last_status.inspect, log_tail: n.log_tail }
            event("crash", node: n.incarnation, status: n.last_status.inspect)
            say "#{n.incarnation} exited on its own (#{n.last_status.inspect}); restarting"
            start_node(n, random_offset(n.index))
          end
          next unless now >= next_kill && now < deadline - @opts.quiet

          candidates = @nodes.reject { |n| restarts.key?(n) }
          # spare_node0: node 0 keeps running through an outage and its
          # catch-up, so a short run's coverage does not hinge on whether
          # every node happened to be restarted while the backend was down
          candidates.reject! { |n| n.index.zero? } if @opts.spare_node0 && (outage || recently_down?)
          # from_ready: only a node whose scheduler runs is killed, and never
          # the last one, so a node still loading its app (seconds, on a
          # busy machine) does not leave the run without any node
          if @opts.from_ready
            ready = @nodes.select { |n| !restarts.key?(n) && n.ready? }
            candidates &= ready
            candidates = [] if ready.size < 2
          end
          # a rolling upgrade: nodes still on the previous release go first
          old = candidates.select(&:old_release?)
          victim = (old.empty? ? candidates : old).sample(random: @rng)
          if victim
            pid = victim.pid
            if victim.kill!
              @kills += 1
              event("kill", node: victim.incarnation, pid: pid)
              say "SIGKILL #{victim.incarnation} (pid #{pid})"
            end
            restarts[victim] = Clock.monotonic + @rng.rand(@opts.restart_after)
          end
          next_kill = Clock.monotonic + @rng.rand(@opts.kill_every)
        end
        end_outage if outage
        restarts.each_key { |n| start_node(n, random_offset(n.index)) }
      end

      # `kaal migrate` of the current release in the middle of the run (nodes
      # of the previous release still running are fenced off by it).
      def upgrade_migrate
        old = @nodes.select { |n| n.pid && n.old_release? }.map(&:incarnation)
        t = Clock.monotonic
        migrate
        @handle = nil
        event("migrate", old_nodes_running: old)
        say "kaal migrate (#{((Clock.monotonic - t) * 1000).round} ms); previous-release nodes still running: " \
            "#{old.empty? ? "none" : old.join(", ")}"
      rescue Kaal::Error => e
        event("migrate_failed", error: e.message)
        say "kaal migrate failed: #{e.class}: #{e.message}"
      end

      def recently_down?
        last = @outages.last
        !last.nil? && last[:up_at] && Time.now.to_f - last[:up_at] < 5
      end

      # Returns the monotonic time the outage ends.
      def begin_outage
        length = @rng.rand(@opts.outage)
        started = Time.now.to_f
        if @opts.backend == "sqlite"
          @lock_pid, @lock_reader = SqliteLock.hold(sqlite_path, length)
          what = "exclusive lock on #{File.basename(sqlite_path)} held by pid #{@lock_pid}"
        else
          pid = @server.crash
          what = "#{@opts.backend} server pid #{pid} #{@opts.backend == "postgres" ? "SIGQUIT (immediate shutdown)" : "SIGKILL"}"
        end
        @outages << { down_at: started, planned: length.round(2), what: what }
        event("outage_start", what: what)
        say "backend outage: #{what}, for ~#{length.round(1)}s"
        Clock.monotonic + length
      end

      def end_outage
        if @opts.backend == "sqlite"
          @lock_reader.gets # "unlocked"
          Process.wait(@lock_pid)
          @lock_reader.close
          @lock_pid = nil
          what = "lock released"
        else
          @server.restart
          what = "#{@opts.backend} restarted on port #{@server.port}"
        end
        @outages.last[:up_at] = Time.now.to_f
        event("outage_end", what: what)
        say "backend back: #{what} (down #{(@outages.last[:up_at] - @outages.last[:down_at]).round(1)}s)"
      end

      # A node TERMed soon after its start may still be loading its code:
      # its death by the signal is no crash. A Rails app (--target
      # solid_queue) loads for longer, and dies of TERM by exit 1 when the
      # signal lands inside a require.
      def booting?(node, status)
        age = Clock.monotonic - node.started_mono
        return age < 40 if solid_queue?

        status.termsig && age < 8
      end

      def stop_nodes
        say "TERM to all nodes"
        @nodes.each { |n| n.signal("TERM") }
        @nodes.each do |n|
          status = n.reap(30)
          if status.nil?
            @hangs << { node: n.incarnation, log_tail: n.log_tail }
            say "#{n.incarnation} did not stop within 30s of TERM: SIGKILL"
            n.kill!
          elsif !status.success? && !booting?(n, status)
            @crashes << { node: n.incarnation, status: status.inspect, log_tail: n.log_tail }
          end
        end
      end

      def start_workers
        return unless queue_target?

        # solid_queue: one supervisor forking --workers worker processes
        @workers = Array.new(sidekiq? ? @opts.workers : 1) { |i| Worker.new(i, self) }
        @workers.each(&:start)
        say "#{@workers.size} #{@opts.target} worker process(es) on queue #{SIDEKIQ_QUEUE} " \
            "(pids #{@workers.map(&:pid).join(", ")})"
      end

      # A worker that exited (solid_queue's supervisor exits when its
      # database goes away) is started again, as a process manager would.
      def restart_dead_workers
        @workers&.each do |w|
          next if w.alive?

          event("worker_restart", node: w.name)
          say "#{w.name} exited; starting it again"
          w.start
        end
      end

      # Jobs still waiting in the target's queue.
      def queued_jobs
        if sidekiq?
          @redis_client ||= RedisClient.new(url: url)
          @redis_client.call("LLEN", "queue:#{SIDEKIQ_QUEUE}")
        else
          # psql, not the pg gem: this process has kaal's libpq loaded (Known gaps)
          # a job failed by solid_queue (claimed by a worker that died in
          # the crash, then pruned) will not run: not waited for
          out, status = Open3.capture2(File.join(Server::PG_BIN, "psql"), url, "-At", "-c",
                                       "SELECT COUNT(*) FROM solid_queue_jobs j WHERE finished_at IS NULL AND NOT " \
                                       "EXISTS (SELECT 1 FROM solid_queue_failed_executions f WHERE f.job_id = j.id)")
          raise "psql failed" unless status.success?

          Integer(out.strip)
        end
      rescue StandardError => e
        @redis_client = nil
        say "queue length unknown: #{e.class}: #{e.message}"
        -1
      end

      # After the nodes stopped: wait until the workers have emptied the
      # queue and the records stop growing (at most 180 s), then stop them.
      # What is still queued then is reported, not counted as run.
      def drain_workers
        return unless @workers

        sidekiq? ? require("redis_client") : require("open3")
        deadline = Clock.monotonic + 180
        last = nil
        stable_since = Clock.monotonic
        loop do
          queued = queued_jobs
          count = Dir[File.join(@record_dir, "*.rec")].sum { |f| File.size(f) }
          if count != last
            last = count
            stable_since = Clock.monotonic
          end
          break if queued.zero? && Clock.monotonic - stable_since > 2
          break if Clock.monotonic > deadline

          restart_dead_workers

          sleep 0.2
        end
        @left_in_queue = queued_jobs
        @redis_client&.close
        say "#{@opts.target} queue drained (#{@left_in_queue} left); TERM to the workers"
        @workers.each do |w|
          status = w.stop(20)
          @crashes << { node: w.name, status: status.inspect, log_tail: "" } unless status&.success?
        end
      end

      # -- analysis --------------------------------------------------------------

      def read_records
        Dir[File.join(@record_dir, "*.rec")].flat_map do |path|
          File.readlines(path, chomp: true).filter_map do |line|
            k, f, n, pid, at = line.split
            next unless at

            [k, Integer(f), n, Integer(pid), Float(at), line.split[5]]
          end
        end
      end

      def analyse
        records = read_records
        by_pair = records.group_by { |k, f, *| [k, f] }
        # A pair that ran under two jids was enqueued twice (a duplicate of
        # kaal's); one jid run twice is Sidekiq's own redelivery.
        reruns = 0
        duplicates = by_pair.select do |_, rs|
          jids = rs.map { |r| r[5] }
          reruns += jids.size - jids.uniq.size if jids.all?
          jids.all? ? jids.uniq.size > 1 : rs.size > 1
        end
        duplicates = duplicates.map do |(k, f), rs|
          { key: k, fire_time: f, runs: rs.map { |_, _, n, pid, at, jid| { node: n, pid: pid, written_at: at, jid: jid }.compact } }
        end
        keys = Array.new(@opts.jobs) { |i| Chaos.job_key(i) }
        first = records.map { |_, f, *| f }.select { |f| f >= @started_at.to_i }.min
        window = nil
        expected = 0
        missing = []
        if first
          window = [first + @opts.margin, @stopped_at.to_i - @opts.margin]
          (window[0]..window[1]).each do |f|
            keys.each do |k|
              expected += 1
              missing << [k, f] unless by_pair.key?([k, f])
            end
          end
        end
        claimed_rows = begin
          handle.dispatches(status: "claimed", limit: 1_000_000).select { |r| r[:key].start_with?("chaos-") }
        rescue Kaal::Error => e
          @log_error = "#{e.class}: #{e.message}"
          []
        end
        claimed = claimed_rows.to_h { |r| [[r[:key], r[:fire_time]], r] }
        never = claimed.reject { |pair, _| by_pair.key?(pair) }
        outcome_unrecorded = claimed.size - never.size
        handed = queue_target? ? handed_off(by_pair) : nil
        lost = missing.map { |k, f| explain(k, f, claimed[[k, f]]) }
        lost_by_reason = lost.group_by { |l| l[:reason] }.transform_values(&:size)
        lateness = records.map { |_, f, _, _, at| at - f }.sort
        offsets = @events.select { |e| e[:kind] == "start" }.to_h { |e| [e[:node], e[:offset]] }
        # (--target sidekiq: the records name the worker, not the node, so
        # there is no node clock to measure on)
        node_lateness = queue_target? ? [] : records.map { |_, f, n, _, at| at + offsets.fetch(n, 0.0) - f }.sort
        handle.close
        {
          backend: @opts.backend, nodes: @opts.nodes, jobs: @opts.jobs, duration: (@stopped_at - @started_at).round(1),
          ready_after: @ready_after,
          seed: @opts.seed, skew: @opts.skew, namespace: @namespace, dir: @dir, lossy_server: @opts.lossy,
          upgrade_from: @opts.upgrade_from, migrate_at: @opts.migrate_at,
          settings: { tick_interval: 1, window_lookback: @opts.window_lookback, lease_ttl: @opts.lease_ttl, max_backoff: 2 },
          kills: @kills, outages: @outages, crashes: @crashes, hangs: @hangs,
          dispatches: records.size, duplicates: duplicates,
          # who wrote the records: node incarnations, or the queue's workers
          runs_by: records.group_by { |_, _, n| n.sub(/\.\d+(-old)?\z/, "") }.transform_values(&:size).sort.to_h,
          window: window, expected: expected, covered: expected - missing.size,
          coverage: expected.zero? ? 0.0 : (100.0 * (expected - missing.size) / expected).round(3),
          claimed_never_dispatched: never.map { |(k, f), r| { key: k, fire_time: f, node: r[:node], claimed_at: r[:claimed_at] } },
          claimed_outcome_unrecorded: outcome_unrecorded, target: @opts.target, handed_off: handed,
          sidekiq_reruns: reruns,
          log_error: @log_error,
          lost: lost, lost_by_reason: lost_by_reason,
          lateness: percentiles(lateness), node_lateness: percentiles(node_lateness),
          events: @events
        }
      end

      # --target sidekiq: the pairs the dispatch log says were handed off
      # (status "dispatched": claim and job written in one step), and those
      # among them that no worker ran.
      def handed_off(by_pair)
        rows = handle.dispatches(status: "dispatched", limit: 10_000_000).select { |r| r[:key].start_with?("chaos-") }
        never_ran = rows.reject { |r| by_pair.key?([r[:key], r[:fire_time]]) }
        { logged: rows.size, never_ran: never_ran.size, left_in_queue: @left_in_queue,
          never_ran_examples: never_ran.first(10).map { |r| { key: r[:key], fire_time: r[:fire_time], node: r[:node] } } }
      rescue Kaal::Error => e
        { error: "#{e.class}: #{e.message}" }
      end

      def percentiles(sorted)
        return {} if sorted.empty?

        pick = ->(q) { sorted[[(q * sorted.size).ceil - 1, 0].max].round(3) }
        { min: sorted.first.round(3), p50: pick.(0.50), p95: pick.(0.95), p99: pick.(0.99), max: sorted.last.round(3) }
      end

      # Why (key, fire) never ran. row: its "claimed" dispatch-log row, if any.
      def explain(key, fire, row)
        if row
          kill = @events.find { |e| e[:kind] == "kill" && e[:node] == row[:node] }
          if kill
            return { key: key, fire_time: fire, reason: "claimed, node killed before dispatch",
                     detail: "claimed by #{row[:node]} at #{row[:claimed_at]}, which was SIGKILLed at " \
                             "#{kill[:at].round(1)} (#{(kill[:at] - fire).round(1)}s after the fire time)" }
          end
          if @outages.any? { |o| row[:claimed_at].to_i.between?(o[:down_at].floor - 3, (o[:up_at] || Float::INFINITY).ceil) }
            return { key: key, fire_time: fire, reason: "claimed, dispatch lost in backend outage",
                     detail: "claimed by #{row[:node]} at #{row[:claimed_at]} just before the backend went down" }
          end
          return { key: key, fire_time: fire, reason: "UNEXPLAINED: claimed, never dispatched",
                   detail: "claimed by #{row[:node]} at #{row[:claimed_at]}, node not killed" }
        end

        reach = @opts.window_lookback - @opts.skew
        outage = @outages.find { |o| fire.between?(o[:down_at].floor - 2, (o[:up_at] || Float::INFINITY).ceil + 4) }
        if queue_target? && (status = (handle.dispatch_status(key, fire) rescue nil)) == "dispatched"
          # in the queue with its claim, but no worker ran it
          if outage
            return { key: key, fire_time: fire, reason: "handed off, lost by the worker's fetch in the server crash",
                     detail: "enqueued before the crash at #{outage[:down_at].round(1)}; a worker's fetch took it " \
                             "from the queue as the server died (the queue's own delivery)" }
          end
          return { key: key, fire_time: fire, reason: "UNEXPLAINED: handed off, never run", detail: "" }
        end
        if outage
          down = ((outage[:up_at] || outage[:down_at]) - outage[:down_at]).round(1)
          return { key: key, fire_time: fire, reason: "never claimed: backend outage",
                   detail: "fire time within the #{down}s outage from #{outage[:down_at].round(1)} (lookback reach #{reach}s)" }
        end
        status = (handle.dispatch_status(key, fire) rescue "unknown")
        if status.nil? && !node_running?(fire)
          return { key: key, fire_time: fire, reason: "never claimed: no node running",
                   detail: "every node was SIGKILLed or still loading its code at the fire time; a starting " \
                           "node catches up the latest missed run only (catch_up: latest)" }
        end
        { key: key, fire_time: fire, reason: status ? "UNEXPLAINED: log says #{status}, no record" : "UNEXPLAINED: never claimed",
          detail: "" }
      end

      # true when some node incarnation had its scheduler running from the
      # fire time until a tick later (from its "scheduler started" log line
      # to its SIGKILL).
      def node_running?(fire)
        @running ||= running_intervals
        @running.any? { |from, to| from <= fire + 0.5 && to > fire + 1.5 }
      end

      def running_intervals
        kills = @events.select { |e| e[:kind] == "kill" }.to_h { |e| [e[:node], e[:at]] }
        Dir[File.join(@log_dir, "node-*.log")].flat_map do |path|
          File.foreach(path).filter_map do |line|
            m = line.match(/\A(\S+) INFO kaal: scheduler started: node (\S+),/)
            next unless m

            [Time.iso8601(m[1]).to_f, kills.fetch(m[2], @stopped_at.to_f)]
          end
        end
      rescue StandardError
        []
      end
    end

    def self.job_key(index)
      format("chaos-%03d", index)
    end

    # The human-readable report.
    module Report
      module_function

      def text(r)
        out = []
        out << "kaal chaos: backend #{r[:backend]}, #{r[:nodes]} nodes, #{r[:jobs]} jobs/s, #{r[:duration]}s, " \
               "seed #{r[:seed]}, skew +-#{r[:skew]}s (#{r[:settings].map { |k, v| "#{k} #{v}" }.join(", ")})" \
               "#{", LOSSY server (no persistence: a crash loses claims)" if r[:lossy_server]}" \
               "#{", rolling upgrade from #{r[:upgrade_from]}" if r[:upgrade_from]}" \
               "#{", kaal migrate at t+#{r[:migrate_at]}s" if r[:upgrade_from] && r[:migrate_at]}"
        out << "  nodes ready #{r[:ready_after]}s after their start (the run counted from then)" if r[:ready_after]
        out << "  SIGKILLs: #{r[:kills]}; backend outages: #{r[:outages].size}" \
               "#{r[:outages].map { |o| " [#{o[:what]}, down #{((o[:up_at] || o[:down_at]) - o[:down_at]).round(1)}s]" }.join}"
        out << "  target: #{r[:target]}" if r[:target] && r[:target] != "kaal"
        out << "  dispatches: #{r[:dispatches]}#{" (runs by the #{r[:target]} workers)" if %w[sidekiq solid_queue].include?(r[:target])}"
        if (h = r[:handed_off])
          out << "  handed off (log status dispatched): #{h[:logged]}, never run by a worker: #{h[:never_ran]}, " \
                 "left in the queue: #{h[:left_in_queue]}, re-runs of one job id: #{r[:sidekiq_reruns]}" \
                 "#{" (log unreadable: #{h[:error]})" if h[:error]}"
          (h[:never_ran_examples] || []).each { |x| out << "    NOT RUN #{x[:key]} @ #{x[:fire_time]} (handed off by #{x[:node]})" }
        end
        out << "  duplicate pairs: #{r[:duplicates].size}"
        r[:duplicates].first(50).each do |d|
          out << "    DUPLICATE #{d[:key]} @ #{d[:fire_time]}: #{d[:runs].map { |x| "#{x[:node]} (pid #{x[:pid]}) at #{x[:written_at]}" }.join(", ")}"
        end
        w = r[:window] ? "#{r[:window][0]}..#{r[:window][1]}" : "none"
        out << "  expected pairs: #{r[:expected]} (fire times #{w}), covered #{r[:covered]}: #{r[:coverage]}% coverage"
        out << "  claimed but never dispatched: #{r[:claimed_never_dispatched].size} " \
               "(plus #{r[:claimed_outcome_unrecorded]} dispatched whose outcome write did not reach the log)"
        out << "    dispatch log unreadable: #{r[:log_error]}" if r[:log_error]
        out << "  lost pairs: #{r[:lost].size}#{r[:lost_by_reason].map { |why, n| "\n    #{n} x #{why}" }.join}"
        r[:lost].group_by { |l| [l[:reason], l[:detail]] }.first(20).each do |(why, detail), ls|
          out << "      #{why}: #{detail} (#{ls.size} pairs, e.g. #{ls.first[:key]} @ #{ls.first[:fire_time]})"
        end
        l = r[:lateness]
        unless l.empty?
          out << format("  lateness (record write - fire time, s): min %<min>.3f p50 %<p50>.3f p95 %<p95>.3f " \
                        "p99 %<p99>.3f max %<max>.3f", l)
        end
        l = r[:node_lateness]
        unless l.nil? || l.empty?
          out << format("  lateness on the dispatching node's own (skewed) clock, s: min %<min>.3f p50 %<p50>.3f " \
                        "p95 %<p95>.3f p99 %<p99>.3f max %<max>.3f", l)
        end
        out << "  node crashes: #{r[:crashes].size}, hangs on TERM: #{r[:hangs].size}"
        (r[:crashes] + r[:hangs]).first(5).each { |c| out << "    #{c[:node]} #{c[:status]}\n#{c[:log_tail].gsub(/^/, "      ")}" }
        out << "  run dir: #{r[:dir]} (logs/, records/, report.json)"
        out << (r[:duplicates].empty? ? "  RESULT: 0 duplicates" : "  RESULT: DUPLICATES FOUND")
        out.join("\n")
      end
    end
  end
end
