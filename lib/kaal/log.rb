# frozen_string_literal: true

require "json"
require "logger"

module Kaal
  # kaal's log lines. The default logger writes one line per event on
  # $stdout:
  #
  #   text: 2026-11-29T05:00:00.123Z INFO kaal: message
  #   json: {"timestamp":"2026-11-29T05:00:00.123Z","level":"INFO","event":"dispatch","message":"...","fields":{...}}
  #
  # The lines are a subscriber of the event stream (Log::Sink); lines that
  # belong to no event have "event": null.
  module Log
    FORMAT = "%<time>s %<level>s kaal: %<message>s\n"
    FORMATS = %i[text json].freeze
    LEVELS = { debug: Logger::DEBUG, info: Logger::INFO, warn: Logger::WARN, error: Logger::ERROR,
               fatal: Logger::FATAL }.freeze

    # A line with its event (given to kaal's own formatter only: an
    # application's Logger gets Strings).
    Entry = Struct.new(:message, :event)

    module_function

    @second = [nil, nil].freeze # [Unix second, "YYYY-MM-DDTHH:MM:SS."] of the last stamp

    # "2026-11-29T05:00:00.123Z" for +time+ (UTC, milliseconds). The text
    # of the second is kept from the previous call: a busy node writes many
    # lines a second, and strftime was a tenth of a run's cost.
    def stamp(time)
      sec = time.to_i
      cached = @second
      prefix = if cached[0] == sec
                 cached[1]
               else
                 text = time.getutc.strftime("%Y-%m-%dT%H:%M:%S.").freeze
                 @second = [sec, text].freeze
                 text
               end
      ms = time.usec / 1000
      "#{prefix}#{ms < 100 ? (ms < 10 ? "00" : "0") : ""}#{ms}Z"
    end

    # Writes each line through at once, so a log read through a pipe
    # (systemd, docker, `kaal start | tee`) is not held back in a buffer.
    # Closing it leaves the IO open ($stdout is not ours to close).
    class LineWriter
      def initialize(io)
        @io = io
      end

      def write(*text)
        n = @io.write(*text)
        @io.flush
        n
      end

      def close; end
    end

    # The formatter of the loggers Log.build makes. format: :text, :json,
    # or nil to follow Kaal.configuration.log_format.
    class Formatter
      def initialize(format = nil)
        @format = format
      end

      def format
        @format || Kaal.configuration.log_format
      end

      def call(severity, time, _progname, message)
        text, event = message.is_a?(Entry) ? [message.message, message.event] : [message.to_s, nil]
        stamp = Log.stamp(time)
        if format == :json
          "#{Log.json_line(stamp, severity, text, event)}\n"
        else
          Kernel.format(FORMAT, time: stamp, level: severity, message: text)
        end
      end
    end

    # A logger writing kaal's lines to +io+; format: :text, :json, or nil
    # (the default) to follow log_format.
    def build(io = $stdout, format: nil)
      logger = Logger.new(LineWriter.new(io))
      logger.progname = "kaal"
      logger.formatter = Formatter.new(format&.to_sym)
      logger
    end

    def level(sym)
      LEVELS.fetch(sym, Logger::INFO)
    end

    # true when +logger+ was built by Log.build (it takes Entries).
    def own?(logger)
      logger.respond_to?(:formatter) && logger.formatter.is_a?(Formatter)
    end

    # One JSON object (no newline). Strings are redacted (passwords).
    def json_line(stamp, severity, message, event)
      line = { timestamp: stamp, level: severity, event: event&.name, message: Kaal.redact_text(message) }
      line[:fields] = json_fields(event.payload) if event
      JSON.generate(line)
    rescue JSON::GeneratorError, EncodingError
      JSON.generate(timestamp: stamp, level: severity, event: event&.name, message: message.to_s.scrub.inspect)
    end

    def json_fields(payload)
      payload.each_with_object({}) do |(k, v), h|
        next if k == :exception || v.is_a?(Exception) # its text is in :error

        h[k] = json_value(v)
      end
    end

    def json_value(value)
      case value
      when String then Kaal.redact_text(value)
      when Time then value.getutc.iso8601(3)
      when Symbol then value.to_s
      when Float then value.finite? ? value.round(6) : value.to_s
      when Array then value.map { |v| json_value(v) }
      when Hash then value.transform_values { |v| json_value(v) }
      when Numeric, true, false, nil then value
      else value.to_s
      end
    end

    # Writes the log line of each event (the text of each line is what kaal
    # has always written; --json/log_format: json adds the event's fields).
    class Sink
      def call(event)
        p = event.payload
        case event.name
        when "dispatch", "delayed_dispatch" then dispatch(event, p)
        when "backend_error" then backend_error(event, p)
        when "scheduler_start"
          Kaal.log_line(:info, "scheduler started: node #{p[:node]}, backend #{p[:backend]} " \
                               "(namespace #{p[:namespace]}), #{p[:jobs]} jobs, tick every #{p[:tick_interval]}s", event)
        when "scheduler_stop"
          unless p[:finished]
            Kaal.log_line(:warn, "stopped with jobs still running after #{p[:timeout]}s (shutdown_timeout)", event)
          end
          Kaal.log_line(:info, "scheduler stopped (node #{p[:node]})", event) if p[:was_running]
        when "schedules"
          p[:refused].each do |r|
            Kaal.log_line(:error, "stored schedule #{r[:key].inspect} not scheduled on this node: #{r[:error]}", event)
          end
          if p[:applied].positive?
            Kaal.log_line(:info, "stored schedules: #{p[:applied]} applied (version #{p[:version]}, " \
                                 "#{p[:stored]} scheduled on node #{p[:node]})", event)
          end
        when "catch_up"
          Kaal.log_line(:info, "catching up #{p[:key]}: #{p[:runs]} missed run#{"s" unless p[:runs] == 1} " \
                               "(catch_up: #{p[:policy]})", event)
        when "tick"
          level = summary? && p[:ok] && (p[:won].positive? || p[:delayed].positive?) ? :info : :debug
          return unless Kaal.log_level?(level)

          Kaal.log_line(level, format("tick: %<due>d due, %<won>d won, %<delayed>d delayed in %<ms>.1f ms",
                                      due: p[:due], won: p[:won], delayed: p[:delayed], ms: p[:duration] * 1000), event)
        end
      end

      # Whether a run's line would be written now (Events#wanted?): the
      # scheduler builds a successful run's event only when something wants
      # it. A failed run's line (error) is always written.
      def wants?(name)
        return true unless name == :dispatch || name == :delayed_dispatch

        Kaal.log_level?(summary? ? :debug : :info)
      end

      private

      # log_dispatches: summary: one info line per tick that dispatched
      # (the tick line), each successful run's line at debug.
      def summary?
        Kaal.configuration.log_dispatches == :summary
      end

      def dispatch(event, p)
        failed = p[:status] == "failed"
        level = if failed then :error
                elsif summary? then :debug
                else :info
                end
        return unless Kaal.log_level?(level)

        what = event.name == "dispatch" ? "#{p[:key]} @ #{fire_text(p[:fire_time])}" : "delayed #{p[:job_id]} (#{p[:job_class]})"
        idem = p[:idempotency_key] ? ", idempotency #{p[:idempotency_key][0, 12]}" : ""
        ms = p[:duration] ? format("%.1f ms", p[:duration] * 1000) : "-"
        if failed
          Kaal.log_line(:error, "#{what} failed in #{ms} (node #{p[:node]}#{idem}): #{p[:error]}", event)
        else
          Kaal.log_line(level, "#{what} dispatched in #{ms} (node #{p[:node]}#{idem})", event)
        end
      end

      # The fire time in UTC ISO 8601; the text of the last one is kept
      # (the runs of a tick share a few fire times).
      def fire_text(time)
        return nil if time.nil?

        cached = @fire_text
        return cached[1] if cached && cached[0] == time

        text = time.getutc.iso8601.freeze
        @fire_text = [time, text].freeze
        text
      end

      def backend_error(event, p)
        Kaal.log_line(:warn, backend_message(p), event)
      end

      def backend_message(p)
        if p[:fail_closed]
          retry_note = p[:retry_in] ? "; retrying in #{p[:retry_in].round(1)}s" : ""
          return "backend #{p[:backend]} unavailable, nothing dispatched (fail closed)#{retry_note}: #{p[:error]}"
        end

        case p[:operation]
        when "delayed_claim" then "delayed jobs not swept this tick: #{p[:error]}"
        when "heartbeat", "cleanup" then "heartbeat/cleanup failed: #{p[:error]}"
        when "record"
          "could not record #{p[:key]} @ #{p[:fire_epoch]} as #{p[:status]}: #{p[:error_class]}: #{p[:error]}"
        else "backend #{p[:backend]}: #{p[:operation]} failed: #{p[:error]}"
        end
      end
    end

    # Calls config.error_handlers with (error, context) for failed jobs
    # (dispatch_failed) and backend errors (backend_error). A handler that
    # raises is logged; the others still run.
    class ErrorHandlers
      DISPATCH_CONTEXT = %i[key fire_time idempotency_key job_id job_class queue node].freeze
      BACKEND_CONTEXT = %i[operation backend node key].freeze

      def call(event)
        handlers = Kaal.configuration.error_handlers
        return if handlers.empty?

        p = event.payload
        error = p[:exception]
        return unless error

        context = p.slice(*(event.name == "backend_error" ? BACKEND_CONTEXT : DISPATCH_CONTEXT)).compact
        context[:event] = event.name
        handlers.each do |handler|
          handler.call(error, context)
        rescue StandardError => e
          Kaal.log_plain(:error, "error handler #{handler.inspect} raised #{e.class}: #{e.message}")
        end
      end
    end
  end
end

module Kaal
  class << self
    # Writes one log line (redacted) for +event+ (nil: a line of no event)
    # to Kaal.logger. kaal's own logger gets the event for its formatter;
    # an application's Logger gets a String (its formatter would inspect
    # anything else): the text, or with log_format json the JSON object.
    def log_line(level, message, event = nil)
      logger = @logger || self.logger
      return unless log_level?(level, logger)

      message = redact_text(message.to_s)
      if Log.own?(logger)
        logger.add(Log.level(level), Log::Entry.new(message, event))
      elsif configuration.log_format == :json
        stamp = Log.stamp(Time.now)
        logger.public_send(level, Log.json_line(stamp, level.to_s.upcase, message, event))
      else
        logger.public_send(level, message)
      end
    rescue StandardError => e
      warn "kaal: could not write a log line (#{e.class}: #{e.message})"
    end

    # A line that belongs to no event.
    def log_plain(level, message)
      log_line(level, message, nil)
    end

    # true when the logger writes lines of +level+.
    def log_level?(level, logger = @logger || self.logger)
      !logger.respond_to?(:level) || !logger.level.is_a?(Integer) || logger.level <= Log.level(level)
    end
  end
end
