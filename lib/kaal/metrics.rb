# frozen_string_literal: true

module Kaal
  # Prometheus metrics of one process, counted from the event stream and
  # written in the text exposition format (version 0.0.4) by #render.
  #
  #   metrics = Kaal::Metrics.new.install   # subscribes to Kaal.events
  #   metrics.render                        # => "# HELP kaal_ticks_total ..."
  #
  # kaal_jobs and kaal_delayed_pending are read when rendered (a scrape),
  # never on the tick thread; the delayed count is cached for cache_ttl
  # seconds so frequent scrapes do not load the backend.
  class Metrics
    include Events::Subscriber

    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
    TICK_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10].freeze
    LATENESS_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300].freeze
    EVENTS = %i[tick dispatch delayed_dispatch backend_error].freeze

    # A histogram: counts per upper bound (cumulative when rendered), sum,
    # count. observe adds one to the first bucket the value fits in.
    class Histogram
      def initialize(bounds)
        @bounds = bounds
        @counts = Array.new(bounds.size, 0)
        @sum = 0.0
        @count = 0
      end

      def observe(value)
        value = value.to_f
        i = @bounds.bsearch_index { |b| value <= b }
        @counts[i] += 1 if i
        @sum += value
        @count += 1
      end

      def lines(name)
        total = 0
        out = @bounds.each_with_index.map do |b, i|
          total += @counts[i]
          "#{name}_bucket{le=\"#{Metrics.number(b)}\"} #{total}"
        end
        out << "#{name}_bucket{le=\"+Inf\"} #{@count}" << "#{name}_sum #{Metrics.number(@sum)}" << "#{name}_count #{@count}"
      end
    end

    # jobs: callable returning the number of registered jobs;
    # delayed_pending: callable returning the number of pending delayed jobs
    # (may raise; the sample is then left out of that scrape).
    def initialize(events: Kaal.events, jobs: -> { Kaal.registry.size }, delayed_pending: nil, cache_ttl: 5)
      @events = events
      @jobs = jobs
      @delayed_pending = delayed_pending
      @cache_ttl = cache_ttl
      @cache = nil # [value, monotonic time read]
      @lock = Mutex.new
      @ticks = { "ok" => 0, "failed" => 0 }
      @claims = { "won" => 0, "lost" => 0 }
      @dispatches = {} # job => { status => count }
      @delayed = { "dispatched" => 0, "failed" => 0 }
      @backend_errors = {} # operation => count
      @tick_duration = Histogram.new(TICK_BUCKETS)
      @lateness = Histogram.new(LATENESS_BUCKETS)
      @last_tick = nil
      @subscription = nil
    end

    # The event subscriber.
    def call(event)
      p = event.payload
      @lock.synchronize do
        case event.name
        when "tick" then tick(p, event)
        when "dispatch"
          by_status = @dispatches[p[:key].to_s] ||= Hash.new(0)
          by_status[p[:status].to_s] += 1
          @lateness.observe([p[:lateness], 0].max) if p[:lateness]
        when "delayed_dispatch"
          @delayed[p[:status].to_s] = @delayed.fetch(p[:status].to_s, 0) + 1
        when "backend_error"
          op = p[:operation].to_s
          @backend_errors[op] = @backend_errors.fetch(op, 0) + 1
        end
      end
    end

    # The exposition text.
    def render
      jobs = safely { @jobs&.call }
      pending = delayed_pending
      @lock.synchronize do
        out = []
        family(out, "kaal_ticks_total", "counter", "Scheduler ticks, by result (failed: the backend was unreachable).",
               @ticks.map { |r, v| [{ result: r }, v] })
        family(out, "kaal_tick_duration_seconds", "histogram", "Duration of the scheduler ticks.", @tick_duration)
        family(out, "kaal_claims_total", "counter", "Due runs this node claimed (won) or another node had (lost).",
               @claims.map { |r, v| [{ result: r }, v] })
        family(out, "kaal_dispatches_total", "counter", "Recurring runs dispatched by this node, by job and status.",
               @dispatches.flat_map { |job, counts| counts.map { |status, v| [[job, status], v] } }.sort
                          .map { |(job, status), v| [{ job: job, status: status }, v] })
        family(out, "kaal_delayed_dispatches_total", "counter", "Delayed jobs dispatched by this node, by status.",
               @delayed.map { |s, v| [{ status: s }, v] })
        family(out, "kaal_dispatch_lateness_seconds", "histogram",
               "Seconds between a recurring run's fire time and the start of its dispatch.", @lateness)
        family(out, "kaal_backend_errors_total", "counter", "Failed backend calls, by operation.",
               @backend_errors.sort.map { |op, v| [{ operation: op }, v] })
        family(out, "kaal_jobs", "gauge", "Registered recurring jobs.", [[{}, jobs]]) if jobs
        family(out, "kaal_delayed_pending", "gauge", "Delayed jobs waiting in the backend.", [[{}, pending]]) if pending
        if @last_tick
          family(out, "kaal_last_tick_timestamp_seconds", "gauge", "Unix time of the last successful tick.",
                 [[{}, @last_tick]])
        end
        "#{out.join("\n")}\n"
      end
    end

    # A sample value as Prometheus reads it.
    def self.number(value)
      case value
      when Integer then value.to_s
      when Float
        if value.nan? then "NaN"
        elsif value.infinite? then value.positive? ? "+Inf" : "-Inf"
        elsif value == value.floor && value.abs < 1e15 then value.to_i.to_s
        else value.to_s
        end
      else value.to_f.to_s
      end
    end

    def self.escape(value)
      value.to_s.gsub("\\", "\\\\\\\\").gsub("\"", "\\\\\"").gsub("\n", "\\\\n")
    end

    private

    def tick(p, event)
      @ticks[p[:ok] ? "ok" : "failed"] += 1
      @tick_duration.observe(p[:duration]) if p[:duration]
      return unless p[:ok]

      @claims["won"] += p[:won].to_i
      @claims["lost"] += p[:claimed].to_i - p[:won].to_i
      @last_tick = event.time.to_r.to_f
    end

    def family(out, name, type, help, samples)
      out << "# HELP #{name} #{help}" << "# TYPE #{name} #{type}"
      if samples.is_a?(Histogram)
        out.concat(samples.lines(name))
      else
        samples.each do |labels, value|
          text = labels.empty? ? "" : "{#{labels.map { |k, v| "#{k}=\"#{Metrics.escape(v)}\"" }.join(",")}}"
          out << "#{name}#{text} #{Metrics.number(value)}"
        end
      end
    end

    def delayed_pending
      return nil unless @delayed_pending

      cached = @cache
      return cached[0] if cached && Clock.monotonic - cached[1] < @cache_ttl

      value = safely { @delayed_pending.call }
      @cache = value.nil? ? nil : [value, Clock.monotonic]
      value
    end

    def safely
      yield
    rescue StandardError
      nil
    end
  end
end
