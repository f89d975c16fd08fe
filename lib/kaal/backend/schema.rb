# frozen_string_literal: true

module Kaal
  module Backend
    # The SQL side of kaal's tables: the DDL of each dialect in numbered steps
    # (one definition, kept in C next to the backend that uses it; `kaal
    # migrate` applies the steps a database lacks, the Rails generator writes
    # one migration per step) and the enqueue of a delayed
    # job through a connection the application already holds, so the job is
    # stored or not together with the application's own transaction.
    #
    #   Kaal::Backend::Schema::VERSION               # => 2, the latest step
    #   Kaal::Backend::Schema.step(2, :postgres)     # => ["CREATE TABLE IF NOT EXISTS kaal_schema_steps ...", ...]
    #   Kaal::Backend::Schema.statements(:postgres)  # => step 1 (the first release's tables)
    #
    #   ActiveRecord::Base.transaction do
    #     order.save!
    #     Kaal::Backend::Schema.enqueue_through(ActiveRecord::Base.connection,
    #       dialect: :postgres, namespace: "kaal", job_id: "receipt-#{order.id}",
    #       run_at_ms: 1_800_000_000_000, job_class: "ReceiptJob", queue: nil,
    #       args_json: "[42]")
    #   end                                         # rolled back => no job either
    module Schema
      DIALECTS = %w[sqlite postgres mysql].freeze

      # Names adapters and users commonly give each dialect.
      ALIASES = {
        "sqlite" => "sqlite", "sqlite3" => "sqlite",
        "postgres" => "postgres", "postgresql" => "postgres", "postgis" => "postgres",
        "mysql" => "mysql", "mysql2" => "mysql", "trilogy" => "mysql", "mariadb" => "mysql"
      }.freeze

      # The latest schema step; a database at an older one is upgraded by
      # `kaal migrate` (Rails: the migration of each missing step).
      VERSION = Native::SCHEMA_VERSION

      TABLE = "kaal_delayed_jobs"
      COLUMNS = %w[namespace job_id run_at_ms job_class queue args created_at].freeze

      # What errors about missing tables tell the user to run.
      DEFAULT_MIGRATE_COMMAND = "kaal migrate"
      @migrate_command = DEFAULT_MIGRATE_COMMAND

      class << self
        attr_reader :migrate_command, :upgrade_command

        # What a node that refuses an older schema tells the user to run,
        # when it is more than the migrate command (kaal-rails: the generator
        # writes the migrations of new steps first). nil: the migrate command.
        def upgrade_command=(command)
          unless command.nil? || (command.is_a?(String) && !command.strip.empty?)
            raise ArgumentError, "upgrade_command must be nil or a non-empty String, got #{command.inspect}"
          end

          @upgrade_command = command&.dup&.freeze
        end

        # The command that creates kaal's tables in this application, named
        # by every "table missing" error ("bin/rails db:migrate" in a Rails
        # app, where the tables come from Active Record migrations).
        def migrate_command=(command)
          unless command.is_a?(String) && !command.strip.empty?
            raise ArgumentError, "migrate_command must be a non-empty String, got #{command.inspect}"
          end

          @migrate_command = command.dup.freeze
          Native::Backend.prepend(MigrateHint) unless command == DEFAULT_MIGRATE_COMMAND
        end

        # error (a Kaal::BackendError) with the migrate command of this
        # application in its message.
        def hinted(error)
          hint = "`#{DEFAULT_MIGRATE_COMMAND}`"
          return error if @migrate_command == DEFAULT_MIGRATE_COMMAND || !error.message.include?(hint)

          copy = error.class.new(error.message.sub(hint, "`#{@migrate_command}`"))
          copy.set_backtrace(error.backtrace)
          copy
        end
      end

      # Prepended to Kaal::Native::Backend once an application names its own
      # migrate command: the backend's "table missing" errors name it.
      module MigrateHint
        %i[claim claim_columns record dispatches dispatch_status cleanup set_enabled states delayed_add
           delayed_claim delayed_cancel delayed_count delayed_list heartbeat nodes schedule_upsert
           schedule_remove schedule_get schedule_list schedule_changes schedule_change_columns
           schedule_count].each do |name|
          define_method(name) do |*args, **kwargs, &block|
            super(*args, **kwargs, &block)
          rescue Kaal::BackendError => e
            raise Schema.hinted(e)
          end
        end
      end

      module_function

      # Step 1's idempotent DDL statements (CREATE TABLE / CREATE INDEX IF NOT
      # EXISTS) for dialect, in the order they must run: the tables of the
      # first release. Migrations written before schema steps existed call
      # this; later steps come from #step.
      def statements(dialect)
        step(1, dialect)
      end

      # [[step 1's statements], [step 2's], ...] for dialect.
      def steps(dialect)
        Kaal::Native.schema_steps(normalize_dialect(dialect))
      end

      # The statements of step number (1..VERSION) for dialect, in order.
      # Every statement is idempotent; from step 2 on, a step also records
      # itself in kaal_schema_steps.
      def step(number, dialect)
        unless number.is_a?(Integer) && number.between?(1, VERSION)
          raise ArgumentError, "schema step must be an Integer from 1 to #{VERSION}, got #{number.inspect}"
        end

        steps(dialect)[number - 1]
      end

      # The names of kaal's tables (of every step, or of step when given), in
      # creation order.
      def tables(dialect = "sqlite", step: nil)
        list = step ? self.step(step, dialect) : steps(dialect).flatten
        list.filter_map { |sql| sql[/\ACREATE TABLE IF NOT EXISTS\s+(\w+)/i, 1] }
      end

      # The error a node raises against a database at an older step than
      # this kaal (Kaal::BackendError naming the command to run).
      def outdated_error(backend, version)
        Kaal::BackendError.new(
          "#{backend}: kaal's tables are at schema step #{version} of #{VERSION} " \
          "(this kaal #{Kaal::VERSION} needs step #{VERSION}): run `#{upgrade_command || migrate_command}` to upgrade them, " \
          "then start again"
        )
      end

      # "sqlite" / "postgres" / "mysql" for any accepted spelling, else
      # Kaal::ConfigurationError.
      def normalize_dialect(dialect)
        ALIASES.fetch(dialect.to_s.downcase) do
          raise Kaal::ConfigurationError,
                "unknown SQL dialect #{dialect.inspect}: use one of #{DIALECTS.join(", ")}"
        end
      end

      # Insert one pending delayed job through connection: an Active Record
      # connection adapter (or a model class / ActiveRecord::Base, whose
      # connection is used) or a Sequel::Database. The row is written inside a
      # savepoint of the caller's transaction (a plain transaction when there
      # is none), so it commits or rolls back with the caller's work, and a
      # duplicate leaves the caller's transaction usable.
      #
      # Raises Kaal::DuplicateJobError when job_id is already pending in
      # namespace. Returns job_id.
      def enqueue_through(connection, dialect:, namespace:, job_id:, run_at_ms:, job_class:,
                          queue:, args_json:)
        dialect = normalize_dialect(dialect)
        row = {
          "namespace" => namespace.to_s, "job_id" => job_id.to_s,
          "run_at_ms" => Integer(run_at_ms), "job_class" => job_class.to_s,
          "queue" => queue&.to_s, "args" => args_json.to_s, "created_at" => Time.now.to_i
        }
        if sequel?(connection)
          insert_sequel(connection, row)
        elsif active_record?(connection)
          insert_active_record(connection, row)
        else
          raise ArgumentError,
                "connection: expected an Active Record connection or a Sequel::Database " \
                "(#{dialect}), got #{connection.class}"
        end
        row["job_id"]
      end

      def sequel?(connection)
        defined?(::Sequel::Database) && connection.is_a?(::Sequel::Database)
      end

      def active_record?(connection)
        return false unless defined?(::ActiveRecord::Base)

        connection.is_a?(::ActiveRecord::ConnectionAdapters::AbstractAdapter) ||
          (connection.is_a?(Class) && connection <= ::ActiveRecord::Base)
      end

      def insert_sequel(db, row)
        db.transaction(savepoint: true) do
          db[TABLE.to_sym].insert(row.transform_keys(&:to_sym))
        end
      rescue ::Sequel::UniqueConstraintViolation
        raise duplicate(row)
      rescue ::Sequel::DatabaseError => e
        raise missing_table?(e) ? not_migrated(e) : e
      end

      def insert_active_record(connection, row)
        if connection.is_a?(Class)
          connection.connection_pool.with_connection { |c| insert_active_record(c, row) }
          return
        end
        # Values go through the adapter's own quoting for its own connection.
        values = COLUMNS.map { |c| connection.quote(row[c]) }.join(", ")
        columns = COLUMNS.map { |c| connection.quote_column_name(c) }.join(", ")
        sql = "INSERT INTO #{connection.quote_table_name(TABLE)} (#{columns}) VALUES (#{values})"
        connection.transaction(requires_new: true) do
          connection.exec_insert(sql, "Kaal enqueue", []) # binds: the trilogy adapter requires them
        end
      rescue ::ActiveRecord::RecordNotUnique
        raise duplicate(row)
      rescue ::ActiveRecord::StatementInvalid => e
        raise missing_table?(e) ? not_migrated(e) : e
      end

      # PostgreSQL 42P01, SQLite "no such table", MySQL 1146.
      def missing_table?(error)
        text = "#{error.message} #{error.cause&.message}"
        text.include?(TABLE) &&
          text.match?(/does not exist|no such table|could not find table|doesn.t exist|UndefinedTable|1146/i)
      end

      def not_migrated(error)
        Kaal::BackendError.new(
          "#{TABLE} does not exist in this database (#{error.message.lines.first.to_s.strip}): " \
          "run `#{Schema.migrate_command}` to create kaal's tables"
        )
      end

      def duplicate(row)
        Kaal::DuplicateJobError.new(
          "delayed job #{row["job_id"].inspect} is already pending in namespace " \
          "#{row["namespace"].inspect}; cancel it first or choose another job_id"
        )
      end

      private_class_method :sequel?, :active_record?, :insert_sequel, :insert_active_record,
                           :duplicate, :missing_table?, :not_migrated
    end
  end
end
