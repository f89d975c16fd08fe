# frozen_string_literal: true

# Several real `kaal start` processes on one Redis, one of them SIGKILLed and
# restarted every few seconds: no (job key, fire time) may run twice, and
# nearly every second of every job must still run. The record is written by
# the jobs themselves (see spec/support/multi_process.rb).
RSpec.describe "kaal start on Redis with nodes killed at random", :integration do
  let(:url) { ENV.fetch("KAAL_TEST_REDIS_URL", "") }
  let(:duration) { Float(ENV.fetch("KAAL_MP_SECONDS", "30")) }

  def explain(result)
    ([result.summary] + result.crashes + result.node_logs.map { |n, log| "#{n}:\n#{log}" }).join("\n---\n")
  end

  before do
    reason =
      if !Kaal::Native.backends.include?("redis") then "the redis backend is not compiled into this build"
      elsif url.empty? then "KAAL_TEST_REDIS_URL is not set (bin/services start redis)"
      end
    if reason
      raise "#{reason} (KAAL_REQUIRE_SERVICES=1)" if ENV["KAAL_REQUIRE_SERVICES"] == "1"

      skip reason
    end
  end

  it "runs every (key, fire time) at most once and keeps >= 90% coverage" do
    result = Kaal::Spec::MultiProcess.run(backend: "redis", backend_config: { "url" => url },
                                          nodes: 3, jobs: 5, duration: duration)
    puts "\n  #{result.summary}"

    expect(result.crashes).to be_empty, -> { explain(result) }
    expect(result.kills).to be >= [(duration / 8).floor, 1].max
    expect(result.dispatches).to be > 0, -> { explain(result) }
    expect(result.duplicates).to be_empty, -> { explain(result) }
    expect(result.coverage).to be >= 90.0, -> { explain(result) }
  end

  # Redis itself dies (SIGKILL) for a few seconds under running nodes. With
  # appendfsync always it comes back with its data: the nodes must survive,
  # run nothing while it is gone (fail closed), catch up the missed seconds
  # from the lookback window once it is back, and still run no pair twice.
  it "fails closed while Redis is down and catches up without duplicates when it returns" do
    skip "redis-server is not installed" unless Kaal::Spec::RedisServer.available?

    server = Kaal::Spec::RedisServer.start("--appendonly", "yes", "--appendfsync", "always")
    result = Kaal::Spec::MultiProcess.run(
      backend: "redis", backend_config: { "url" => server.url }, nodes: 2, jobs: 3, duration: 20,
      kill_every: nil, events: [[7, "redis killed", -> { server.kill }], [11, "redis restarted", -> { server.start }]]
    )
    down = result.events.to_h
    puts "\n  outage: #{result.summary}"

    expect(result.crashes).to be_empty, -> { explain(result) }
    expect(result.duplicates).to be_empty, -> { explain(result) }
    ran_while_down = result.records.select do |*, ran_at|
      ran_at > down.fetch("redis killed").to_f + 1.0 && ran_at < down.fetch("redis restarted").to_f
    end
    expect(ran_while_down).to be_empty
    missed = result.records.select { |_, fire, *| fire.between?(down["redis killed"].to_i + 1, down["redis restarted"].to_i - 1) }
    expect(missed).not_to be_empty # the outage's seconds were caught up ...
    expect(missed.map(&:last).min).to be >= down["redis restarted"].to_f # ... after the restart
    expect(result.coverage).to be >= 90.0, -> { explain(result) }
  ensure
    server&.stop
  end

  # The control: with the memory backend every process has its own store, so
  # every node runs every job. If the harness could not see that, the example
  # above would prove nothing.
  it "detects duplicates when the nodes do not share a backend (harness control)" do
    result = Kaal::Spec::MultiProcess.run(backend: "memory", backend_config: {},
                                          nodes: 2, jobs: 2, duration: 8, kill_every: 100.0..100.0)
    puts "\n  control, memory backend: #{result.summary}"

    expect(result.crashes).to be_empty, -> { explain(result) }
    expect(result.duplicates.size).to be >= 4, -> { explain(result) }
  end
end
