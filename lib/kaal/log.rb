# frozen_string_literal: true

require "logger"

module Kaal
  # The default logger: one line per event on $stdout,
  # "2026-11-29T05:00:00.123Z INFO kaal: message".
  module Log
    FORMAT = "%<time>s %<level>s kaal: %<message>s\n"

    module_function

    def build(io = $stdout)
      logger = Logger.new(io)
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
