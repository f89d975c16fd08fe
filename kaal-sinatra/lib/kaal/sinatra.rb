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
        Kaal::Integration.setup(**defaults.merge(options))
      end
    end
  end
end
