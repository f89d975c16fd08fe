# frozen_string_literal: true

require "spec_helper"

# Kaal::Native.plain_key? is Kaal::Job's fast test for a key with nothing
# more to check; it must say exactly what the Ruby rule says.
RSpec.describe "Kaal::Native.plain_key?" do
  def ruby_rule(key)
    key.is_a?(String) && key.encoding == Encoding::UTF_8 && /\A[\w.:\/@-]{1,255}\z/.match?(key) &&
      !key.start_with?("kaal:manual:")
  end

  it "agrees with the Ruby rule on edge cases and on 20,000 random keys (fixed seed)" do
    edges = ["a", "job-1", "a" * 255, "a" * 256, "", "kaal:manual:x", "kaal:manua", "é", "a b", "x/y@z.w:1_2-3",
             "a\n", "\na", "A".b, "ab".encode("UTF-16LE"), 5, nil, :a, "a\0", "Kaal:manual:x"]
    edges.each { |key| expect(Kaal::Native.plain_key?(key)).to eq(ruby_rule(key)), key.inspect }
    rng = Random.new(18)
    alphabet = ["a", "Z", "0", "_", ".", ":", "/", "@", "-", " ", "é", "\n", "k", "\0", "+"]
    20_000.times do
      key = Array.new(rng.rand(1..8)) { alphabet[rng.rand(alphabet.size)] }.join
      expect(Kaal::Native.plain_key?(key)).to eq(ruby_rule(key)), key.inspect
    end
  end

  it "leaves every other key to Kaal::Job's full check, with its messages" do
    expect { Kaal::Job.new(key: "kaal:manual:x", cron: "* * * * *", job_class: "X", location: nil, source: :code) }
      .to raise_error(Kaal::ConfigurationError, /key: "kaal:manual:" starts the dispatch-log keys/)
    expect { Kaal::Job.new(key: "a" * 256, cron: "* * * * *", job_class: "X", location: nil, source: :code) }
      .to raise_error(Kaal::ConfigurationError, /key: is 256 characters long/)
    expect(Kaal::Job.new(key: "a b", cron: "* * * * *", job_class: "X", location: nil, source: :code).key).to eq("a b")
  end
end
