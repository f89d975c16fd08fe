# frozen_string_literal: true

module Kaal
  module Handoff
    # Sidekiq jobs on the Redis of the redis backend: the payload is built by
    # Sidekiq's own client (normalize, sidekiq_options, client middleware,
    # JSON check), caught before it reaches Redis, and pushed by kaal's claim
    # script together with the claim and the "dispatched" log row: the job
    # in queue:<name> (and <name> in the queues set), or, for a job with an
    # at: time, in the schedule set.
    class Sidekiq
      CAPTURE = :kaal_handoff_sidekiq_payloads

      # Sidekiq::Client#raw_push while kaal builds a payload: keep it, send
      # nothing.
      module Capture
        private

        def raw_push(payloads)
          box = Thread.current[CAPTURE]
          return super unless box

          box.concat(payloads)
          true
        end
      end

      # [route, nil] or [nil, reason] for the Sidekiq job class +klass+.
      def self.route(klass, backend)
        unless backend.kind.to_s == "redis"
          return [nil, "#{klass} is a Sidekiq job: it hands off atomically only on the redis backend, in the " \
                       "Redis that Sidekiq uses (kaal's backend is #{backend.kind})"]
        end
        return [nil, "this build's redis backend cannot claim and push in one step"] unless backend.claim_push?

        theirs = sidekiq_location(klass)
        ours = backend.location
        unless same_redis?(ours, theirs)
          return [nil, "#{klass}'s Sidekiq Redis (#{describe(theirs)}) is not the Redis of kaal's backend " \
                       "(#{describe(ours)}): claim and job must be in one server and database"]
        end
        [new(klass, backend), nil]
      end

      # {host:, port:, socket:, database:} of the Redis +klass+ pushes to.
      def self.sidekiq_location(klass)
        pool = klass.get_sidekiq_options["pool"] if klass.respond_to?(:get_sidekiq_options)
        pool ||= ::Sidekiq.default_configuration.redis_pool
        config = pool.with { |conn| conn.config }
        { host: config.respond_to?(:path) && config.path ? nil : config.host.to_s,
          port: config.respond_to?(:path) && config.path ? nil : config.port.to_i,
          socket: config.respond_to?(:path) ? config.path : nil, database: config.db.to_i }
      end

      LOCAL = %w[localhost 127.0.0.1 ::1 [::1]].freeze

      def self.same_redis?(ours, theirs)
        return false unless ours[:database].to_i == theirs[:database].to_i
        return ours[:socket] == theirs[:socket] if ours[:socket] || theirs[:socket]

        host = ->(h) { LOCAL.include?(h.to_s.downcase) || h.to_s.empty? ? "local" : h.to_s.downcase }
        host.call(ours[:host]) == host.call(theirs[:host]) && (ours[:port] || 6379).to_i == (theirs[:port] || 6379).to_i
      end

      def self.describe(loc)
        where = loc[:socket] ? "unix:#{loc[:socket]}" : "#{loc[:host] || "127.0.0.1"}:#{loc[:port] || 6379}"
        "#{where}/#{loc[:database].to_i}"
      end

      attr_reader :klass

      def initialize(klass, backend)
        @klass = klass
        @backend = backend
        ::Sidekiq::Client.prepend(Capture) unless ::Sidekiq::Client <= Capture
      end

      # Claims the dispatches' pairs and pushes their jobs in one script.
      # Returns the won dispatches, status "dispatched" (or "failed" for a
      # run whose payload could not be built: claimed, recorded failed, never
      # pushed). Raises BackendError when Redis is unreachable: then nothing
      # was claimed or pushed.
      def hand_off(dispatches, lease_ms:, node:, now:, wrapper: nil) # wrapper: unused (no app code runs here)
        started = Clock.monotonic
        built = []
        failed = []
        dispatches.each do |d|
          built << [d, payload(d)]
        rescue StandardError, ScriptError => e
          failed << [d, e]
        end
        won = push(built, lease_ms: lease_ms, node: node, now: now)
        duration = Clock.monotonic - started
        won.each do |d|
          d.status = "dispatched"
          d.duration = duration
        end
        won + fail_runs(failed, lease_ms: lease_ms, node: node, now: now)
      end

      private

      # The payload Sidekiq's client would push for the run (nil when a
      # client middleware stopped it).
      def payload(dispatch)
        args, kwargs = dispatch.arguments
        args += [kwargs.transform_keys(&:to_s)] unless kwargs.empty?
        options = dispatch.enqueue_options
        target = options.empty? ? @klass : @klass.set(**options)
        box = []
        Thread.current[CAPTURE] = box
        begin
          target.perform_async(*args)
        ensure
          Thread.current[CAPTURE] = nil
        end
        box.first
      end

      # [op, target, payload, set, extra] for the claim script, as Sidekiq's
      # client writes a job: scheduled ones to "schedule" (score: at),
      # others to queue:<name> with enqueued_at now, <name> into "queues".
      def push_spec(payload, now_f)
        return ["-", "", "", nil, nil] if payload.nil?

        if payload.key?("at")
          job = payload.dup
          at = job.delete("at").to_s
          job.delete("enqueued_at")
          ["z", "schedule", ::Sidekiq.dump_json(job), nil, at]
        else
          queue = payload["queue"].to_s
          ["l", "queue:#{queue}", ::Sidekiq.dump_json(payload.merge("enqueued_at" => now_f)), "queues", queue]
        end
      end

      def push(built, lease_ms:, node:, now:)
        return [] if built.empty?

        now_f = Time.now.to_f
        keys = built.map { |d, _| d.key }
        fires = built.map { |d, _| d.fire_epoch }
        specs = built.map { |_, p| push_spec(p, now_f) }
        won = @backend.claim_push(keys, fires, specs, lease_ms: lease_ms, node: node, now: now)
        built.each_with_index.filter_map { |(d, _), i| d if won[i] }
      end

      # Runs whose payload could not be built: claimed, then recorded
      # failed with the error (as a dispatch that raised).
      def fail_runs(failed, lease_ms:, node:, now:)
        return [] if failed.empty?

        won = @backend.claim_columns(failed.map { |d, _| d.key }, failed.map { |d, _| d.fire_epoch },
                                     lease_ms: lease_ms, node: node, now: now)
        failed.each_with_index.filter_map do |(d, e), i|
          next unless won[i]

          d.status = "failed"
          d.error = Dispatcher.describe_error(e)
          d.exception = e
          d.duration = 0.0
          @backend.record(d.key, d.fire_epoch, "failed", node: node, error: d.error, now: now)
          d
        end
      end
    end
  end
end
