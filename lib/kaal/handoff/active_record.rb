# frozen_string_literal: true

module Kaal
  module Handoff
    # Active Job classes on solid_queue or good_job, in the database of an
    # SQL backend: per run, the queue's own Active Record connection inserts
    # the dispatch-log row (status "dispatched"; nothing when the pair has a
    # row already) and enqueues the job in one savepoint, so the job row and
    # the claim row commit together or not at all. The runs of a tick go in
    # chunks of CHUNK, one transaction each (docs/guarantee.md).
    class ActiveRecord
      NOW = :kaal_handoff_enqueue_now
      CHUNK = 100
      SQL_BACKENDS = %w[postgres sqlite mysql].freeze

      # ActiveJob's enqueue_after_transaction_commit would move the enqueue
      # after the commit, out of the transaction that holds the claim: for
      # kaal's own transaction the job is enqueued at once.
      module Immediate
        private

        def raw_enqueue
          return super unless Thread.current[NOW].equal?(self)

          ::ActiveJob::Enqueuing.instance_method(:raw_enqueue).bind_call(self)
        end
      end

      # The run's enqueue failed (not the database): the transaction is
      # rolled back and the run recorded failed.
      class JobError < StandardError; end

      # Errors of the database itself (unreachable, locked, timed out): the
      # tick fails closed and the pair is tried again. Any other error of an
      # enqueue (an invalid job row, an argument that does not serialize) is
      # the job's, so one broken job cannot hold back the others.
      STORE_ERRORS = %w[ActiveRecord::ConnectionNotEstablished ActiveRecord::ConnectionFailed
                        ActiveRecord::DatabaseConnectionError ActiveRecord::AdapterTimeout
                        ActiveRecord::StatementTimeout ActiveRecord::LockWaitTimeout ActiveRecord::QueryCanceled
                        ActiveRecord::TransactionRollbackError ActiveRecord::ConnectionTimeoutError].freeze

      def self.store_error?(error)
        STORE_ERRORS.any? { |name| (klass = Object.const_get(name) rescue nil) && error.is_a?(klass) } ||
          error.cause.class.name.to_s.match?(/ConnectionBad|UnableToSend|BusyException|Trilogy::(Connection|Timeout)/)
      end

      # [route, nil] or [nil, reason] for the Active Job class +klass+.
      def self.route(klass, backend)
        adapter = klass.respond_to?(:queue_adapter) ? klass.queue_adapter : nil
        queue = queue_name(adapter)
        unless queue
          name = klass.respond_to?(:queue_adapter_name) ? klass.queue_adapter_name : adapter.class.name
          return [nil, "#{klass} uses the #{name} Active Job adapter: atomic hand-off needs solid_queue or " \
                       "good_job in the SQL backend's database (or a Sidekiq job class on the redis backend)"]
        end
        if queue == "good_job" && adapter.respond_to?(:execution_mode) && adapter.execution_mode == :inline
          return [nil, "good_job runs #{klass} inline (execution_mode :inline): there is no queue to hand it to"]
        end
        unless SQL_BACKENDS.include?(backend.kind.to_s)
          return [nil, "#{klass} is queued by #{queue} in an SQL database, kaal's backend is #{backend.kind}: use " \
                       "the backend of that database (postgres, sqlite or mysql)"]
        end

        record = queue == "solid_queue" ? ::SolidQueue::Record : ::GoodJob::BaseRecord
        theirs = record.connection_db_config.configuration_hash
        ours = backend.location
        unless same_database?(backend.kind.to_s, ours, theirs)
          return [nil, "#{klass} is queued by #{queue} in #{describe(theirs)}, kaal's #{backend.kind} backend is " \
                       "#{describe(ours)}: claim and job must be in one database"]
        end
        [new(klass, record, backend), nil]
      end

      def self.queue_name(adapter)
        name = adapter.class.name.to_s
        if name == "ActiveJob::QueueAdapters::SolidQueueAdapter" && defined?(::SolidQueue::Record)
          "solid_queue"
        elsif (name == "GoodJob::Adapter" || name == "ActiveJob::QueueAdapters::GoodJobAdapter") &&
              defined?(::GoodJob::BaseRecord)
          "good_job"
        end
      end

      LOCAL = %w[localhost 127.0.0.1 ::1].freeze

      def self.same_database?(kind, ours, theirs)
        theirs = theirs.transform_keys(&:to_sym)
        if kind == "sqlite"
          root = defined?(::Rails) && ::Rails.respond_to?(:root) && ::Rails.root ? ::Rails.root.to_s : Dir.pwd
          return File.expand_path(ours[:path].to_s, root) == File.expand_path(theirs[:database].to_s, root)
        end
        return false unless ours[:database].to_s == theirs[:database].to_s

        host = ->(h) { h.nil? || h.to_s.empty? || h.to_s.start_with?("/") || LOCAL.include?(h.to_s) ? "local" : h.to_s }
        default = kind == "postgres" ? 5432 : 3306
        host.call(ours[:host]) == host.call(theirs[:host]) &&
          (ours[:port] || default).to_i == (theirs[:port] || default).to_i
      end

      def self.describe(loc)
        loc = loc.transform_keys(&:to_sym)
        return loc[:path] || loc[:database].to_s if loc[:path] || loc[:adapter].to_s.start_with?("sqlite")

        "#{loc[:host] || "localhost"}:#{loc[:port] || "default port"}/#{loc[:database]}"
      end

      attr_reader :klass

      def initialize(klass, record, backend)
        @klass = klass
        @record = record
        @backend = backend
        @namespace = backend.namespace
        @ignore = backend.kind.to_s == "mysql"
        if defined?(::ActiveJob::EnqueueAfterTransactionCommit) &&
           !(::ActiveJob::EnqueueAfterTransactionCommit <= Immediate)
          ::ActiveJob::EnqueueAfterTransactionCommit.prepend(Immediate)
        end
      end

      # One transaction per chunk of runs, a savepoint per run inside it:
      # insert the "dispatched" log row, enqueue the job. A run whose
      # enqueue raises is rolled back to its savepoint alone (its claim row
      # and job row both go) and the chunk goes on; after the commit it is
      # claimed and recorded "failed". Returns the won dispatches. Raises
      # BackendError when the database cannot be used: the whole chunk is
      # rolled back, it and the runs after it were not claimed (the next
      # tick tries them again). The wrapper (job_wrapper) wraps each chunk.
      def hand_off(dispatches, lease_ms:, node:, now:, wrapper: nil)
        out = []
        dispatches.each_slice(CHUNK) do |chunk|
          failed = []
          won = wrapper ? wrapper.call { transaction(chunk, node, now, failed) } : transaction(chunk, node, now, failed)
          failed.each { |d, error| won << d if fail_run(d, error, lease_ms: lease_ms, node: node, now: now) }
          out.concat(won)
        end
        out
      rescue ::ActiveRecord::ActiveRecordError => e
        raise BackendError, "hand-off through #{@record.name}'s connection failed: #{e.class}: " \
                            "#{e.message.lines.first&.chomp}"
      end

      private

      # The runs of +chunk+ this transaction won and enqueued; the ones
      # whose enqueue failed are added to +failed+ as [dispatch, error].
      def transaction(chunk, node, now, failed)
        won = []
        @record.connection_pool.with_connection do |conn|
          conn.transaction(requires_new: true) do
            chunk.each do |d|
              started = Clock.monotonic
              conn.transaction(requires_new: true) do
                next unless conn.exec_update(claim_sql(conn, d, node, now), "Kaal hand-off", []) == 1

                enqueue(d)
                d.duration = Clock.monotonic - started
                d.status ||= "dispatched"
                won << d
              end
            rescue JobError => e
              d.duration = Clock.monotonic - started
              failed << [d, e.cause || e]
            end
          end
        end
        won
      end

      def claim_sql(conn, d, node, now)
        values = [@namespace, d.key, d.fire_epoch, "dispatched", node, now, now].map { |v| conn.quote(v) }.join(", ")
        columns = %w[namespace job_key fire_time status node claimed_at updated_at]
                  .map { |c| conn.quote_column_name(c) }.join(", ")
        table = conn.quote_table_name("kaal_dispatches")
        if @ignore
          "INSERT IGNORE INTO #{table} (#{columns}) VALUES (#{values})"
        else
          "INSERT INTO #{table} (#{columns}) VALUES (#{values}) ON CONFLICT DO NOTHING"
        end
      end

      def enqueue(dispatch)
        args, kwargs = dispatch.arguments
        job = @klass.new(*args, **kwargs)
        Thread.current[NOW] = job
        enqueued = begin
          job.enqueue(dispatch.enqueue_options)
        rescue ::ActiveRecord::ActiveRecordError => e
          raise if ActiveRecord.store_error?(e)

          raise JobError, "enqueue of #{@klass} failed"
        rescue StandardError, ScriptError
          raise JobError, "enqueue of #{@klass} failed"
        ensure
          Thread.current[NOW] = nil
        end
        raise JobError, "enqueue of #{@klass} was stopped (a before_enqueue callback halted it)" unless enqueued
      end

      def fail_run(d, error, lease_ms:, node:, now:)
        return nil unless @backend.claim_columns([d.key], [d.fire_epoch], lease_ms: lease_ms, node: node, now: now).first

        d.status = "failed"
        d.error = Dispatcher.describe_error(error)
        d.exception = error
        @backend.record(d.key, d.fire_epoch, "failed", node: node, error: d.error, now: now)
        true
      end
    end
  end
end
