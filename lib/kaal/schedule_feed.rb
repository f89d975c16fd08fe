# frozen_string_literal: true

module Kaal
  # Brings the stored schedules (Kaal::Schedules) into a node's registry:
  # the scheduler polls it once per tick. A poll is one backend call reading
  # the namespace's change counter; only when it moved are the schedules
  # changed since the last poll read (by version, a page at a time, as
  # columns) and applied: changed and removed keys leave the registry, then
  # the page's new jobs enter it together (Registry#register_all). The first
  # poll loads every stored schedule.
  #
  # A node with a million stored schedules: the rows defined alike (cron,
  # zone, class, queue, enabled) are checked once, through +build+, and
  # share that Spec; each plain row (kwargs {}, args without placeholders)
  # becomes a Schedules::StoredJob keeping its args as JSON text until its
  # first run. Any other row is built and checked alone, as before.
  #
  # A stored schedule the registry refuses (a key conflict under
  # scheduler_conflict_policy error) or that this node cannot accept (a
  # class outside its allow-list) is left out; the next change of it is
  # tried again. A poll that applied or refused something emits the
  # `schedules` event (the log lines come from it).
  class ScheduleFeed
    PAGE = 10_000

    attr_reader :version

    # build: row -> Job (raises ConfigurationError); policy: -> the
    # scheduler_conflict_policy; events: the Kaal::Events to emit to; node:
    # -> this node's id.
    def initialize(backend:, registry:, build:, policy:, events: Kaal.events, node: -> { Kaal.node_id })
      @backend = backend
      @registry = registry
      @build = build
      @policy = policy
      @events = events
      @node = node
      @version = 0
      @applied = {} # key => the Job this feed registered
    end

    # Applies what changed since the last poll. Returns how many stored
    # schedules it applied (added, changed or removed).
    def poll
      applied = 0
      refused = []
      loop do
        page = @backend.schedule_change_columns(since: @version, limit: PAGE)
        counter, last, keys = page
        applied += apply_page(page, refused)
        if keys.size == PAGE
          @version = last
        else
          @version = [counter, last, @version].max
          break
        end
      end
      unless applied.zero? && refused.empty?
        @events.emit(:schedules) do
          { node: @node.call, applied: applied, refused: refused, version: @version, stored: @applied.size }
        end
      end
      applied
    end

    # Keys of the stored schedules this node runs.
    def keys
      @applied.keys
    end

    # Takes every stored schedule it registered out of the registry (the
    # configuration changed); the next poll would start from scratch.
    def detach
      policy = @policy.call
      @applied.each_key { |key| @registry.unregister(key, policy: policy) }
      @applied = {}
      @version = 0
    end

    private

    # One page (Backend#schedule_change_columns): the keys that changed or
    # went leave the registry, then the new jobs enter it at once. Returns
    # how many it applied.
    def apply_page(page, refused)
      _, _, keys, args, kwargs, defs, def_of = page
      policy = @policy.call
      owned = @applied
      specs = Array.new(defs.size) # definition index => its shared Spec (false: build each row alone)
      fresh = []
      applied = 0
      i = 0
      n = keys.size
      while i < n # a million rows at start: a plain loop
        key = keys[i]
        d = def_of[i]
        if !owned.empty? && owned.delete(key)
          @registry.unregister(key, policy: policy)
          applied += 1 if d.nil?
        end
        unless d.nil? # removed
          job = nil
          if d >= 0
            spec = specs[d]
            spec = specs[d] = shared_spec(key, defs[d]) if spec.nil?
            job = plain_job(key, spec, args[i]) if spec
          end
          job ||= job_of(key, d.negative? ? ~d : d, args[i], kwargs[i] || "{}", defs, refused)
          fresh << job if job
        end
        i += 1
      end
      applied + register(fresh, policy, refused)
    end

    # The Job of a row built and checked alone, or nil (refused, with the reason).
    def job_of(key, d, args_json, kwargs_json, defs, refused)
      @build.call(row(key, defs[d], args_json, kwargs_json))
    rescue ConfigurationError => e
      refused << { key: key, error: e.message }
      nil
    end

    # The Spec every plain row of +definition+ shares, checked through
    # +build+ as the job of +key+ with no args; false when that fails (each
    # row is then built alone and refused with its own key).
    def shared_spec(key, definition)
      @build.call(row(key, definition, "[]", "{}")).spec
    rescue ConfigurationError
      false
    end

    def plain_job(key, spec, args_json)
      Schedules::StoredJob.from(key, spec, args_json)
    rescue ConfigurationError
      nil # not a valid key: built alone, for its message
    end

    def row(key, definition, args_json, kwargs_json)
      cron, job_class, time_zone, queue, enabled = definition
      { key: key, cron: cron, job_class: job_class, args_json: args_json, kwargs_json: kwargs_json,
        time_zone: time_zone, queue: queue, enabled: enabled }
    end

    # Registers the page's new jobs; returns how many the registry took.
    def register(fresh, policy, refused)
      return 0 if fresh.empty?

      taken = fresh.size
      applied = @applied
      fresh.each { |job| applied[job.key] = job }
      @registry.register_all(fresh, policy: policy).each do |job, error|
        applied.delete(job.key)
        refused << { key: job.key, error: error.message }
        taken -= 1
      end
      taken
    end
  end
end
