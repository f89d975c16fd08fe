# frozen_string_literal: true

require "digest"
require "tmpdir"

module Kaal
  # The one entry point the framework gems (kaal-rails, kaal-sinatra,
  # kaal-roda, kaal-hanami) call. It reads config/kaal.yml when present,
  # applies the framework's options over it, loads the scheduler file and,
  # when asked, starts a scheduler inside the current process (the embedded
  # scheduler). The gems only translate their framework's conventions (root,
  # environment, logger, error reporter) into these keywords; see
  # docs/architecture.md, "Integrations".
  #
  #   Kaal::Integration.setup(root: app_root, environment: "production",
  #                           redis: Redis.new(url: ENV["REDIS_URL"]),
  #                           namespace: "my-app", start_scheduler: true)
  #
  # Precedence, lowest first: defaults (the integration's own, such as the
  # backend kaal-rails derives from the app's database), config/kaal.yml,
  # the options given here, KAAL_* environment variables.
  module Integration
    ADAPTER_KINDS = %w[postgres mysql sqlite].freeze
    # backend_config keys that name a connection (the others tune it).
    CONNECTION_KEYS = %i[url connection redis database path].freeze

    @lock = Monitor.new
    @embedded_pid = nil
    @lock_file = nil
    @root = nil
    @config = nil
    @at_exit = false

    class << self
      # Configures kaal for an application. Returns Kaal.configuration.
      # Raises Kaal::ConfigurationError naming the file or option at fault; a
      # broken scheduler file fails here, at boot, naming file, job and field.
      def setup(root: Dir.pwd, environment: nil, config_path: nil, logger: nil, error_reporter: nil,
                job_wrapper: nil, defaults: nil, file_keys: [], start_scheduler: false,
                label: "Kaal::Integration.setup", redis: nil, database: nil, adapter: nil, **options)
        root = File.expand_path(root.to_s)
        env_name = ConfigFile.environment(environment)
        file, file_path = read_config_file(root, config_path, env_name)
        extra = file_keys.map(&:to_s).each_with_object({}) { |k, h| h[k] = file.delete(k) if file.key?(k) }
        given = options.merge(connection_options(redis, database, adapter, options, label))
        config = build_config(file, file_path, given, defaults, extra, label, root, env_name)
        config.logger = logger if logger
        config.error_handlers = config.error_handlers + [error_reporter] if error_reporter
        config.job_wrapper = job_wrapper if job_wrapper
        Kaal.install_configuration(config, env_name: env_name, config_path: file_path)
        @config = config
        @root = root
        load_jobs(config, env_name, explicit: given.key?(:scheduler_config_path) || file.key?("scheduler_config_path"))
        start_scheduler! if start_scheduler
        config
      end

      # Starts the tick loop in this process unless it runs already. With
      # the memory backend, which keeps claims in one process only, a file
      # lock lets one process per (directory, namespace) run it; the others
      # log why and return false. Stops gracefully at exit.
      def start_scheduler!
        @lock.synchronize do
          return true if Kaal.running? && @embedded_pid == Process.pid
          return false unless claim_memory_lock

          Kaal.start!
          @embedded_pid = Process.pid
          unless @at_exit
            @at_exit = true
            at_exit { stop_scheduler! }
          end
          true
        end
      end

      # Stops the embedded scheduler of this process (a forked child never
      # stops its parent's). Returns true when every running job finished.
      def stop_scheduler!(timeout: nil)
        @lock.synchronize do
          return true unless @embedded_pid == Process.pid

          @embedded_pid = nil
          release_memory_lock
        end
        timeout ? Kaal.stop!(timeout: timeout) : Kaal.stop!
      end

      # true while the configuration in force is the one setup installed (no
      # Kaal.configure or Kaal.load_config_file! since). The CLI keeps it
      # when the app it boots (a Rails app) has set kaal up.
      def set_up?
        !@config.nil? && Kaal.configured? && Kaal.configuration.equal?(@config)
      end

      # true while this process runs the embedded scheduler.
      def scheduler_running?
        @embedded_pid == Process.pid && Kaal.running?
      end

      # For servers that fork workers (Puma's on_worker_boot): starts a node
      # in the worker when the backend is shared. With memory it starts only
      # if no other process holds the lock. Returns true when it runs here.
      def after_fork
        @lock.synchronize do
          @embedded_pid = nil
          release_memory_lock # the parent's descriptor: closing it here leaves the parent's lock in place
        end
        start_scheduler!
      end

      private

      def read_config_file(root, config_path, env_name)
        path = config_path ? File.expand_path(config_path.to_s, root) : File.join(root, "config", "kaal.yml")
        return [{}, nil] if config_path.nil? && !File.exist?(path)

        [ConfigFile.load(path, env_name, what: "configuration file"), path]
      end

      # redis: / database: + adapter: as backend and backend_config.
      def connection_options(redis, database, adapter, options, label)
        if redis && database
          raise ConfigurationError, "#{label}: give redis: or database:, not both"
        end
        if adapter && database.nil?
          raise ConfigurationError, "#{label}: adapter: goes with database: (a Sequel::Database); " \
                                    "use backend: to choose a backend"
        end
        if (redis || database) && options.key?(:backend_config)
          raise ConfigurationError, "#{label}: give #{redis ? "redis:" : "database:"} or backend_config:, not both"
        end
        if redis
          check_backend(options, "redis", "redis:", label)
          { backend: "redis", backend_config: { redis: redis } }
        elsif database
          kind = sequel_kind(database, adapter, label)
          check_backend(options, kind, "database:", label)
          { backend: kind, backend_config: { database: database } }
        else
          {}
        end
      end

      def sequel_kind(database, adapter, label)
        unless database.respond_to?(:opts) && database.respond_to?(:database_type)
          raise ConfigurationError, "#{label}: database: must be a Sequel::Database, got #{database.class}"
        end

        inferred = Backend::ConnectionParams::ADAPTERS[database.database_type.to_s]
        return inferred.to_s if adapter.nil? && inferred

        unless adapter
          raise ConfigurationError, "#{label}: database: Sequel database type #{database.database_type.inspect} is not " \
                                    "supported; kaal stores its state in postgres, mysql or sqlite"
        end
        kind = Backend::ConnectionParams::ADAPTERS[adapter.to_s.downcase]&.to_s
        unless kind
          raise ConfigurationError, "#{label}: adapter: must be one of #{ADAPTER_KINDS.join(", ")}, got #{adapter.inspect}"
        end
        if inferred && inferred.to_s != kind
          raise ConfigurationError, "#{label}: adapter: #{adapter.inspect} contradicts database:, a Sequel " \
                                    "#{database.database_type} database (use adapter: #{inferred.inspect} or leave it out)"
        end
        kind
      end

      def check_backend(options, kind, what, label)
        given = options[:backend]
        return if given.nil? || given.to_s.downcase == kind

        raise ConfigurationError, "#{label}: backend: #{given.to_s.inspect} contradicts #{what} (a #{kind} connection)"
      end

      def build_config(file, file_path, given, defaults, extra, label, root, env_name)
        config = Configuration.new
        if defaults
          settings = file.transform_keys(&:to_sym).merge(given).merge(extra.transform_keys(&:to_sym))
          values = defaults.respond_to?(:call) ? defaults.call(settings) : defaults
          config.apply(values || {}, source: "#{label} defaults")
          file = keep_default_connection(file, config)
        end
        config.apply(file, source: file_path) if file_path
        given.each do |name, value|
          config.set(name, value, source: label)
        rescue ConfigurationError => e
          raise unless e.message.include?("unknown option")

          raise ConfigurationError, "#{label}: unknown option #{name}: (valid options: redis, database, adapter, " \
                                    "config_path, root, environment, start_scheduler, #{Configuration.option_names.join(", ")})"
        end
        config.apply_env
        config.validate!(source: file_path || label)
        resolve_paths(config, root)
        config
      end

      # A backend_config in the file that names no connection of its own
      # (only timeouts, say) adds to the connection the defaults gave (the
      # app's database in kaal-rails) instead of replacing it.
      def keep_default_connection(file, config)
        own = file["backend_config"]
        return file unless own.is_a?(Hash) && !config.backend_config.empty?
        return file if file.key?("backend") && file["backend"].to_s.downcase != config.backend
        return file if own.keys.any? { |k| CONNECTION_KEYS.include?(k.to_sym) }

        file.merge("backend_config" => config.backend_config.merge(own.transform_keys(&:to_sym)))
      end

      # A relative scheduler file or SQLite path is relative to the app root.
      def resolve_paths(config, root)
        path = config.scheduler_config_path
        config.scheduler_config_path = File.expand_path(path, root) unless File.absolute_path?(path)
        bc = config.backend_config
        return unless config.backend == "sqlite" && bc[:url].is_a?(String) && !bc[:url].include?(":") &&
                      !File.absolute_path?(bc[:url])

        config.backend_config = bc.merge(url: File.expand_path(bc[:url], root))
      end

      def load_jobs(config, env_name, explicit:)
        path = config.scheduler_config_path
        unless File.exist?(path)
          raise ConfigurationError, "#{path}: scheduler file not found (scheduler_config_path)" if explicit

          return
        end
        Kaal.load_scheduler_file!(path, env: env_name)
      end

      def claim_memory_lock
        return true unless Kaal.configuration.backend == "memory"
        return true if @lock_file

        name = Digest::SHA256.hexdigest("#{@root || Dir.pwd}\0#{Kaal.configuration.namespace}")[0, 16]
        file = File.open(File.join(Dir.tmpdir, "kaal-memory-#{name}.lock"), File::RDWR | File::CREAT, 0o600)
        if file.flock(File::LOCK_EX | File::LOCK_NB)
          file.truncate(0)
          file.write(Process.pid.to_s)
          file.flush
          @lock_file = file
          return true
        end
        holder = file.read.strip
        file.close
        Kaal.logger.warn("embedded scheduler not started in process #{Process.pid}: backend memory keeps claims in " \
                         "one process only and process #{holder.empty? ? "(unknown)" : holder} runs it; use a " \
                         "shared backend (redis, postgres, mysql, sqlite) to run a node in every process")
        false
      end

      def release_memory_lock
        @lock_file&.close
      rescue IOError
        nil
      ensure
        @lock_file = nil
      end
    end
  end
end
