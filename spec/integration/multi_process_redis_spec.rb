# frozen_string_literal: true

# Several real `kaal start` processes on one Redis, one of them SIGKILLed and
# restarted every few seconds: no (job key, fire time) may run twice, and
# nearly every second of every job must still run.
RSpec.describe "kaal start on Redis with nodes killed at random", :integration do
  let(:url) { ENV.fetch("KAAL_TEST_REDIS_URL", nil) }

  before do
    if url.nil? || url.empty?
      raise "KAAL_TEST_REDIS_URL is not set (KAAL_REQUIRE_SERVICES=1)" if ENV["KAAL_REQUIRE_SERVICES"] == "1"

      skip "set KAAL_TEST_REDIS_URL (bin/services start redis) to run"
    end
  end

  it "runs every (key, fire time) at most once and keeps >= 90% coverage" do
    result = Kaal::Spec::MultiProcess.run(
      backend: "redis", backend_config: { "url" => url },
      nodes: 3, jobs: 5, duration: Float(ENV.fetch("KAAL_MP_SECONDS", "30"))
    )
    puts "\n  #{result.summary}"

    expect(result.crashes).to be_empty, -> { result.crashes.join("\n---\n") }
    expect(result.kills).to be >= 3
    expect(result.duplicates).to be_empty
    expect(result.dispatches).to be > 0, -> { result.node_logs.map { |n, l| "#{n}:\n#{l}" }.join("\n") }
    expect(result.coverage).to be >= 90.0
  end
end
