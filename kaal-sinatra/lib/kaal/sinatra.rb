# frozen_string_literal: true

require "sinatra/base"
require "kaal"

module Kaal
  # kaal for Sinatra (modular and classic apps).
  #
  #   class App < Sinatra::Base
  #     register Kaal::Sinatra::Extension
  #
  #     kaal redis: Redis.new(url: ENV.fetch("REDIS_URL")),
  #          namespace: "my-app",
  #          start_scheduler: false
  #   end
  #
  # A classic app writes the same two lines at the top level of its file.
  module Sinatra
    # The `register`-able extension: adds the `kaal` class method.
    module Extension
      def self.registered(app)
        # Classic apps call `kaal` at the top level, like `get` and `set`.
        ::Sinatra::Delegator.delegate(:kaal) if app == ::Sinatra::Application
      end

      # Configures kaal for this app through Kaal::Integration.setup and
      # returns Kaal.configuration. root: defaults to the app's root setting
      # (the directory of the app's file), environment: to KAAL_ENV, else the
      # app's environment setting; every other option is passed on as given.
      # Raises Kaal::ConfigurationError (unknown option, broken scheduler
      # file, ...), which stops the boot.
      def kaal(**options)
        kaal_env = ENV.fetch("KAAL_ENV", "")
        defaults = {
          root: settings.root || Dir.pwd,
          environment: kaal_env.empty? ? settings.environment.to_s : kaal_env,
          label: "kaal (Sinatra)"
        }
        options = defaults.merge(options)
        return Kaal::Integration.setup(**options) unless options[:start_scheduler] && run_at_exit?

        # `ruby app.rb` of a classic app: Sinatra starts its server from an
        # exit hook, which runs after kaal's own (stop the scheduler at exit).
        # Starting now would stop the scheduler before the server starts.
        config = Kaal::Integration.setup(**options, start_scheduler: false)
        singleton_class.prepend(StartSchedulerOnRun)
        config
      end

      private

      def run_at_exit?
        equal?(::Sinatra::Application) && settings.run?
      end
    end

    # Starts the scheduler as Sinatra's own server starts (classic apps).
    module StartSchedulerOnRun
      def run!(*args, **options, &block)
        Kaal::Integration.start_scheduler!
        super
      end
    end
  end
end
