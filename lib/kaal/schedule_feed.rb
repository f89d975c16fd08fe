# frozen_string_literal: true

module Kaal
  # Brings the stored schedules (Kaal::Schedules) into a node's registry:
  # the scheduler polls it once per tick. A poll is one backend call reading
  # the namespace's change counter; only when it moved are the schedules
  # changed since the last poll read (by version, a page at a time) and
  # applied one by one through the registry's register / unregister. The
  # first poll loads every stored schedule.
  #
  # A stored schedule the registry refuses (a key conflict under
  # scheduler_conflict_policy error) or that this node cannot accept (a
  # class outside its allow-list) is left out; the next change of it is
  # tried again. A poll that applied or refused something emits the
  # `schedules` event (the log lines come from it).
  class ScheduleFeed
    PAGE = 1000

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
        counter, rows = @backend.schedule_changes(since: @version, limit: PAGE)
        rows.each { |row| applied += 1 if apply(row, refused) }
        last = rows.last ? rows.last[:version] : 0
        if rows.size == PAGE
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

    def apply(row, refused)
      key = row[:key]
      old = @applied.delete(key)
      @registry.unregister(key, policy: @policy.call) if old
      return !old.nil? if row[:deleted]

      job = @build.call(row)
      @registry.register(job, policy: @policy.call)
      @applied[key] = job
      true
    rescue ConfigurationError => e
      refused << { key: key, error: e.message }
      false
    end
  end
end
