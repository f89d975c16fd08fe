# frozen_string_literal: true

require "roda"
require "kaal"

module Kaal
  # kaal for Roda, as the plugin :kaal.
  #
  #   class App < Roda
  #     plugin :kaal
  #
  #     kaal redis: Redis.new(url: ENV.fetch("REDIS_URL")),
  #          namespace: "my-app",
  #          start_scheduler: false
  #   end
  #
  # `plugin :kaal, namespace: "my-app", ...` is the same as `plugin :kaal`
  # followed by `kaal namespace: "my-app", ...`.
  module Roda
    def self.configure(app, **options)
      app.kaal(**options) unless options.empty?
    end

    module ClassMethods
      # Configures kaal for this app through Kaal::Integration.setup and
      # returns Kaal.configuration. root: defaults to the app's :root option
      # (set by Roda's render and public plugins), else the current
      # directory; environment: to KAAL_ENV, RACK_ENV, APP_ENV, else
      # development. Raises Kaal::ConfigurationError (unknown option, broken
      # scheduler file, ...), which stops the boot.
      def kaal(**options)
        defaults = { root: opts[:root] || Dir.pwd, label: "kaal (Roda)" }
        Kaal::Integration.setup(**defaults.merge(options))
      end
    end
  end
end

::Roda::RodaPlugins.register_plugin(:kaal, Kaal::Roda)
