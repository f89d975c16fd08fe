# frozen_string_literal: true

require "kaal"
require "kaal/rails/version"
require "kaal/rails/database"
require "kaal/rails/embedded"

module Kaal
  # kaal inside a Rails app. The Railtie (kaal/rails/railtie) calls
  # Kaal::Rails.setup(app) after the app has initialized; everything else is
  # configuration read from config/kaal.yml and the app's own settings:
  #
  # - the backend follows the app's Active Record database when
  #   config/kaal.yml sets none (Kaal::Rails::Database);
  # - Rails.logger is the logger, failed jobs go to Rails.error, plain Ruby
  #   jobs run inside the Rails executor (the reloader when code reloading
  #   is on);
  # - time_zone defaults to config.time_zone;
  # - missing tables are reported with `bin/rails db:migrate`.
  #
  # Options set in config/application.rb as `config.kaal.<option> = value`
  # are applied over config/kaal.yml (KAAL_* variables still win).
  module Rails
    MIGRATE_COMMAND = "bin/rails db:migrate"
    # An older schema: the migrations of the new steps are written first.
    UPGRADE_COMMAND = "bin/rails generate kaal:install && bin/rails db:migrate"

    module_function

    # Configures kaal for +app+ (a Rails::Application) and loads the
    # scheduler file. Starts no scheduler: that is `kaal start` or the Puma
    # plugin. Returns Kaal.configuration.
    def setup(app)
      options = app.config.kaal.to_h.transform_keys(&:to_sym)
      logger = options.delete(:logger) || ::Rails.logger
      log_to_terminal if logger.equal?(::Rails.logger) && cli?
      Kaal::Backend::Schema.migrate_command = MIGRATE_COMMAND
      Kaal::Backend::Schema.upgrade_command = UPGRADE_COMMAND
      Kaal::Integration.setup(
        root: app.root.to_s,
        environment: ::Rails.env.to_s,
        logger: logger,
        error_reporter: method(:report_error),
        job_wrapper: job_wrapper(app),
        defaults: ->(settings) { defaults(app, settings) },
        file_keys: ["database"],
        label: "kaal (Rails)",
        **options
      )
    end

    # `kaal start`, `kaal tick`, ... in the app's root, or the rake tasks.
    def cli?
      File.basename($PROGRAM_NAME) == "kaal" || (defined?(::Rake) && ::Rake.application.top_level_tasks.any? { |t| t.start_with?("kaal:") })
    end

    # As `rails server` does: a command run in a terminal also prints the
    # app's log lines there (unless the logger already writes to it).
    def log_to_terminal
      logger = ::Rails.logger
      return unless logger.respond_to?(:broadcast_to)
      return if ::ActiveSupport::Logger.logger_outputs_to?(logger, $stdout, $stderr)

      console = ::ActiveSupport::Logger.new($stdout)
      console.formatter = logger.formatter if logger.formatter
      console.level = logger.level
      logger.broadcast_to(console)
    end

    # true when the app has config/kaal.yml or sets config.kaal options.
    def installed?(app)
      !app.config.kaal.to_h.empty? || File.exist?(File.join(app.root.to_s, "config", "kaal.yml"))
    end

    # Option values beneath config/kaal.yml: the app's time zone and, unless
    # the file names another backend with its own connection, the app's
    # database.
    def defaults(app, settings)
      settings = settings.transform_keys(&:to_s)
      found = { time_zone: app.config.time_zone.to_s }
      found.merge!(Database.defaults(settings, root: app.root.to_s, env: ::Rails.env.to_s))
      found
    end

    # A failed job, once, with kaal's context (the job wrapper keeps the
    # executor from reporting it a second time).
    def report_error(error, context)
      ::Rails.error.report(error, handled: false, severity: :error, context: context || {}, source: "kaal")
    end

    # Every job dispatch runs inside the executor, so Active Record
    # connections are returned and the query cache is reset; with code
    # reloading on, inside the reloader so constants stay fresh. The job's
    # error is raised again outside the executor, which would otherwise
    # report it without kaal's context before kaal reports it.
    def job_wrapper(app)
      wrapper = app.config.respond_to?(:reloading_enabled?) && app.config.reloading_enabled? ? app.reloader : app.executor
      lambda do |&block|
        error = nil
        result = wrapper.wrap do
          block.call
        rescue Exception => e # rubocop:disable Lint/RescueException -- raised again below
          error = e
        end
        raise error if error

        result
      end
    end
  end
end

require "kaal/rails/railtie" if defined?(::Rails::Railtie)
