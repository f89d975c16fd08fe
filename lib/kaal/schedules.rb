# frozen_string_literal: true

require "json"

module Kaal
  # Stored schedules: recurring jobs kept in the shared backend, created and
  # changed at runtime (a report per customer, in the customer's zone), seen
  # by every node within a tick (README, "Stored schedules").
  #
  #   Kaal.schedules.upsert(key: "report:42", cron: "0 9 * * *", job_class: "ReportJob",
  #                         args: [42], time_zone: "Europe/Paris")
  #   Kaal.schedules.find("report:42")   # => {key: "report:42", cron: "0 9 * * *", ...}
  #   Kaal.schedules.each { |s| ... }    # every stored schedule, by key
  #   Kaal.schedules.delete("report:42") # => true
  #
  # A schedule is checked exactly like a job of the scheduler file (key,
  # cron, time zone, job class name and delayed_job_allowed_class_prefixes,
  # queue, args and kwargs with their placeholders) before it is stored;
  # args and kwargs must also survive a JSON round trip. Stored, file and
  # code jobs share one key space: scheduler_conflict_policy decides, as
  # between file and code (a stored schedule counts as defined at runtime,
  # like Kaal.register). enabled: false keeps it stored but not running;
  # Kaal.disable / Kaal.enable pause it at runtime, as any job.
  class Schedules
    include Enumerable

    PAGE = 500 # schedules read per backend call by #each

    def initialize(backend:, configuration:, registry:, check_class:)
      @backend = backend
      @config = configuration
      @registry = registry
      @check_class = check_class
    end

    # Stores the schedule (replacing the one under key). Returns it as #find
    # does. Raises Kaal::ConfigurationError naming the field when it is not a
    # valid schedule, or when key is taken by a file or code job of this
    # process and scheduler_conflict_policy is error.
    def upsert(key:, cron:, job_class:, args: [], kwargs: {}, time_zone: nil, queue: nil, enabled: true)
      location = "Kaal.schedules.upsert(key: #{key.inspect})"
      job_class = job_class.name if job_class.is_a?(Module) && job_class.name
      job = Job.new(key: key, cron: cron, job_class: job_class, args: args, kwargs: kwargs, time_zone: time_zone,
                    queue: queue, enabled: enabled, location: location, source: :stored,
                    default_time_zone: @config.time_zone)
      @check_class.call(job)
      args_json, kwargs_json = json_of(job, args, kwargs)
      zone = time_zone.nil? ? nil : job.cron.time_zone
      check_conflict(job)
      now = Time.now.to_i
      row = { key: job.key, cron: job.expression, job_class: job.job_class_name, args_json: args_json,
              kwargs_json: kwargs_json, time_zone: zone, queue: job.queue, enabled: job.enabled }
      version = @backend.schedule_upsert(**row, now: now)
      self.class.to_h(row.merge(version: version, updated_at: now)) # what #find returns, without reading it back
    end

    # Removes the stored schedule. true when there was one.
    def delete(key)
      found, = @backend.schedule_remove(key_of(key, "delete"), now: Time.now)
      found
    end

    # The stored schedule {key:, cron:, job_class:, args:, kwargs:, time_zone:
    # (nil: the configured time_zone), queue:, enabled:, source: "stored",
    # version:, updated_at: (a Time)}, or nil.
    def find(key)
      row = @backend.schedule_get(key_of(key, "find"))
      row && self.class.to_h(row)
    end
    alias [] find

    # Yields every stored schedule (as #find returns it), by key, reading
    # the backend a page at a time. Without a block, an Enumerator.
    def each
      return enum_for(:each) unless block_given?

      after = nil
      loop do
        rows = @backend.schedule_list(after: after, limit: PAGE)
        rows.each { |row| yield self.class.to_h(row) }
        break if rows.size < PAGE

        after = rows.last[:key]
      end
      self
    end

    # One page: up to limit schedules after the key `after`, by key, each
    # with its runtime pause and the state derived from the three facts
    # (source "stored", enabled there, paused by Kaal.disable): paused:,
    # state: ("enabled", "disabled (stored)", "paused (Kaal.disable)").
    # The read model of `kaal schedules list`, `kaal status` and the dashboard.
    def list(after: nil, limit: 100)
      rows = @backend.schedule_list(after: after.nil? ? nil : key_of(after, "list"), limit: limit)
      states = rows.empty? ? {} : @backend.states
      rows.map do |row|
        h = self.class.to_h(row)
        paused = states[h[:key]] == false
        state = if !h[:enabled] then "disabled (stored)"
                elsif paused then "paused (Kaal.disable)"
                else "enabled"
                end
        h.merge(paused: paused, state: state)
      end
    end

    def count
      @backend.schedule_count
    end
    alias size count

    # A stored row as the public Hash.
    def self.to_h(row)
      { key: row[:key], cron: row[:cron], job_class: row[:job_class], args: parse(row, :args_json, "args"),
        kwargs: parse(row, :kwargs_json, "kwargs"), time_zone: row[:time_zone], queue: row[:queue],
        enabled: row[:enabled], source: "stored", version: row[:version], updated_at: Time.at(row[:updated_at]).utc }
    end

    EMPTY = { "[]" => [].freeze, "{}" => {}.freeze }.freeze
    private_constant :EMPTY

    # args or kwargs of a row for its Job (a Job keeps a frozen copy anyway,
    # so an empty one is the shared frozen value).
    def self.job_value(row, field, what)
      EMPTY[row[field]] || parse(row, field, what)
    end

    # The Job of a stored row (checked as when it was stored: a node whose
    # allow-list or zones differ refuses it with the field named).
    def self.job_from(row, default_time_zone:)
      key = row[:key]
      definition = [row[:cron], row[:time_zone] || default_time_zone, row[:job_class], nil, row[:queue], nil, nil,
                    job_value(row, :args_json, "args"), job_value(row, :kwargs_json, "kwargs"), nil, row[:enabled],
                    :stored, nil]
      # Job.new(key:, cron:, ..., source: :stored), positional (Job.build): a
      # node loads every stored schedule at start
      Job.build(key, Location.new(key), definition)
    end

    # Where a stored schedule's job comes from ("stored schedule \"key\""),
    # made into text only when a message needs it.
    Location = Struct.new(:key) do
      def to_s
        "stored schedule #{key.inspect}"
      end
    end

    # The Job of a plain stored schedule (kwargs {}, args a JSON list
    # without placeholders) as a node loads a million of them: +spec+ is the
    # checked Spec shared by every stored schedule defined alike (cron,
    # zone, class, queue, enabled; its args empty), and the job keeps its own
    # args as the stored JSON text until a run first asks for them (args that
    # are one integer, a schedule per customer id, as that Integer). The
    # text was checked when it was stored; should it no longer parse (edited
    # in the table by hand), that run fails naming the schedule and args.
    # (ScheduleFeed makes them a page at a time with Native.stored_jobs.)
    class StoredJob < Job
      # Only the key is checked (as by Job.build_alike); ConfigurationError
      # when it is not a valid key.
      def self.from(key, spec, args_json)
        job = allocate
        job.__send__(:setup_stored, key, spec, args_json)
        job
      end

      def args
        case (args = @args)
        when Integer then [args].freeze
        when String then @args = Schedules.parse({ key: key, args_json: args }, :args_json, "args").freeze
        else args
        end
      end

      # Never templated (no placeholder, kwargs {}): the stored args as they are.
      def arguments_for(_fire_epoch, _idempotency_key)
        [args, kwargs]
      end

      def location(given = nil)
        given.nil? ? "stored schedule #{key.inspect}" : super
      end

      private

      def setup_stored(key, spec, args_json)
        setup_alike(key, nil, spec) # Job.build_alike's: the key checked, no location
        @args = args_json
      end
    end

    def self.parse(row, field, what)
      JSON.parse(row[field])
    rescue JSON::ParserError => e
      raise ConfigurationError, "stored schedule #{row[:key].inspect}: #{what}: not valid JSON (#{e.message[0, 80]})"
    end

    private

    def key_of(key, method)
      return key.to_s if (key.is_a?(String) || key.is_a?(Symbol)) && !key.to_s.empty?

      raise ArgumentError, "Kaal.schedules.#{method}: the key must be a non-empty String or Symbol, got #{key.inspect}"
    end

    # args / kwargs as JSON text; ConfigurationError naming the value that
    # would not come back unchanged.
    def json_of(job, args, kwargs)
      (args || []).each_with_index { |v, i| Delayed.check_json(v, "args[#{i}]") }
      (kwargs || {}).each { |k, v| Delayed.check_json(v, "kwargs[#{k.to_s.inspect}]") }
      [JSON.generate(job.args), JSON.generate(job.kwargs)]
    rescue ArgumentError => e
      raise ConfigurationError, "#{job.location}: #{e.message}"
    end

    # A key this process has as a file or code job (not a stored one) is
    # refused under scheduler_conflict_policy error, as between file and code.
    def check_conflict(job)
      return unless @config.scheduler_conflict_policy == :error

      other = @registry[job.key]
      return if other.nil? || other.source == :stored

      where = other.file? ? "the scheduler file (#{@registry.file_path})" : "code (Kaal.register)"
      raise ConfigurationError, "#{job.location}: key: #{job.key.inspect} is already defined in #{where}; " \
                                "choose another key, or set scheduler_conflict_policy to code_wins or file_wins"
    end
  end
end
