# frozen_string_literal: true

module Kaal
  # kaal's notion of now. KAAL_TEST_CLOCK_OFFSET (seconds, a float) shifts it,
  # for tests that simulate clock skew between nodes; never set it in
  # production.
  module Clock
    module_function

    # Float Unix seconds.
    def now
      Process.clock_gettime(Process::CLOCK_REALTIME) + offset
    end

    def offset
      text = ENV["KAAL_TEST_CLOCK_OFFSET"]
      return 0.0 if text.nil? || text.empty?

      Float(text)
    rescue ArgumentError
      raise ConfigurationError, "KAAL_TEST_CLOCK_OFFSET: must be a number of seconds, got #{text.inspect}"
    end

    def monotonic
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end
  end
end
