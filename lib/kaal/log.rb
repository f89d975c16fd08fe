# frozen_string_literal: true

require "logger"

module Kaal
  # The default logger: one line per event on $stdout,
  # "2026-11-29T05:00:00.123Z INFO kaal: message".
  module Log
    FORMAT = "%<time>s %<level>s kaal: %<message>s\n"

    module_function

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

    def build(io = $stdout)
      logger = Logger.new(LineWriter.new(io))
      logger.progname = "kaal"
      logger.formatter = proc do |severity, time, _prog, message|
        format(FORMAT, time: time.utc.strftime("%Y-%m-%dT%H:%M:%S.%LZ"), level: severity, message: message)
      end
      logger
    end

    def level(sym)
      { debug: Logger::DEBUG, info: Logger::INFO, warn: Logger::WARN, error: Logger::ERROR,
        fatal: Logger::FATAL }.fetch(sym, Logger::INFO)
    end
  end
end
