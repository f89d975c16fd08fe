# frozen_string_literal: true

require "spec_helper"

RSpec.describe Kaal::Cron, "errors" do
  # [expression, field named in the message, offending token named in the message]
  invalid = [
    ["61 * * * *", "minute", "61"],
    ["-1 * * * *", "minute", "-1"],
    ["1-60 * * * *", "minute", "1-60"],
    ["5-1 * * * *", "minute", "5-1"],
    ["*/0 * * * *", "minute", "*/0"],
    ["*/61 * * * *", "minute", "*/61"],
    ["1/x * * * *", "minute", "1/x"],
    ["5/ * * * *", "minute", "5/"],
    ["1-2-3 * * * *", "minute", "1-2-3"],
    ["a * * * *", "minute", "a"],
    ["? * * * *", "minute", "?"],
    ["1,,2 * * * *", "minute", "empty list item"],
    [",1 * * * *", "minute", "empty list item"],
    ["* 24 * * *", "hour", "24"],
    ["* ? * * *", "hour", "?"],
    ["* * 0 * *", "day of month", "0"],
    ["* * 32 * *", "day of month", "32"],
    ["0 0 L-31 * *", "day of month", "L-31"],
    ["0 0 32W * *", "day of month", "32W"],
    ["0 0 0W * *", "day of month", "0W"],
    ["0 0 15WW * *", "day of month", "15WW"],
    ["0 0 L1 * *", "day of month", "L1"],
    ["0 0 LW-1 * *", "day of month", "LW-1"],
    ["0 0 W * *", "day of month", "W"],
    ["* * * 0 *", "month", "0"],
    ["* * * 13 *", "month", "13"],
    ["* * * FOO *", "month", "FOO"],
    ["* * * JAN-FOO *", "month", "JAN-FOO"],
    ["* * * ? *", "month", "?"],
    ["* * * * 8", "day of week", "8"],
    ["* * * * FOO", "day of week", "FOO"],
    ["* * * * 1/0", "day of week", "1/0"],
    ["0 0 * * MON#6", "day of week", "MON#6"],
    ["0 0 * * MON#0", "day of week", "MON#0"],
    ["0 0 * * 8L", "day of week", "8L"],
    ["0 0 * * SUN-MON#2", "day of week", "SUN-MON#2"],
    ["0 0 * * #2", "day of week", "#2"],
    ["60 * * * * *", "second", "60"],
    ["* 60 * * * *", "minute", "60"],
    ["*", "expression", "got 1"],
    ["* * *", "expression", "got 3"],
    ["* * * * * * * *", "expression", "got 8"],
    ["@foo", "expression", "@foo"],
    ["0 0 30 2 *", "expression", "can never fire"],
    ["0 0 31 4,6,9,11 *", "expression", "can never fire"],
    ["0 0 */9 * MON#5", "expression", "can never fire"],
    ["0 0 1 1 * Not/AZone", "time zone", "Not/AZone"]
  ].freeze

  it "covers at least 30 invalid expressions" do
    expect(invalid.size).to be >= 30
  end

  invalid.each do |expr, field, token|
    it "rejects #{expr.inspect}, naming the #{field} and #{token.inspect}" do
      expect { described_class.parse(expr) }.to raise_error(Kaal::CronSyntaxError) { |error|
        expect(error.message).to start_with("#{field} field:").or start_with("#{field}:")
        expect(error.message).to include(token)
      }
      expect(described_class.valid?(expr)).to be(false)
    end
  end

  it "makes CronSyntaxError a Kaal::Error" do
    expect(Kaal::CronSyntaxError.ancestors).to include(Kaal::Error)
  end

  it "raises ArgumentError for an expression that is not a String" do
    [nil, 5, :daily, ["* * * * *"]].each do |bad|
      expect { described_class.parse(bad) }.to raise_error(ArgumentError, /must be a String/)
      expect(described_class.valid?(bad)).to be(false)
    end
  end

  it "names an unknown time_zone: argument" do
    expect { described_class.parse("0 9 * * *", time_zone: "Mars/Olympus_Mons") }
      .to raise_error(Kaal::CronSyntaxError, %r{Mars/Olympus_Mons})
    expect(described_class.valid?("0 9 * * *", time_zone: "Mars/Olympus_Mons")).to be(false)
  end

  it "refuses zone names that try to leave the zone database" do
    ["../../etc/passwd", "/etc/localtime", "Europe/../../etc/passwd"].each do |zone|
      expect { described_class.parse("0 9 * * *", time_zone: zone) }.to raise_error(Kaal::CronSyntaxError)
    end
  end

  it "raises ArgumentError for a time_zone: of the wrong type" do
    expect { described_class.parse("0 9 * * *", time_zone: 5) }.to raise_error(ArgumentError, /time_zone/)
  end

  it "rejects from arguments that are not times" do
    cron = described_class.parse("* * * * *")
    expect { cron.next_time("2026-01-01") }.to raise_error(TypeError, /Time/)
    with_to_time = Class.new(String) { def to_time = Time.at(0) }
    expect { cron.next_time(with_to_time.new("2026-01-01")) }.to raise_error(TypeError, /String/)
    expect { cron.next_epoch(1.5) }.to raise_error(TypeError, /Integer/)
    expect { cron.next_times(0, count: -1) }.to raise_error(ArgumentError, /count/)
    expect { cron.next_times(0, count: "3") }.to raise_error(ArgumentError, /count/)
  end
end
