# frozen_string_literal: true

require_relative "cron_oracle"

module CronOracle
  # The per-zone subprocess: started with TZ=<zone> in its environment, it
  # reads one JSON request on stdin and writes one JSON reply on stdout.
  #
  # Request: {"zone", "seed", "cases": [[expression, start], ...], "count"}
  # where start is an Integer (that exact instant), "transition" (a few
  # seconds to a day before or after a random offset change of the zone in
  # 1970-2100) or "random" (uniform over 1970-2100).
  #
  # Reply: {"zone", "transitions", "results": [{"expr", "from", "next":
  # [[t, utc_offset], ...], "previous": [t, utc_offset] | nil, "dst": ["gap",
  # "overlap"] (the DST rules behind those answers), "skipped": [t, ...]
  # (second instants of repeated wall times a fixed-time expression must not
  # fire at, met on the way), "error"}]}.
  module Worker
    RANGE_START = 0               # 1970-01-01T00:00:00Z
    RANGE_END = 4_102_444_800     # 2100-01-01T00:00:00Z
    BEFORE = [1, 30, 59, 60, 61, 300, 900, 1799, 1800, 1801, 2700, 3599, 3600, 3601, 5400,
              7200, 10_800, 14_400, 21_600, 43_200, 86_399, 86_400, 90_000].freeze
    AFTER = [1, 60, 1800, 3599, 3600, 7200, 43_200].freeze

    module_function

    def run(input, output)
      request = JSON.parse(input.read)
      zone = request.fetch("zone")
      raise OracleError, "TZ is #{ENV.fetch('TZ', nil).inspect}, expected #{zone}" unless ENV["TZ"] == zone

      oracle = Zone.new
      transitions = oracle.transitions(RANGE_START - 86_400, RANGE_END + 86_400)
      rng = Random.new(request.fetch("seed"))
      count = request.fetch("count", 3)
      exprs = {}
      results = request.fetch("cases").map do |text, start|
        from = start_time(start, transitions, rng)
        evaluate(oracle, exprs[text] ||= Expr.new(text), text, from, count)
      end
      output.write(JSON.generate("zone" => zone, "transitions" => transitions.size, "results" => results))
    end

    def start_time(start, transitions, rng)
      return start if start.is_a?(Integer)

      if start == "transition" && !transitions.empty?
        at = transitions[rng.rand(transitions.size)][0]
        return rng.rand(4) < 3 ? at - BEFORE.sample(random: rng) : at + AFTER.sample(random: rng)
      end
      rng.rand(RANGE_START...RANGE_END)
    end

    SLOW = 5 # seconds: a case this slow is reported (the walk is meant to be cheap)

    def evaluate(oracle, expr, text, from, count)
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      oracle.reset_marks
      nexts = oracle.next_times(expr, from, count).map { |t| [t, oracle.offset(t)] }
      prev = oracle.previous_time(expr, from)
      dst = (nexts.map(&:first) + [prev]).filter_map { |t| oracle.marks[t] }.uniq.map(&:to_s)
      took = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
      raise OracleError, format("the oracle took %.1f s", took) if took > SLOW

      skipped = oracle.marks.select { |_, mark| mark == :skipped }.keys.sort
      { "expr" => text, "from" => from, "next" => nexts, "previous" => prev && [prev, oracle.offset(prev)],
        "dst" => dst, "skipped" => skipped }
    rescue OracleError, InvalidExpression => e
      { "expr" => text, "from" => from, "error" => "#{e.class}: #{e.message}" }
    end
  end
end

CronOracle::Worker.run($stdin, $stdout) if $PROGRAM_NAME == __FILE__
