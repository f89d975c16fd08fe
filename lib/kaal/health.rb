# frozen_string_literal: true

module Kaal
  # What "healthy" means, in one function (Health.evaluate) shared by
  # GET /health of `kaal start --http` and `kaal status --json`:
  #
  # healthy when the tick loop runs, is not stopping, the backend answered
  # its last call, and the last successful tick is at most
  # 3 tick intervals + the current back-off old.
  #
  # A Health instance is the in-process state, kept from the event stream
  # (scheduler_start, tick, backend_error, scheduler_stopping, scheduler_stop).
  class Health
    include Events::Subscriber

    EVENTS = %i[scheduler_start tick backend_error scheduler_stopping scheduler_stop].freeze
    TICKS_ALLOWED = 3

    # The verdict as a Hash: healthy (true/false), status ("ok" or
    # "unhealthy"), reason (nil when healthy), last_tick_age (seconds or nil),
    # max_tick_age (seconds). Inputs: tick_interval (seconds), last_tick_age
    # (seconds since the last successful tick, nil when none), backoff (the
    # current wait before the next attempt), backend_error (the message of
    # the failure that is not over, or nil), stopping, alive (the loop runs).
    def self.evaluate(tick_interval:, last_tick_age:, backoff: 0, backend_error: nil, stopping: false, alive: true,
                      not_alive: "the tick loop is not running")
      max_age = (TICKS_ALLOWED * tick_interval.to_f) + backoff.to_f
      reason =
        if stopping then "stopping"
        elsif !alive then not_alive
        elsif backend_error then "backend unreachable: #{backend_error}"
        elsif last_tick_age.nil? then "no successful tick yet"
        elsif last_tick_age > max_age
          format("tick loop stalled: last successful tick %.1fs ago (allowed %.1fs)", last_tick_age, max_age)
        end
      { healthy: reason.nil?, status: reason ? "unhealthy" : "ok", reason: reason,
        last_tick_age: last_tick_age&.round(3), max_tick_age: max_age.round(3) }
    end

    # alive: callable, true while the tick loop runs.
    def initialize(events: Kaal.events, tick_interval: Kaal.configuration.tick_interval, alive: -> { Kaal.running? })
      @events = events
      @tick_interval = tick_interval
      @alive = alive
      @lock = Mutex.new
      @last_ok = nil # monotonic seconds
      @last_ok_at = nil # Time
      @backend_error = nil
      @backoff = 0
      @failures = 0
      @stopping = false
      @node = nil
      @subscription = nil
    end

    # The event subscriber.
    def call(event)
      p = event.payload
      @lock.synchronize do
        case event.name
        when "scheduler_start"
          @stopping = false
          @node = p[:node]
          @tick_interval = p[:tick_interval] || @tick_interval
        when "tick"
          if p[:ok]
            @last_ok = Clock.monotonic
            @last_ok_at = event.time
            @backend_error = nil
            @backoff = 0
            @failures = 0
          end
        when "backend_error"
          if p[:fail_closed]
            @backend_error = p[:error]
            @backoff = p[:retry_in] || 0
            @failures = p[:failures] || (@failures + 1)
          end
        when "scheduler_stopping", "scheduler_stop" then @stopping = true
        end
      end
    end

    # The verdict now, with node, last_tick_at and failures added.
    def check
      alive = @alive ? @alive.call : true
      @lock.synchronize do
        age = @last_ok && (Clock.monotonic - @last_ok)
        Health.evaluate(tick_interval: @tick_interval, last_tick_age: age, backoff: @backoff,
                        backend_error: @backend_error, stopping: @stopping, alive: alive)
              .merge(node: @node, last_tick_at: @last_ok_at&.iso8601(3), failures: @failures)
      end
    end
  end
end
