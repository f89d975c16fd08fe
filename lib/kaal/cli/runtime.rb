# frozen_string_literal: true

require "fileutils"
require "json"

module Kaal
  class CLI
    # The runtime commands of the CLI: init, start, status, tick, validate,
    # migrate. Included into Kaal::CLI (their COMMANDS entries live there).
    module Runtime
      # backend_config written by `kaal init --backend=NAME`.
      INIT_BACKEND_CONFIG = {
        "memory" => " {}",
        "redis" => "\n    url: redis://127.0.0.1:6379/0",
        "sqlite" => "\n    url: db/kaal.sqlite3",
        "postgres" => "\n    url: postgres://127.0.0.1:5432/my_app",
        "mysql" => "\n    url: mysql2://127.0.0.1:3306/my_app"
      }.freeze
      INIT_BACKENDS = INIT_BACKEND_CONFIG.keys.freeze

      private

      # -- init ------------------------------------------------------------------

      def cmd_init(args, opts)
        no_arguments(args, "init")
        backend = (opts[:backend] || "memory").to_s.downcase
        unless INIT_BACKENDS.include?(backend)
          raise UsageError, "init: --backend must be one of #{INIT_BACKENDS.join(", ")}, got #{backend.inspect}"
        end

        config_path = opts[:config] || "config/kaal.yml"
        scheduler_path = File.join(File.dirname(config_path), "kaal-scheduler.yml")
        existing = [config_path, scheduler_path].select { |p| File.exist?(p) }
        if existing.any? && !opts[:force]
          raise UsageError, "init: #{existing.join(" and ")} already exist#{"s" if existing.size == 1} " \
                            "(nothing written; pass --force to overwrite)"
        end

        FileUtils.mkdir_p(File.dirname(config_path))
        File.write(config_path, init_config(backend, scheduler_path))
        File.write(scheduler_path, INIT_SCHEDULER)
        @out.puts "wrote #{config_path} (backend #{backend})"
        @out.puts "wrote #{scheduler_path} (uncomment the example job, then `kaal start --require ./jobs.rb`)"
        if %w[postgres mysql].include?(backend)
          @out.puts "next: point backend_config.url (or KAAL_BACKEND_URL) at your database, then run `kaal migrate` " \
                    "once to create the kaal tables"
        elsif backend == "sqlite"
          FileUtils.mkdir_p("db")
          @out.puts "the SQLite file db/kaal.sqlite3 and its tables are created on first use"
        end
        0
      end

      def init_config(backend, scheduler_path)
        <<~YAML
          # kaal configuration. `defaults:` apply in every environment; the section
          # named by KAAL_ENV, RAILS_ENV, RACK_ENV or APP_ENV (else development) is
          # merged over them. ERB works (<%= ENV["..."] %>). Every option can also be
          # set in the environment as KAAL_<OPTION> (KAAL_TICK_INTERVAL=1), and
          # KAAL_BACKEND_URL overrides backend_config.url.
          defaults:
            backend: #{backend}
            scheduler_config_path: #{scheduler_path}
            backend_config:#{INIT_BACKEND_CONFIG.fetch(backend)}
            namespace: kaal
            # tick_interval: 5          # seconds between two ticks
            # window_lookback: 120      # seconds a recovering node looks back
            # lease_ttl: 125            # >= window_lookback + tick_interval
            # time_zone: UTC            # default zone of the cron expressions
            # catch_up: latest          # missed runs at start: latest | all | none
            # worker_threads: 5         # threads running plain Ruby jobs
            # shutdown_timeout: 30      # seconds `kaal start` waits for running jobs on TERM
            # delayed_job_allowed_class_prefixes: [MyApp::Jobs]

          development: {}

          test: {}

          production: {}
        YAML
      end

      INIT_SCHEDULER = <<~YAML
        # Recurring jobs. Each job fires at most once per (key, fire time) across
        # every node running `kaal start` against the same backend.
        #
        # Placeholders in args/kwargs are filled at dispatch: {{idempotency_key}},
        # {{key}}, {{fire_time.iso8601}}, {{fire_time.unix}} (an Integer when it is
        # the whole value). A kwargs idempotency_key: "" is filled with the key too.
        defaults:
          jobs: []
          # jobs:
          #   - key: "reports:weekly_summary"
          #     cron: "0 9 * * 1"            # 5 fields, or 6 with seconds first
          #     job_class: "WeeklySummaryJob"
          #     enabled: true
          #     queue: "default"
          #     time_zone: "UTC"
          #     catch_up: latest             # latest | all | none
          #     args: ["{{fire_time.iso8601}}"]
          #     kwargs:
          #       idempotency_key: ""

        development: {}

        test: {}

        production: {}
      YAML

      # -- start -----------------------------------------------------------------

      def cmd_start(args, opts)
        no_arguments(args, "start")
        boot(opts, load_jobs: :if_present)
        observability = start_observability(opts)
        reader, writer = IO.pipe
        previous = %w[TERM INT HUP].to_h do |sig|
          [sig, trap(sig) { writer.write_nonblock(sig[0], exception: false) }]
        end
        Kaal.start!
        announce_observability(observability)
        if Kaal.configuration.backend == "memory"
          Kaal.logger.warn("backend memory keeps claims in this process only: run a single node, or use redis, " \
                           "postgres, mysql or sqlite to share them")
        end
        @err.flush
        wait_for_signal(reader)
        stop_gracefully(reader)
      ensure
        stop_observability(observability)
        previous&.each { |sig, handler| trap(sig, handler || "DEFAULT") }
        reader&.close
        writer&.close
      end

      # Blocks until TERM/INT (the trap handlers only write to the pipe) or
      # the scheduler thread dies. HUP reloads the scheduler file and goes on.
      def wait_for_signal(reader)
        loop do
          ready = IO.select([reader], nil, nil, 1)
          if ready
            sig = reader.read_nonblock(1, exception: false)
            next reload_on_hup if sig == "H"

            Kaal.logger.info("received #{sig == "T" ? "TERM" : "INT"}: finishing the current tick and running jobs " \
                             "(send it again to exit at once)")
            return
          end
          raise Kaal::Error, "the scheduler thread stopped unexpectedly" unless Kaal.running?
        end
      end

      def reload_on_hup
        path = Kaal.registry.file_path
        unless path
          Kaal.logger.warn("received HUP: no scheduler file is loaded, nothing to reload")
          return
        end
        Kaal.logger.info("received HUP: reloading #{path} (config/kaal.yml is read only at start)")
        return if Kaal.reload_scheduler_file! || File.exist?(path)

        Kaal.logger.error("#{path} does not exist: kept the previous jobs")
      end

      def stop_gracefully(reader)
        result = nil
        stopper = Thread.new { result = Kaal.stop! }
        until stopper.join(0.1)
          next unless IO.select([reader], nil, nil, 0)
          next if reader.read_nonblock(1, exception: false) == "H" # no reload while stopping

          Kaal.logger.warn("second signal: exiting now")
          @out.flush
          exit!(1)
        end
        Kaal.logger.info(result ? "stopped cleanly" : "stopped; some jobs were still running at the shutdown timeout")
        0
      end

      # -- status ----------------------------------------------------------------

      def cmd_status(args, opts)
        no_arguments(args, "status")
        boot(opts, load_jobs: :required, quiet: true)
        config = Kaal.configuration
        report = {
          version: Kaal::VERSION, environment: ConfigFile.environment(opts[:env]), node: Kaal.node_id,
          settings: config.to_h, jobs: job_rows, backend: nil
        }
        begin
          backend = Kaal.backend
          backend.ping
          now = Kaal::Clock.now.floor
          report[:backend] = {
            reachable: true,
            nodes: backend.nodes(since: now - config.heartbeat_ttl.ceil).map { |n| node_row(n) },
            recent_dispatches: backend.dispatches(limit: 10).map { |d| dispatch_row(d) },
            claimed_not_dispatched: backend.dispatches(status: "claimed", limit: 10)
                                           .select { |d| d[:claimed_at].to_i < now - config.lease_ttl }
                                           .map { |d| dispatch_row(d) },
            delayed_pending: backend.delayed_count,
            stored_schedules: stored_schedules_report
          }
          layout = backend.layout
          report[:backend].merge!(layout: layout, migrate_due: layout == "1+2") if layout
        rescue Kaal::BackendError => e
          report[:backend] = { reachable: false, error: e.message }
        end
        report[:health] = status_health(report[:backend], config)
        opts[:json] ? @out.puts(JSON.pretty_generate(report)) : print_status(report)
        return 0 if report[:backend][:reachable]

        @err.puts "kaal: backend #{config.backend} unreachable: #{report[:backend][:error]}"
        1
      end

      STATUS_SCHEDULES = 20 # stored schedules listed by `kaal status` (all: `kaal schedules list`)

      # A store whose tables predate stored schedules (not migrated yet) is
      # reported here, not as an unreachable backend.
      def stored_schedules_report
        schedules = Kaal.schedules
        rows = schedules.list(limit: STATUS_SCHEDULES).map { |r| r.merge(updated_at: r[:updated_at].iso8601) }
        { count: rows.size < STATUS_SCHEDULES ? rows.size : schedules.count, first: rows }
      rescue Kaal::ConnectionError
        raise
      rescue Kaal::BackendError => e
        { count: nil, first: [], error: e.message }
      end

      def job_rows
        Kaal.jobs.map do |j|
          j.merge(next_fire_time: j[:next_fire_time]&.iso8601)
        end
      rescue Kaal::BackendError
        []
      end

      def node_row(row)
        info = begin
          row[:info] ? JSON.parse(row[:info]) : {}
        rescue JSON::ParserError
          {}
        end
        { node: row[:node], last_seen: iso(row[:last_seen]), info: info }
      end

      def dispatch_row(row)
        { key: row[:key], fire_time: iso(row[:fire_time]), status: row[:status], node: row[:node],
          error: row[:error] }.compact
      end

      def iso(value)
        case value
        when Integer then Time.at(value).utc.iso8601
        when Time then value.utc.iso8601
        else value
        end
      end

      def print_status(report)
        @out.puts "kaal #{report[:version]} (environment #{report[:environment]}, node #{report[:node]})"
        @out.puts "", "Settings:"
        width = report[:settings].keys.map(&:size).max
        report[:settings].each do |k, v|
          @out.puts format("  %-#{width}s  %s", k, v.is_a?(String) ? v : v.inspect)
        end
        @out.puts "", "Jobs (#{report[:jobs].size}):"
        if report[:jobs].empty?
          @out.puts "  (none)"
        else
          rows = report[:jobs].map do |j|
            [j[:key], j[:cron], j[:time_zone], j[:next_fire_time], j[:state], j[:job_class].to_s]
          end
          table(rows, %w[KEY CRON ZONE NEXT_FIRE_TIME STATE CLASS])
        end
        h = report[:health]
        @out.puts "", "Health: #{h[:healthy] ? "ok" : "unhealthy (#{h[:reason]})"}"
        b = report[:backend]
        unless b[:reachable]
          @out.puts "", "Backend: UNREACHABLE (#{b[:error]})"
          return
        end
        print_layout(b[:layout])
        @out.puts "", "Live nodes (#{b[:nodes].size}):"
        b[:nodes].each { |n| @out.puts "  #{n[:node]}  last seen #{n[:last_seen]}" }
        @out.puts "", "Recent dispatches:"
        @out.puts "  (none)" if b[:recent_dispatches].empty?
        b[:recent_dispatches].each do |d|
          @out.puts "  #{d[:key]} @ #{d[:fire_time]}  #{d[:status]}  #{d[:node]}#{"  #{d[:error]}" if d[:error]}"
        end
        unless b[:claimed_not_dispatched].empty?
          @out.puts "", "Claimed but never dispatched (the claiming node died):"
          b[:claimed_not_dispatched].each { |d| @out.puts "  #{d[:key]} @ #{d[:fire_time]}  #{d[:node]}" }
        end
        @out.puts "", "Delayed jobs pending: #{b[:delayed_pending]}"
        print_stored_schedules(b[:stored_schedules])
      end

      # Redis only (docs/redis.md, "Key layout and upgrades").
      def print_layout(layout)
        return unless layout

        @out.puts "", "Redis key layout: #{layout}"
        return unless layout == "1+2"

        @out.puts "  a rolling upgrade from the previous release's keys is in progress: once every node runs " \
                  "kaal #{Kaal::VERSION}, run `kaal migrate` (nodes of this release then stop reading the old keys)"
      end

      def print_stored_schedules(stored)
        return @out.puts("", "Stored schedules: unavailable (#{stored[:error]})") if stored[:error]

        @out.puts "", "Stored schedules (#{stored[:count]}):"
        return @out.puts("  (none)") if stored[:first].empty?

        rows = stored[:first].map { |r| [r[:key], r[:cron], r[:time_zone] || "-", r[:state], r[:job_class]] }
        table(rows, %w[KEY CRON ZONE STATE CLASS])
        more = stored[:count] - stored[:first].size
        @out.puts "  ... #{more} more (kaal schedules list)" if more.positive?
      end

      def table(rows, header)
        all = [header] + rows
        widths = header.each_index.map { |i| all.map { |r| r[i].to_s.size }.max }
        all.each { |r| @out.puts "  #{r.each_with_index.map { |c, i| c.to_s.ljust(widths[i]) }.join("  ").rstrip}" }
      end

      # -- tick ------------------------------------------------------------------

      def cmd_tick(args, opts)
        no_arguments(args, "tick")
        boot(opts, load_jobs: :if_present, quiet: opts[:json])
        dispatches = Kaal.tick!
        failed = Kaal.scheduler.failures.positive?
        if opts[:json]
          @out.puts JSON.generate(dispatches: dispatches.map(&:to_h), backend_ok: !failed)
        elsif dispatches.empty?
          @out.puts(failed ? "nothing dispatched: the backend is unreachable" : "nothing due")
        else
          dispatches.each do |d|
            what = d.recurring? ? "#{d.key} @ #{d.fire_time.getutc.iso8601}" : "delayed #{d.job_id}"
            @out.puts "#{what}  #{d.status}#{"  #{d.error}" if d.error}"
          end
        end
        if failed
          @err.puts "kaal: tick gave up: backend #{Kaal.configuration.backend} unreachable; nothing was dispatched " \
                    "(kaal tick makes one attempt; run it again, or use kaal start, which retries)"
          return 1
        end
        0
      ensure
        Kaal.stop!(timeout: 5)
      end

      # -- validate / migrate ----------------------------------------------------

      # Checks what `start` would, without contacting the backend: both files,
      # the options, the backend settings (URL, TLS, compiled in) and every
      # job, for every environment section of the files (--env: that one).
      def cmd_validate(args, opts)
        no_arguments(args, "validate")
        config_path = opts[:config] || "config/kaal.yml"
        current = ConfigFile.environment(opts[:env])
        others = opts[:env] ? [] : validate_environments(config_path, current)
        results = ([current] + others).map { |env| validate_environment(config_path, env, opts, named: env != current) }
        mine = results.first
        validate_environment(config_path, current, opts) unless others.empty? # leave the current one loaded
        if opts[:json]
          @out.puts JSON.generate(ok: true, config: config_path, scheduler: mine[:scheduler],
                                  backend: mine[:backend], jobs: mine[:jobs].map(&:to_h),
                                  environments: results.map { |r| r[:env] })
        else
          jobs = mine[:jobs]
          file = mine[:scheduler] ? "#{mine[:scheduler]} (#{jobs.size} job#{"s" unless jobs.size == 1})" : "no scheduler file"
          code = mine[:code_jobs].positive? ? ", #{mine[:code_jobs]} job#{"s" unless mine[:code_jobs] == 1} registered in code" : ""
          @out.puts "ok: #{config_path} (backend #{mine[:backend]}), #{file}#{code}"
          @out.puts "also checked: environment#{"s" unless others.size == 1} #{others.join(", ")}" unless others.empty?
        end
        0
      end

      # The environment sections of the configuration file and of the
      # scheduler file it names, other than +current+.
      def validate_environments(config_path, current)
        names = File.file?(config_path) ? ConfigFile.environment_sections(config_path) : []
        Kaal.load_config_file!(config_path, env: current) # the scheduler file path
        path = Kaal.scheduler_file_path
        names |= ConfigFile.environment_sections(path) if File.file?(path)
        names - [current]
      end

      # Errors of an environment other than the current one (+named+) say which.
      def validate_environment(config_path, env, opts, named: false)
        Kaal.load_config_file!(config_path, env: env)
        quiet_logger
        scheduler_path = scheduler_file!
        check_env_option!(opts, [config_path, scheduler_path])
        jobs = scheduler_path ? Kaal.load_scheduler_file!(scheduler_path, env: env) : []
        Kaal.backend # URL, TLS, compiled in: what start would refuse (nothing is connected)
        { env: env, scheduler: scheduler_path, jobs: jobs, code_jobs: Kaal.registry.size - jobs.size,
          backend: Kaal.configuration.backend }
      rescue Kaal::ConfigurationError => e
        raise unless named

        raise e.class, "#{e.message} (environment #{env})"
      end

      # The scheduler file's path, or nil when it is missing but jobs are
      # registered in code (--require, a Rails app). Missing with no job at
      # all is a configuration error, for validate and status alike.
      def scheduler_file!
        path = Kaal.scheduler_file_path
        return path if File.exist?(path)
        return nil if Kaal.registry.size.positive?

        raise Kaal::ConfigurationError, "#{path}: scheduler file not found and no job is registered in code " \
                                        "(run `kaal init`, set scheduler_config_path, or pass --config PATH)"
      end

      # --env NAME must name a section of the configuration or the scheduler
      # file, when they have environment sections at all.
      def check_env_option!(opts, paths)
        name = opts[:env]
        return if name.nil?

        files = paths.compact.select { |p| File.file?(p) }
        sections = files.map { |p| ConfigFile.environment_sections(p) }
        return if sections.all?(&:empty?) || sections.any? { |s| s.include?(name) }

        raise Kaal::ConfigurationError, "--env #{name}: no section #{name.inspect} in #{files.join(" or ")} " \
                                        "(sections: #{sections.flatten.uniq.join(", ")})"
      end

      def cmd_migrate(args, opts)
        no_arguments(args, "migrate")
        boot(opts, load_jobs: false)
        config = Kaal.configuration
        sql = %w[sqlite postgres mysql].include?(config.backend)
        before = Kaal.backend.schema_version if sql
        Kaal.backend.migrate
        line = "migrated: backend #{config.backend}, namespace #{config.namespace}"
        if sql
          after = Kaal.backend.schema_version
          line += before == after ? " (schema step #{after}, nothing to do)" : " (schema step #{before} -> #{after})"
        end
        @out.puts line
        0
      end

      # -- shared ----------------------------------------------------------------

      # Boots the app (config/environment.rb in a Rails directory), loads the
      # configuration file and, per +load_jobs+, the scheduler file
      # (:if_present, or :required: see scheduler_file!). When the booted app
      # set kaal up through Kaal::Integration (kaal-rails), its configuration
      # and jobs stand, unless --config or --env ask otherwise.
      def boot(opts, load_jobs:, quiet: false)
        boot_rails
        if opts[:config].nil? && opts[:env].nil? && Kaal::Integration.set_up?
          quiet_logger if quiet
          scheduler_file! if load_jobs == :required
          return
        end

        config_path = opts[:config] || "config/kaal.yml"
        if opts[:config] || File.exist?(config_path) || !Kaal.configured?
          Kaal.load_config_file!(config_path, env: opts[:env])
        end
        quiet_logger if quiet # warnings (to stderr) only, also those of loading the jobs
        path = Kaal.scheduler_file_path
        check_env_option!(opts, [config_path, path])
        return unless load_jobs

        path = scheduler_file! if load_jobs == :required
        Kaal.load_scheduler_file!(path, env: opts[:env]) if path && File.exist?(path)
      end

      def boot_rails
        return unless File.exist?("config/environment.rb")
        return if defined?(::Rails) && ::Rails.respond_to?(:application) && ::Rails.application&.initialized?

        require File.expand_path("config/environment.rb")
      end

      def quiet_logger
        Kaal.logger = Kaal::Log.build(@err).tap { |l| l.level = Logger::WARN }
      end
    end
  end
end
