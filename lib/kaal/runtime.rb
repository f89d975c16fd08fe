# frozen_string_literal: true

module Kaal
  # The public entry points (README, "Ruby API"). State lives in this module:
  # one configuration, one registry, one backend handle and one scheduler
  # per process, guarded by a lock.
  @lock = Monitor.new
  @configuration = nil
  @registry = Registry.new
  @backend = nil
  @scheduler = nil
  @scheduler_pid = nil
  @schedule_feed = nil
  @logger = nil
  @env_name = nil
  @config_path = nil
  @scheduler_file_mtime = nil
  @start_hooks = []
  NO_KEY = Object.new.freeze # "not given" for the key arguments of unregister/enable/disable
  # Kaal.register's defaults for args: and kwargs:: the empty list and map
  # a Job keeps (no two new objects per call; the same objects, so the
  # previous definition compares equal without looking inside)
  NO_ARGS = Job::EMPTY_LIST
  NO_KWARGS = Job::EMPTY_MAP
  private_constant :NO_KEY, :NO_ARGS, :NO_KWARGS

  class << self
    # -- configuration ---------------------------------------------------------

    def configuration
      @lock.synchronize { @configuration ||= Configuration.new.apply_env }
    end

    # true once Kaal.configure or Kaal.load_config_file! ran.
    def configured?
      !@configuration.nil?
    end

    # Yields the configuration to change it; checks the cross-option rules.
    # Drops the backend handle and scheduler so the next use picks up the new
    # settings. Raises ConfigurationError while the scheduler runs.
    def configure
      @lock.synchronize do
        refuse_while_running("configure")
        config = configuration.dup
        yield config if block_given?
        config.validate!
        install(config)
      end
    end

    # Loads config/kaal.yml: ERB, `defaults:` + the environment's section,
    # then KAAL_<OPTION> variables and KAAL_BACKEND_URL. Returns the
    # configuration.
    def load_config_file!(path = "config/kaal.yml", env: nil)
      @lock.synchronize do
        refuse_while_running("load_config_file!")
        env_name = ConfigFile.environment(env)
        data = ConfigFile.load(path, env_name, what: "configuration file")
        config = Configuration.new
        config.apply(data, source: path)
        config.apply_env
        config.validate!(source: path)
        @env_name = env_name
        @config_path = path
        install(config)
      end
    end

    # Installs a checked Configuration as the one in force, remembering the
    # environment and the file it came from (Kaal::Integration.setup).
    def install_configuration(config, env_name: nil, config_path: nil)
      raise ArgumentError, "expected a Kaal::Configuration, got #{config.class}" unless config.is_a?(Configuration)

      @lock.synchronize do
        refuse_while_running("configure")
        config.validate!
        @env_name = env_name
        @config_path = config_path
        install(config)
      end
    end

    # Loads the scheduler file (default: configuration.scheduler_config_path)
    # and replaces the jobs it defined before. Returns the loaded jobs.
    def load_scheduler_file!(path = nil, env: nil)
      @lock.synchronize do
        path ||= scheduler_file_path
        env_name = env ? ConfigFile.environment(env) : (@env_name || ConfigFile.environment)
        table = SchedulerFile.table(path, env_name, default_time_zone: configuration.time_zone)
        config = configuration
        # the class and queue checks are the shared Spec's: once per Spec (its
        # first job names it), not once per job of a million
        firsts = {}.compare_by_identity
        table.each_value { |job| firsts[job.spec] ||= job }
        firsts.each_value { |job| check_recurring_class!(job, config) }
        @registry.replace_file_jobs(table, path, policy: configuration.scheduler_conflict_policy)
        @scheduler_file_mtime = File.mtime(path)
        table.each_value { |job| warn_ignored_queue(job) } if firsts.each_key.any?(&:queue)
        table.values
      end
    end

    # The scheduler file path: scheduler_config_path, relative to the current
    # directory, or to the application root of the loaded config/kaal.yml.
    def scheduler_file_path
      path = configuration.scheduler_config_path
      return path if File.absolute_path?(path) || File.exist?(path) || @config_path.nil?

      dir = File.dirname(File.expand_path(@config_path))
      root = File.basename(dir) == "config" ? File.dirname(dir) : dir
      candidate = File.join(root, path)
      File.exist?(candidate) ? candidate : path
    end

    # -- jobs ------------------------------------------------------------------

    # Registers a recurring job in code: a job_class (name or class) or a
    # block/callable, called with the keywords it accepts among fire_time:,
    # idempotency_key: and key:.
    def register(key:, cron:, job_class: nil, queue: nil, args: NO_ARGS, kwargs: NO_KWARGS, time_zone: nil, catch_up: nil,
                 enabled: true, callable: nil, priority: nil, set: nil, handoff: nil, &block)
      raise ConfigurationError, "Kaal.register(key: #{key.inspect}): give a callable or a block, not both" if callable && block

      config = @configuration || configuration
      # Job.new(..., location: nil, source: :code), positional (Job.build); location nil: Kaal.register(key: ...)
      job = Job.build(key, nil, [cron, time_zone || config.time_zone, job_class, callable || block, queue, priority, set,
                                 args, kwargs, catch_up, enabled, :code, handoff])
      # the Spec read once (a million calls): a class given as a Class and no
      # queue, the common case, need neither check
      spec = job.spec
      check_recurring_class!(job, config) if spec.job_class.is_a?(String)
      @registry.register(job, policy: config.scheduler_conflict_policy)
      warn_ignored_queue(job) if spec.queue
      job
    end

    # Removes a job registered in code. Returns true when there was one.
    # The key may be given positionally or as key: (Kaal.unregister("x"),
    # Kaal.unregister(key: "x")), as for enable and disable.
    def unregister(job_key = NO_KEY, key: NO_KEY)
      @registry.unregister(key_argument("unregister", job_key, key), policy: configuration.scheduler_conflict_policy)
    end

    # Job state, one rule: the scheduler file or Kaal.register says whether
    # a job may run (enabled:); Kaal.disable pauses it at runtime on every
    # node (stored in the backend); Kaal.enable lifts that pause. A job runs
    # when its source enables it and it is not paused. Kaal.enable cannot run
    # a job its source disables: it raises ConfigurationError saying so, and
    # changes nothing.
    def enable(job_key = NO_KEY, key: NO_KEY)
      key = key_argument("enable", job_key, key)
      job = registered_job!(key)
      unless job.enabled
        raise ConfigurationError, "#{job.location}: enabled: false there; Kaal.enable only lifts a pause set by " \
                                  "Kaal.disable (set enabled: true where the job is defined to run it)"
      end
      set_paused(key, false)
    end

    # Pauses a job on every node (persisted in the backend) until Kaal.enable.
    def disable(job_key = NO_KEY, key: NO_KEY)
      set_paused(key_argument("disable", job_key, key), true)
    end

    # The registered jobs: [{key:, cron:, time_zone:, next_fire_time:, job_class:, ..., enabled:, source:,
    # source_enabled:, paused:, state:}]. enabled is derived: source_enabled (the file's or
    # Kaal.register's enabled:) and not paused (Kaal.disable); state says why, in words.
    def jobs(now: nil)
      states = begin
        backend.states
      rescue BackendError
        {}
      end
      from = (now || Clock.now).to_i
      @registry.jobs.values.sort_by(&:key).map do |job|
        paused = states[job.key] == false
        epoch = job.cron.next_epoch(from)
        job.to_h.merge(enabled: job.enabled && !paused, source_enabled: job.enabled, paused: paused,
                       state: job_state(job, paused), next_fire_time: job.fire_time(epoch))
      end
    end

    def registry
      @registry
    end

    # The stored schedules of the configured backend (Kaal::Schedules):
    # upsert, delete, find, each.
    def schedules
      Schedules.new(backend: backend, configuration: configuration, registry: @registry,
                    check_class: method(:check_recurring_class!))
    end

    # -- running ---------------------------------------------------------------

    # Starts the tick loop in a background thread (loading the scheduler file
    # first when it exists and has not been loaded). Returns the scheduler.
    def start!
      @lock.synchronize do
        return @scheduler if @scheduler&.running?

        path = scheduler_file_path
        if @registry.file_path.nil? && File.exist?(path)
          load_scheduler_file!(path)
        elsif @registry.size.zero?
          where = @registry.file_path || File.exist?(path) ? "#{@registry.file_path || path} defines none" : "#{path} does not exist"
          logger.warn("no jobs: #{where} and none were registered in code")
        end
        warn_without_allow_list
        sched = scheduler
        @start_hooks.each { |hook| hook.call }
        sched.start(check: method(:check_schema!))
      end
    end

    # Runs +block+ each time Kaal.start! starts the scheduler, after the
    # configuration and backend are in place and before the first tick
    # (e.g. to enqueue a delayed job from a file loaded with --require).
    def on_start(&block)
      raise ArgumentError, "on_start needs a block" unless block

      @lock.synchronize { @start_hooks << block }
      block
    end

    # Stops the tick loop after the current tick and waits for running jobs
    # up to +timeout+ seconds. Returns true when everything finished.
    def stop!(timeout: configuration.shutdown_timeout)
      sched = @lock.synchronize { @scheduler }
      return true if sched.nil?

      finished = sched.stop(timeout: timeout)
      @lock.synchronize { @scheduler = nil if @scheduler.equal?(sched) }
      finished
    end

    def running?
      !@scheduler.nil? && @scheduler.running?
    end

    # One tick at +now+. Returns the Dispatches it started, after waiting
    # for jobs on the worker pool (pass wait: false not to).
    def tick!(now: Clock.now, wait: true)
      scheduler.tick(now, wait: wait)
    end

    # Reloads the loaded scheduler file now, changed or not (SIGHUP in
    # `kaal start`). Keeps the old jobs and logs when the new file is
    # invalid. Returns true when it reloaded.
    def reload_scheduler_file!
      @lock.synchronize { @scheduler_file_mtime = nil }
      reload_scheduler_file_if_changed
    end

    # Reloads the scheduler file when it changed on disk (called by the
    # loop). Keeps the old jobs and logs when the new file is invalid.
    def reload_scheduler_file_if_changed
      path = @registry.file_path
      return false if path.nil? || !File.exist?(path) || File.mtime(path) == @scheduler_file_mtime

      load_scheduler_file!(path)
      logger.info("reloaded #{path}: #{@registry.size} jobs")
      true
    rescue ConfigurationError => e
      @scheduler_file_mtime = File.mtime(path)
      logger.error("kept the previous jobs: #{e.message}")
      false
    end

    # -- delayed jobs --------------------------------------------------------------

    # Stores a one-off job to run at +at+. job_id is unique while pending
    # (DuplicateJobError otherwise, nothing changes). args are positional and
    # must survive a JSON round trip (checked now). With connection: (an
    # Active Record connection or Sequel database on an SQL backend) the row
    # is inserted through it, inside the caller's transaction.
    def enqueue_at(at:, job_class:, job_id:, args: [], queue: nil, connection: nil)
      run_at_ms = Delayed.run_at_ms(at)
      job_id = Delayed.job_id(job_id)
      name = Delayed.job_class_name(job_class)
      queue = Delayed.queue(queue)
      args_json = Delayed.args_json(args)
      config = configuration
      check_allowed_prefix!(name, config)
      if connection
        enqueue_through(connection, config, job_id, run_at_ms, name, queue, args_json)
      else
        backend.delayed_add(job_id: job_id, run_at_ms: run_at_ms, job_class: name, queue: queue, args_json: args_json)
      end
      job_id
    end

    # Removes a pending delayed job. Returns true when it was pending.
    def cancel(job_id)
      backend.delayed_cancel(Delayed.job_id(job_id))
    end

    # -- dispatch log ----------------------------------------------------------------

    # Lowercase hex SHA-256 of the canonical (namespace, key, fire epoch).
    def idempotency_key(key, fire_time, namespace: configuration.namespace)
      raise ArgumentError, "key: must be a String, got #{key.inspect}" unless key.is_a?(String) || key.is_a?(Symbol)
      raise ArgumentError, "namespace: must be a String, got #{namespace.inspect}" unless namespace.is_a?(String) || namespace.is_a?(Symbol)

      Native.idempotency_key(namespace.to_s, key.to_s, epoch_of(fire_time))
    end

    # true when the dispatch log records (key, fire_time) as dispatched.
    def dispatched?(key, fire_time)
      backend.dispatch_status(key.to_s, epoch_of(fire_time)) == "dispatched"
    end

    def dispatches(key: nil, status: nil, node: nil, limit: 100, before: nil)
      backend.dispatches(key: key&.to_s, status: status&.to_s, node: node, limit: limit, before: before)
    end

    # -- plumbing ---------------------------------------------------------------------

    # The backend handle of the configuration in force (built on first use).
    def backend
      @lock.synchronize do
        @backend ||= begin
          config = configuration
          Backend.build(config.backend, namespace: config.namespace, config: config.backend_options,
                                        log_retention: config.dispatch_log_retention)
        end
      end
    end

    # The scheduler of this process. One copied by fork is dropped, never
    # restarted: its worker pool holds the parent's queued dispatches, pairs
    # the parent claimed and runs itself (a forked Puma worker would run
    # them a second time).
    def scheduler
      @lock.synchronize do
        @scheduler = nil unless @scheduler_pid == Process.pid
        @scheduler_pid = Process.pid
        @scheduler ||= Scheduler.new(config: configuration, registry: @registry, backend: backend,
                                     logger: method(:log_event),
                                     before_tick: method(:reload_scheduler_file_if_changed),
                                     feed: schedule_feed)
      end
    end

    # The configured logger as given (its level is the application's:
    # log_level applies only to the logger kaal builds itself on $stdout).
    def logger
      @lock.synchronize do
        @logger ||= configuration.logger || Log.build.tap { |l| l.level = Log.level(configuration.log_level) }
      end
    end

    def logger=(logger)
      @lock.synchronize { @logger = logger }
    end

    def node_id
      configuration.node_id || NodeId.current
    end

    # Test helper: stops the scheduler, forgets jobs, configuration, backend
    # handle, logger and event subscriptions.
    def reset!
      stop!(timeout: 5) if @scheduler
      @lock.synchronize do
        @schedule_feed = nil
        @registry.clear
        @events.clear
        @start_hooks = []
        close_backend
        @scheduler = nil
        @configuration = nil
        @logger = nil
        @env_name = nil
        @config_path = nil
        @scheduler_file_mtime = nil
        @allow_list_warned = false
      end
      nil
    end

    private

    def install(config)
      drop_schedule_feed
      close_backend
      @scheduler = nil
      @logger = nil
      @configuration = config
    end

    def close_backend
      @backend&.close
    rescue StandardError
      nil
    ensure
      @backend = nil
    end

    # A node refuses to start against kaal's tables at an older schema step
    # (Kaal::BackendError naming the migrate command). A backend that cannot
    # answer yet (down, unreachable, its SQLite file locked by another
    # process) is an outage like any other: the check is returned, and the
    # tick loop runs it first in every tick until it passes, failing closed
    # meanwhile (an older schema found then keeps failing the ticks with the
    # same message).
    def check_schema!(deferred: false)
      version = begin
        backend.schema_version
      rescue BackendError => e
        raise if deferred

        logger.warn("schema check deferred until the backend answers: #{e.message}")
        return -> { check_schema!(deferred: true) }
      end
      raise Backend::Schema.outdated_error(configuration.backend, version) if version < Backend::Schema::VERSION

      nil
    end

    def refuse_while_running(what)
      return unless running?

      raise ConfigurationError, "#{what}: the scheduler is running; call Kaal.stop! first"
    end

    # The job key of unregister/enable/disable, given positionally or as
    # key: (exactly one of them), as a String.
    def key_argument(method, positional, keyword)
      given = [positional, keyword].reject { |v| NO_KEY.equal?(v) }
      if given.size != 1
        raise ArgumentError, "Kaal.#{method}: give the job key once, as Kaal.#{method}(\"key\") or " \
                             "Kaal.#{method}(key: \"key\")#{given.empty? ? "" : ", not both"}"
      end
      key = given.first
      return key.to_s if (key.is_a?(String) || key.is_a?(Symbol)) && !key.to_s.empty?

      raise ArgumentError, "Kaal.#{method}: the job key must be a non-empty String or Symbol, got #{key.inspect}"
    end

    # queue: only means something to ActiveJob and Sidekiq classes; a plain
    # .perform class or a block runs on kaal's worker pool. Says so when the
    # job is defined (a class name not loaded yet cannot be checked).
    def warn_ignored_queue(job)
      return unless job.queue

      kind, = job.callable ? [:callable] : Dispatcher.new(pool: nil, allowed_prefixes: nil, logger: nil).plan(job.job_class)
      return unless %i[callable perform instance].include?(kind)

      what = kind == :callable ? "a block/callable job" : "#{job.job_class_name} (plain .perform)"
      logger.warn("#{job.location}: queue: #{job.queue.inspect} is ignored: #{what} runs on kaal's worker pool; " \
                  "queue applies to ActiveJob and Sidekiq classes")
    end

    # The job under key: registered in this process, or stored in the
    # backend (a web process pauses a stored schedule no node of its own runs).
    def registered_job!(key)
      @registry[key] || stored_job(key) or
        raise ConfigurationError, "no job registered with key #{key.inspect} (known: #{@registry.jobs.keys.sort.first(20).join(", ")})"
    end

    def stored_job(key)
      row = backend.schedule_get(key)
      row && Schedules.job_from(row, default_time_zone: configuration.time_zone)
    rescue BackendError
      nil
    end

    # What brings the stored schedules into this process's registry, polled
    # once per tick by the scheduler. One per process and configuration: a
    # scheduler made again (after a fork) goes on from the version the
    # registry it inherited is at.
    def schedule_feed
      @lock.synchronize do
        @schedule_feed ||= begin
          build = lambda do |row|
            job = Schedules.job_from(row, default_time_zone: configuration.time_zone)
            check_recurring_class!(job)
            job
          end
          ScheduleFeed.new(backend: backend, registry: @registry, build: build,
                           policy: -> { configuration.scheduler_conflict_policy }, events: @events,
                           node: -> { @scheduler&.node || node_id })
        end
      end
    end

    # A new configuration (another backend or namespace): the stored
    # schedules of the old one leave the registry.
    def drop_schedule_feed
      @schedule_feed&.detach
      @schedule_feed = nil
    end

    # Stores the pause of +key+ (the backend's enabled flag is its inverse).
    # Returns whether the job now runs.
    def set_paused(key, paused)
      job = registered_job!(key)
      backend.set_enabled(key, !paused)
      @scheduler&.refresh_states
      job.enabled && !paused
    end

    def job_state(job, paused)
      where = job.file? ? "file" : job.source.to_s
      if !job.enabled then "disabled (#{where})"
      elsif paused then "paused (Kaal.disable)"
      else "enabled"
      end
    end

    def epoch_of(fire_time)
      case fire_time
      when Integer then fire_time
      when Time then fire_time.to_i
      when Float, Rational then fire_time.floor
      else
        unless fire_time.respond_to?(:to_time) && !fire_time.is_a?(String)
          raise ArgumentError, "fire_time: must be a Time or Unix seconds, got #{fire_time.inspect}"
        end

        fire_time.to_time.to_i
      end
    end

    def check_allowed_prefix!(name, config)
      prefixes = config.delayed_job_allowed_class_prefixes
      return if Dispatcher.allowed_class?(name, prefixes)

      raise ArgumentError, "job_class: #{name} is outside delayed_job_allowed_class_prefixes (#{prefixes.join(", ")})"
    end

    # A recurring job's String job_class must be allowed by
    # delayed_job_allowed_class_prefixes when the job is defined, not only
    # refused at each dispatch. (A Class given in code is used as given.)
    def check_recurring_class!(job, config = configuration)
      name = job.job_class
      return unless name.is_a?(String)

      check_allowed_prefix!(name, config)
    rescue ArgumentError => e
      raise ConfigurationError, "#{job.location}: #{e.message}"
    end

    # Once per process: a shared backend in production with no class
    # allow-list lets anyone who can write to it run any class.
    def warn_without_allow_list
      config = configuration
      return if @allow_list_warned || config.backend == "memory"
      return unless (@env_name || ConfigFile.environment) == "production"
      return unless config.delayed_job_allowed_class_prefixes.nil? || config.delayed_job_allowed_class_prefixes.empty?

      @allow_list_warned = true
      logger.warn("delayed_job_allowed_class_prefixes is not set: any class name stored in the shared " \
                  "#{config.backend} backend can be run; set it to your job namespaces (e.g. [MyApp::Jobs])")
    end

    def enqueue_through(connection, config, job_id, run_at_ms, name, queue, args_json)
      unless %w[sqlite postgres mysql].include?(config.backend)
        raise ConfigurationError, "enqueue_at(connection:) needs an SQL backend (sqlite, postgres, mysql); " \
                                  "the configured backend is #{config.backend}"
      end
      unless defined?(Backend::Schema) && Backend::Schema.respond_to?(:enqueue_through)
        raise ConfigurationError, "enqueue_at(connection:) is not available in this build (Kaal::Backend::Schema is missing)"
      end

      Backend::Schema.enqueue_through(connection, dialect: config.backend, namespace: config.namespace, job_id: job_id,
                                                  run_at_ms: run_at_ms, job_class: name, queue: queue, args_json: args_json)
    end

    def log_event(level, message)
      log_line(level, message)
    end
  end
end
