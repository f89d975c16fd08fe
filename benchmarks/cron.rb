# frozen_string_literal: true

# kaal vs fugit, side by side in one process: parse and next_time.
#
#   bundle exec ruby benchmarks/cron.rb [seconds per measurement, default 0.3]
#
# Each measurement runs the operation in batches until the time is up and
# reports operations per second (Process.clock_gettime, monotonic clock).
$LOAD_PATH.unshift File.expand_path("../lib", __dir__)
require "kaal"
require "fugit"

SECONDS = Float(ARGV[0] || 0.3)

# [kaal expression, fugit's spelling of the same schedule]
CASES = [
  ["*/15 * * * *", "*/15 * * * *"],
  ["0 9 * * 1", "0 9 * * 1"],
  ["0 0 29 2 *", "0 0 29 2 *"],
  ["30 2 * * * America/New_York", "30 2 * * * America/New_York"],
  ["0 0 L * *", "0 0 L * *"],
  ["5 4 * * SUN#2", "5 4 * * sun#2"]
].freeze

def measure(seconds = SECONDS)
  batch = 1
  ops = 0
  start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  deadline = start + seconds
  loop do
    batch.times { yield }
    ops += batch
    now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    return ops / (now - start) if now >= deadline

    batch *= 2 if batch < 1 << 20
  end
end

def check_same_schedule!(kaal, fugit, from)
  k = kaal.next_time(from)
  f = fugit.next_time(from).to_t
  return if k.to_i == f.to_i

  abort "benchmark cases disagree for #{kaal.expression.inspect}: kaal #{k}, fugit #{f}"
end

def fmt(ops)
  ops >= 1e6 ? format("%.2fM", ops / 1e6) : format("%.1fk", ops / 1e3)
end

from = Time.at(1_767_225_600) # 2026-01-01T00:00:00Z
rows = CASES.map do |kaal_expr, fugit_expr|
  kaal = Kaal::Cron.parse(kaal_expr)
  fugit = Fugit::Cron.parse(fugit_expr) or abort "fugit cannot parse #{fugit_expr.inspect}"
  check_same_schedule!(kaal, fugit, from)

  kp = measure { Kaal::Cron.parse(kaal_expr) }
  fp = measure { Fugit::Cron.parse(fugit_expr) }
  kn = measure { kaal.next_time(from) }
  fn = measure { fugit.next_time(from) }
  [kaal_expr, kp, fp, kn, fn]
end

puts format("ruby %s, kaal %s, fugit %s, %.2f s per measurement", RUBY_VERSION, Kaal::VERSION,
            Fugit::VERSION, SECONDS)
header = format("%-30s | %9s %9s %7s | %9s %9s %7s", "expression", "kaal", "fugit", "ratio",
                "kaal", "fugit", "ratio")
puts format("%-30s | %-27s | %-27s", "", "parse (ops/s)", "next_time (ops/s)")
puts header
puts "-" * header.size
rows.each do |expr, kp, fp, kn, fn|
  puts format("%-30s | %9s %9s %6.0fx | %9s %9s %6.0fx", expr, fmt(kp), fmt(fp), kp / fp,
              fmt(kn), fmt(fn), kn / fn)
end
