# frozen_string_literal: true

module Kaal
  module Rails
    # The backend of an app whose config/kaal.yml names none: the app's own
    # Active Record database for the current environment, with its
    # connection settings. With several databases, `database: <name>` in
    # config/kaal.yml picks the config/database.yml entry (default: primary).
    module Database
      # Active Record adapter => kaal backend.
      ADAPTERS = {
        "sqlite3" => "sqlite",
        "postgresql" => "postgres", "postgis" => "postgres",
        "mysql2" => "mysql", "trilogy" => "mysql"
      }.freeze
      SQL_BACKENDS = %w[sqlite postgres mysql].freeze
      CONNECTION_KEYS = %i[adapter url database host port socket username password sslmode ssl_mode
                           connect_timeout read_timeout].freeze
      OWN_CONNECTION_KEYS = %w[url connection path database redis].freeze

      module_function

      # {backend:, backend_config: {connection: {...}}} for settings (the
      # String-keyed values of config/kaal.yml and the options, plus
      # "database"), or {} when the settings name a backend that does not
      # use the app's database. Raises Kaal::ConfigurationError for an
      # adapter kaal cannot use, or a database name config/database.yml does
      # not have.
      def defaults(settings, root:, env:)
        backend = (settings["backend"] || ENV.fetch("KAAL_BACKEND", nil))&.to_s&.strip&.downcase
        backend = nil if backend&.empty?
        return {} if backend && (!SQL_BACKENDS.include?(backend) || own_connection?(settings))

        db_config = find(env, settings["database"]&.to_s)
        if db_config.nil?
          return {} if backend

          raise ConfigurationError,
                "kaal (Rails): config/database.yml has no database for environment #{env.inspect}: set backend " \
                "(and backend_config) in config/kaal.yml"
        end
        dialect = ADAPTERS[db_config.adapter.to_s]
        if dialect.nil?
          return {} if backend

          raise ConfigurationError,
                "kaal (Rails): the #{db_config.adapter.inspect} database adapter of config/database.yml " \
                "(#{env}, #{db_config.name}) has no kaal backend (kaal follows sqlite3, postgresql, postgis, " \
                "mysql2 and trilogy): set backend (redis, postgres, mysql, sqlite or memory) and " \
                "backend_config.url in config/kaal.yml"
        end
        return {} if backend && backend != dialect

        { backend: dialect, backend_config: { connection: connection(db_config, root) } }
      end

      # The ActiveRecord::DatabaseConfigurations::DatabaseConfig for env, or
      # nil when the environment has none.
      def find(env, name)
        configs = ::ActiveRecord::Base.configurations
        if name && !name.empty?
          found = configs.configs_for(env_name: env, name: name, include_hidden: true)
          return found if found

          have = configs.configs_for(env_name: env, include_hidden: true).map(&:name)
          raise ConfigurationError,
                "config/kaal.yml: database: config/database.yml has no database #{name.inspect} for " \
                "environment #{env.inspect} (it has: #{have.empty? ? "none" : have.join(", ")})"
        end
        configs.configs_for(env_name: env, name: "primary") || configs.configs_for(env_name: env).first
      end

      # The connection settings kaal uses, a relative SQLite path made
      # absolute against the app's root (Active Record does the same).
      def connection(db_config, root)
        hash = db_config.configuration_hash.slice(*CONNECTION_KEYS).compact
        hash[:adapter] = db_config.adapter.to_s
        database = hash[:database].to_s
        if ADAPTERS[hash[:adapter]] == "sqlite" && !database.empty? && !database.start_with?("file:", ":memory:")
          hash[:database] = File.expand_path(database, root)
        end
        hash
      end

      def own_connection?(settings)
        config = settings["backend_config"]
        return true if ENV["KAAL_BACKEND_URL"].to_s.strip != "" || ENV["KAAL_BACKEND_CONFIG"].to_s.strip != ""
        return false unless config.is_a?(Hash)

        config.keys.map(&:to_s).any? { |k| OWN_CONNECTION_KEYS.include?(k) }
      end
    end
  end
end
