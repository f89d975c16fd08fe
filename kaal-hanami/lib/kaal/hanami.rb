# frozen_string_literal: true

require "hanami"
require "kaal"

module Kaal
  # kaal for Hanami 2.2, called in the app class.
  #
  #   module MyApp
  #     class App < Hanami::App
  #       Kaal::Hanami.configure!(
  #         self,
  #         redis: Redis.new(url: ENV.fetch("REDIS_URL")),
  #         namespace: "my-app",
  #         start_scheduler: false
  #       )
  #     end
  #   end
  module Hanami
    # Configures kaal for +app+ (the Hanami::App subclass) through
    # Kaal::Integration.setup and returns Kaal.configuration. root: defaults
    # to the app's config.root, environment: to KAAL_ENV, else the app's
    # config.env, logger: to the app's configured logger; every other option
    # is passed on as given. Raises Kaal::ConfigurationError (unknown option,
    # broken scheduler file, ...), which stops the boot.
    def self.configure!(app, **options)
      unless app.is_a?(Class) && app < ::Hanami::App
        raise ArgumentError, "Kaal::Hanami.configure!: pass the app class (self inside `class App < Hanami::App`), " \
                             "got #{app.inspect}"
      end

      config = app.config
      kaal_env = ENV.fetch("KAAL_ENV", "")
      defaults = {
        root: config.root.to_s,
        environment: kaal_env.empty? ? config.env.to_s : kaal_env,
        label: "Kaal::Hanami.configure!"
      }
      defaults[:logger] = config.logger_instance unless options.key?(:logger)
      Kaal::Integration.setup(**defaults.merge(options))
    end
  end
end
