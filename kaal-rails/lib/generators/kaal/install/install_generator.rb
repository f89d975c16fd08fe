# frozen_string_literal: true

require "rails/generators"
require "rails/generators/migration"
require "rails/generators/active_record"

module Kaal
  module Generators
    # bin/rails generate kaal:install [--backend=sqlite|postgres|mysql|redis|memory] [--database=NAME]
    #
    # Writes config/kaal.yml, an example config/kaal-scheduler.yml and, for
    # the SQL backends, one Active Record migration per schema step of
    # kaal's tables (create_kaal_tables, then kaal_schema_step_2, ...). Run
    # again (after upgrading kaal), it adds only what is missing: an existing
    # file is kept unless --force, and a step's migration is not written twice.
    class InstallGenerator < ::Rails::Generators::Base
      include ::Rails::Generators::Migration

      BACKENDS = %w[sqlite postgres mysql redis memory].freeze

      source_root File.expand_path("templates", __dir__)

      class_option :backend, type: :string, default: nil,
                             desc: "sqlite, postgres, mysql, redis or memory (default: the app's database)"
      class_option :database, type: :string, default: nil,
                              desc: "the config/database.yml entry kaal uses (multiple databases)"

      def self.next_migration_number(dirname)
        ::ActiveRecord::Generators::Base.next_migration_number(dirname)
      end

      def check_options
        return if backend.nil? || BACKENDS.include?(backend)

        raise ::Rails::Generators::Error,
              "kaal:install: --backend must be one of #{BACKENDS.join(", ")}, got #{options[:backend].inspect}"
      end

      def create_config
        template "kaal.yml.tt", "config/kaal.yml", keep_existing
      end

      def create_scheduler_file
        template "kaal-scheduler.yml.tt", "config/kaal-scheduler.yml", keep_existing
      end

      def create_migration_files
        return unless sql?

        migration_template "create_kaal_tables.rb.tt", File.join(db_migrate_path, "create_kaal_tables.rb"),
                           keep_existing
        (2..Kaal::Backend::Schema::VERSION).each do |step|
          @step = step
          migration_template "kaal_schema_step.rb.tt", File.join(db_migrate_path, "kaal_schema_step_#{step}.rb"),
                             keep_existing
        end
      end

      def show_next_steps
        say ""
        say "kaal: next steps", :green
        say "  bin/rails db:migrate            # creates (or upgrades) kaal's tables" if sql?
        say "  edit config/kaal-scheduler.yml  # your recurring jobs"
        say "  bundle exec kaal start          # the scheduler process (see the kaal-rails README for Puma)"
      end

      private

      # A file that exists is kept (an identical one says so) unless --force:
      # never an interactive overwrite question.
      def keep_existing
        { skip: !options[:force], force: options[:force] }
      end

      def backend
        options[:backend]&.strip&.downcase
      end

      def sql?
        backend.nil? || %w[sqlite postgres mysql].include?(backend)
      end

      def migration_version
        "[#{::ActiveRecord::Migration.current_version}]"
      end

      # The migrations directory of the chosen database (multiple databases),
      # else db/migrate.
      def db_migrate_path
        name = options[:database]
        return "db/migrate" if name.nil? || name.empty?

        config = ::ActiveRecord::Base.configurations.configs_for(env_name: ::Rails.env, name: name)
        raise ::Rails::Generators::Error, "kaal:install: config/database.yml has no database #{name.inspect}" unless config

        Array(config.migrations_paths).first || "db/migrate"
      end
    end
  end
end
