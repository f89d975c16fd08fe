# frozen_string_literal: true

require_relative "backend/connection_params"
require_relative "backend/schema"

module Kaal
  # Where the scheduler keeps its shared state: claims, the dispatch log,
  # enable/disable overrides, delayed jobs and node heartbeats.
  #
  #   backend = Kaal::Backend.build(:redis, namespace: "my-app", config: { url: "redis://..." })
  #   backend.claim([["report", 1_767_225_600]], lease_ms: 125_000, node: "web-1", now: Time.now)
  #   # => [true]
  #
  # The handle is a Kaal::Native::Backend (C). It connects lazily, reconnects
  # after a lost connection or a fork, is safe to share between threads (calls
  # are serialised per handle) and releases the GVL while it waits on the
  # server. See Kaal::Native::Backend for the methods.
  module Backend
    module_function

    # kind: :memory, :redis, :sqlite, :postgres or :mysql (aliases such as
    # :postgresql, :mysql2, :sqlite3 are accepted). config: see
    # Kaal::Backend::ConnectionParams.from. log_retention: seconds a Redis
    # dispatch-log entry lives after its last write (the scheduler passes
    # dispatch_log_retention; default 7 days). Nothing is connected yet.
    def build(kind, namespace:, config: {}, log_retention: nil)
      kind = ConnectionParams.normalize_kind(kind)
      unless namespace.is_a?(String) || namespace.is_a?(Symbol)
        raise ConfigurationError, "namespace must be a String, got #{namespace.class}"
      end
      if namespace.to_s.empty? || namespace.to_s.include?("\0")
        raise ConfigurationError, "namespace must be a non-empty String without NUL bytes"
      end
      if (problem = StoredText.problem(namespace.to_s))
        raise ConfigurationError, "namespace: #{problem}"
      end

      params = ConnectionParams.from(kind, config)
      check_tls(kind, params)
      params = params.merge("log_ttl_s" => log_ttl_s(log_retention)) if log_retention && kind == :redis
      Native::Backend.new(kind.to_s, namespace.to_s, params)
    end

    # A build without libssl has no TLS for Redis: a rediss:// URL or ssl:
    # true is refused here, where the configuration is read, rather than at
    # every connection attempt of a running scheduler.
    def check_tls(kind, params)
      return unless kind == :redis && params["sslmode"] && params["sslmode"] != "disable"
      return if Native::REDIS_TLS

      raise ConfigurationError, "redis: this build has no TLS support (rediss:// or ssl): install libssl-dev " \
                                "and reinstall kaal (gem pristine kaal, or bin/compile in a checkout)"
    end

    # Names of the backends compiled into this build, as Symbols.
    def available
      Native.backends.map(&:to_sym)
    end

    def log_ttl_s(seconds)
      unless seconds.is_a?(Numeric) && seconds.positive? && seconds < 2**31
        raise ConfigurationError, "log_retention must be a number of seconds > 0 (below 2**31), got #{seconds.inspect}"
      end

      seconds.ceil
    end
  end

  module Native
    # One handle on a backend (see Kaal::Backend.build). Times are whole Unix
    # seconds (an Integer, or a Time which is truncated) unless the name ends
    # in _ms (Unix milliseconds). Results carry Integers, never Time objects.
    class Backend
      STATUSES = %w[claimed dispatched failed].freeze
      OUTCOMES = %w[dispatched failed].freeze
      MAX_ERROR_BYTES = 4000

      # Opens the session now (otherwise the first call does). Returns self.
      def connect
        _connect
      end

      # Closes the session; the next call reconnects. The memory backend keeps
      # its data (it lives as long as the handle).
      def close
        _close
        nil
      end

      # Connects if needed and asks the server something trivial. true, or
      # Kaal::ConnectionError when it cannot be reached.
      def ping
        _ping
      end

      # Creates the tables (SQL; nothing to do for Redis and memory). Idempotent.
      def migrate
        _migrate
        self
      end

      # pairs: [[job key String, fire time], ...]. Returns one Boolean per pair,
      # in order: true when this call won the pair. A pair already claimed or
      # recorded in the dispatch log is never won again.
      def claim(pairs, lease_ms:, node:, now:)
        raise ArgumentError, "pairs must be an Array of [key, fire_time], got #{pairs.class}" unless pairs.is_a?(Array)
        return [] if pairs.empty?

        lease_ms = positive_int(lease_ms, "lease_ms")
        node = text(node, "node")
        now = seconds(now, "now")
        begin
          # The C side checks every pair before it claims any: plain
          # [String, Integer] pairs go straight there.
          return _claim(pairs, lease_ms, node, now)
        rescue ArgumentError
          nil # converted (Time fire times) or named (the bad pair) below
        end
        _claim(normalized_pairs(pairs), lease_ms, node, now)
      end

      # #claim for the scheduler's batches, without an Array per pair: job
      # keys (Strings) and fire times (Integer Unix seconds) in two Arrays of
      # one size. Same result as #claim(keys.zip(fire_times), ...).
      def claim_columns(keys, fire_times, lease_ms:, node:, now:)
        unless keys.is_a?(Array) && fire_times.is_a?(Array)
          raise ArgumentError, "keys and fire_times must be Arrays, got #{keys.class} and #{fire_times.class}"
        end
        return [] if keys.empty? && fire_times.empty?

        _claim_columns(keys, fire_times, positive_int(lease_ms, "lease_ms"), text(node, "node"), seconds(now, "now"))
      end

      # Where the backend's server is: {host:, port:, socket:, database:,
      # path:, username:, and for Redis Sentinel sentinels:, sentinel_master:}
      # (the keys it has; never the password).
      def location
        _target.transform_keys(&:to_sym)
      end

      # Claims the pairs as #claim_columns does and, in the same atomic step,
      # writes each won pair's push into the same store (backends where
      # claim_push? is true: Redis). pushes[i] = [op, target, payload, set,
      # extra]: op "l" pushes payload onto the list target and adds extra to
      # the set named set (nil: no set); "z" adds payload to the sorted set
      # target with score extra; "-" pushes nothing. A won pair's dispatch-log
      # row says "dispatched". Returns one Boolean per pair.
      def claim_push(keys, fire_times, pushes, lease_ms:, node:, now:)
        unless keys.is_a?(Array) && fire_times.is_a?(Array) && pushes.is_a?(Array)
          raise ArgumentError, "keys, fire_times and pushes must be Arrays, got #{keys.class}, " \
                               "#{fire_times.class} and #{pushes.class}"
        end
        return [] if keys.empty? && fire_times.empty? && pushes.empty?

        _claim_push(keys, fire_times, pushes, positive_int(lease_ms, "lease_ms"), text(node, "node"),
                    seconds(now, "now"))
      end

      # Sets the outcome of a pair: status "dispatched" or "failed" (Symbols
      # accepted). error: a message or an Exception (stored as "Class: message").
      def record(key, fire_time, status, node:, error: nil, now:)
        status = status.to_s if status.is_a?(Symbol)
        unless OUTCOMES.include?(status)
          raise ArgumentError, "status must be \"dispatched\" or \"failed\", got #{status.inspect}"
        end

        _record(key_arg(key, "key"), seconds(fire_time, "fire_time"), status, text(node, "node"),
                error_text(error), seconds(now, "now"))
        nil
      end

      # #record for many runs of one node at once: outcomes is [[key,
      # fire_time, status, error], ...] (error nil, a message or an
      # Exception). One statement or script per batch of outcomes, not one
      # per run; for a (key, fire_time) given twice the last outcome counts.
      def record_many(outcomes, node:, now:)
        raise ArgumentError, "outcomes must be an Array of [key, fire_time, status, error], got #{outcomes.class}" unless outcomes.is_a?(Array)
        return nil if outcomes.empty?

        rows = {}
        outcomes.each do |row|
          unless row.is_a?(Array) && row.size == 4
            raise ArgumentError, "each outcome must be [key, fire_time, status, error], got #{row.inspect}"
          end

          key, fire, status, error = row
          status = status.to_s if status.is_a?(Symbol)
          unless OUTCOMES.include?(status)
            raise ArgumentError, "status must be \"dispatched\" or \"failed\", got #{status.inspect}"
          end

          key = key_arg(key, "key")
          fire = seconds(fire, "fire_time")
          pair = [key, fire]
          rows.delete(pair) # the last outcome of a pair counts, in its place
          rows[pair] = [key, fire, status, error_text(error)]
        end
        _record_many(rows.values, text(node, "node"), seconds(now, "now"))
        nil
      end

      # The dispatch log, newest first (by fire time, then key): [{key:,
      # fire_time:, status:, node:, error:, claimed_at:, updated_at:}].
      # Filters are exact matches. before: a keyset cursor for the next page,
      # the last row of the previous page (or [fire_time, key]): only rows
      # after it in that order are returned.
      def dispatches(key: nil, status: nil, node: nil, limit: 100, before: nil)
        status = status.to_s if status.is_a?(Symbol)
        if status && !STATUSES.include?(status)
          raise ArgumentError, "status must be one of #{STATUSES.join(", ")}, got #{status.inspect}"
        end

        key = key.nil? ? nil : key_arg(key, "key")
        node = node.nil? ? nil : text(node, "node")
        limit = positive_int(limit, "limit")
        return _dispatches(key, status, node, limit) if before.nil?

        fire, after_key = cursor(before)
        _dispatches_before(key, status, node, limit, fire, after_key)
      end

      # The latest fire time (Integer Unix seconds) the dispatch log has for
      # each of +keys+, whatever its status and node, or nil for a key with no
      # row: one Array in the order of keys. One query or script per batch of
      # keys (not one per key): the start tick reads it for every job.
      def latest_fires(keys)
        raise ArgumentError, "keys must be an Array of job keys, got #{keys.class}" unless keys.is_a?(Array)
        return [] if keys.empty?

        begin
          return _latest_fires(keys) # the C side checks every key first
        rescue ArgumentError, TypeError
          nil # named below
        end
        _latest_fires(keys.map { |k| key_arg(k, "key") })
      end

      # "claimed", "dispatched", "failed", or nil when the log has no row.
      def dispatch_status(key, fire_time)
        key = key_arg(key, "key")
        fire = seconds(fire_time, "fire_time")
        limit = 100
        loop do
          rows = _dispatches(key, nil, nil, limit)
          row = rows.find { |r| r[:fire_time] == fire }
          return row[:status] if row
          # Newest first: once past the fire time, or out of rows, it is absent.
          return nil if rows.size < limit || rows.last[:fire_time] < fire

          limit *= 4
        end
      end

      # Deletes at most limit log rows whose fire time is before `before`.
      # Returns how many it deleted.
      def cleanup(before:, limit: 1000)
        _cleanup(seconds(before, "before"), positive_int(limit, "limit"))
      end

      # Persists an enable/disable override for a job key, seen by every node.
      def set_enabled(key, enabled)
        unless enabled == true || enabled == false
          raise ArgumentError, "enabled must be true or false, got #{enabled.inspect}"
        end

        _set_enabled(key_arg(key, "key"), enabled)
        enabled
      end

      # {job key => true/false} for every key ever set.
      def states
        _states
      end

      # Stores a delayed job. Kaal::DuplicateJobError when job_id is pending.
      def delayed_add(job_id:, run_at_ms:, job_class:, args_json:, queue: nil)
        _delayed_add(key_arg(job_id, "job_id"), integer(run_at_ms, "run_at_ms"),
                     key_arg(job_class, "job_class"), queue.nil? ? nil : text(queue, "queue"),
                     text(args_json, "args_json", allow_empty: false))
      end

      # Removes and returns up to limit due jobs (run_at_ms <= now_ms), oldest
      # first: [{job_id:, run_at_ms:, job_class:, queue:, args_json:}]. Each job
      # is returned to exactly one caller.
      def delayed_claim(now_ms:, limit:)
        _delayed_claim(integer(now_ms, "now_ms"), positive_int(limit, "limit"))
      end

      # true when a pending job was removed.
      def delayed_cancel(job_id)
        _delayed_cancel(key_arg(job_id, "job_id"))
      end

      def delayed_count
        _delayed_count
      end

      # Pending jobs, soonest first (by run_at_ms, then job_id; for status
      # pages). after: a keyset cursor for the next page, the last job of the
      # previous page (or [run_at_ms, job_id]): only jobs after it are listed.
      def delayed_list(limit: 100, after: nil)
        limit = positive_int(limit, "limit")
        return _delayed_list(limit) if after.nil?

        run_at_ms, job_id = after.is_a?(Hash) ? after.values_at(:run_at_ms, :job_id) : after
        unless after.is_a?(Hash) || (after.is_a?(Array) && after.size == 2)
          raise ArgumentError, "after must be a delayed job row or [run_at_ms, job_id], got #{after.inspect}"
        end

        _delayed_list_after(integer(run_at_ms, "after run_at_ms"), key_arg(job_id, "after job_id"), limit)
      end

      # Records that node is alive at now (info: JSON text or nil). Nodes not
      # seen for longer than ttl seconds may be forgotten.
      def heartbeat(node, info_json, now:, ttl:)
        _heartbeat(text(node, "node"), info_json.nil? ? nil : text(info_json, "info_json", allow_empty: true),
                   seconds(now, "now"), integer(ttl, "ttl"))
        nil
      end

      # [{node:, info:, last_seen:}] for nodes seen at or after since, by node id.
      def nodes(since:)
        _nodes(seconds(since, "since"))
      end

      # The schema step the store is at (SQL: what `kaal migrate` applied;
      # Redis and memory: always Kaal::Backend::Schema::VERSION).
      def schema_version
        _schema_version
      end

      # Redis: the namespace's key layout, "2", or "1+2" while a rolling
      # upgrade from the previous release's keys is in progress (`kaal
      # migrate` ends it; docs/redis.md). nil for the other stores.
      def layout
        _layout
      end

      # Stores (or replaces) the schedule under key, for every node of the
      # namespace. Plain checked values (Kaal.schedules validates the
      # schedule itself): args_json / kwargs_json are JSON text. Returns the
      # namespace's change counter after the change.
      def schedule_upsert(key:, cron:, job_class:, args_json:, kwargs_json:, time_zone:, queue:, enabled:, now:)
        unless enabled == true || enabled == false
          raise ArgumentError, "enabled must be true or false, got #{enabled.inspect}"
        end

        _schedule_upsert(key_arg(key, "key"), text(cron, "cron"), text(job_class, "job_class"),
                         text(args_json, "args_json"), text(kwargs_json, "kwargs_json"),
                         time_zone.nil? ? nil : text(time_zone, "time_zone"), queue.nil? ? nil : text(queue, "queue"),
                         enabled, seconds(now, "now"))
      end

      # Removes the schedule under key: [removed?, counter].
      def schedule_remove(key, now:)
        _schedule_remove(key_arg(key, "key"), seconds(now, "now"))
      end

      # The stored schedule {key:, cron:, job_class:, args_json:, kwargs_json:,
      # time_zone:, queue:, enabled:, deleted: false, version:, updated_at:},
      # or nil.
      def schedule_get(key)
        _schedule_get(key_arg(key, "key"))
      end

      # Up to limit stored schedules by key (bytes), after the key `after`.
      def schedule_list(after: nil, limit: 100)
        _schedule_list(after.nil? ? nil : key_arg(after, "after"), positive_int(limit, "limit"))
      end

      # The change feed: [counter, rows changed after version `since`, by
      # version, up to limit] (removed keys have deleted: true). When the
      # counter has not moved past since, one cheap read and no rows.
      def schedule_changes(since:, limit: 1000)
        _schedule_changes(integer(since, "since"), positive_int(limit, "limit"))
      end

      # #schedule_changes as columns, for a node loading a million stored
      # schedules: [counter, last row's version (0: none), keys, args,
      # kwargs, definitions, def_of], one entry per row in the same order.
      # definitions: the distinct frozen [cron, job_class, time_zone, queue,
      # enabled, index of the first row with it] of the rows. def_of[i]: nil
      # for a removed key; d >= 0 when row i is plain (kwargs {}, args a JSON
      # list with no placeholder: args[i] its text, or the Integer n when it
      # is [n]; kwargs[i] nil); ~d otherwise (args[i] and kwargs[i] its JSON
      # texts). d indexes definitions.
      def schedule_change_columns(since:, limit: 25_000)
        _schedule_change_columns(integer(since, "since"), positive_int(limit, "limit"))
      end

      def schedule_count
        _schedule_count
      end

      def inspect
        target = _target.map { |k, v| "#{k}=#{v}" }.join(" ")
        parts = ["#{self.class} #{kind}", "namespace=#{namespace.inspect}"]
        parts << target unless target.empty?
        parts << (connected? ? "connected" : "not connected")
        "#<#{parts.join(" ")}>"
      end
      alias to_s inspect

      private

      def cursor(before)
        fire, key = before.is_a?(Hash) ? before.values_at(:fire_time, :key) : before
        unless before.is_a?(Hash) || (before.is_a?(Array) && before.size == 2)
          raise ArgumentError, "before must be a dispatch row or [fire_time, key], got #{before.inspect}"
        end

        [seconds(fire, "before fire_time"), key_arg(key, "before key")]
      end

      def normalized_pairs(pairs)
        pairs.each_with_index.map do |pair, i|
          unless pair.is_a?(Array) && pair.size == 2
            raise ArgumentError, "pairs[#{i}] must be [key, fire_time], got #{pair.inspect}"
          end

          [key_arg(pair[0], "pairs[#{i}] key"), seconds(pair[1], "pairs[#{i}] fire_time")]
        end
      end

      def key_arg(value, what)
        value = value.to_s if value.is_a?(Symbol)
        text(value, what)
      end

      def text(value, what, allow_empty: false)
        raise ArgumentError, "#{what} must be a String, got #{value.class}" unless value.is_a?(String)
        raise ArgumentError, "#{what} must not be empty" if value.empty? && !allow_empty
        raise ArgumentError, "#{what} must not contain NUL bytes" if value.include?("\0")

        value
      end

      def seconds(value, what)
        case value
        when Integer then value
        when Time then value.to_i
        else
          raise ArgumentError, "#{what} must be a Time or an Integer (Unix seconds), got #{value.class}"
        end
      end

      def integer(value, what)
        return value if value.is_a?(Integer)

        raise ArgumentError, "#{what} must be an Integer, got #{value.class}"
      end

      def positive_int(value, what)
        integer(value, what)
        raise ArgumentError, "#{what} must be > 0, got #{value}" unless value.positive?

        value
      end

      def error_text(error)
        return nil if error.nil?

        msg = error.is_a?(Exception) ? "#{error.class}: #{error.message}" : error.to_s
        msg = StoredText.utf8(msg).delete("\0")
        msg = msg.byteslice(0, MAX_ERROR_BYTES).scrub("") if msg.bytesize > MAX_ERROR_BYTES
        msg
      end
    end
  end
end
