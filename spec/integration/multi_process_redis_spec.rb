# frozen_string_literal: true

# Several real `kaal start` processes on one Redis, one of them SIGKILLed and
# restarted every few seconds: no (job key, fire time) may run twice, and
# nearly every second of every job must still run. The record is written by
# the jobs themselves (see spec/support/multi_process.rb).
RSpec.describe "kaal start on Redis with nodes killed at random", :integration do
  include Kaal::Spec::MultiProcess::Examples
  kaal_backend_for :redis

  it "runs every (key, fire time) at most once and keeps >= 90% coverage" do
    expect_random_kills_survived("redis", { "url" => kaal_backend_url })
  end

  # Redis itself dies (SIGKILL) for a few seconds under running nodes. With
  # appendfsync always it comes back with its data.
  it "fails closed while Redis is down and catches up without duplicates when it returns" do
    skip "redis-server is not installed" unless Kaal::Spec::RedisServer.available?

    server = Kaal::Spec::RedisServer.start("--appendonly", "yes", "--appendfsync", "always")
    expect_outage_survived("redis", { "url" => server.url },
                           down: ["redis killed", -> { server.kill }], up: ["redis restarted", -> { server.start }])
  ensure
    server&.stop
  end

  # The control: with the memory backend every process has its own store, so
  # every node runs every job. If the harness could not see that, the example
  # above would prove nothing.
  it "detects duplicates when the nodes do not share a backend (harness control)" do
    result = Kaal::Spec::MultiProcess.run(backend: "memory", backend_config: {},
                                          nodes: 2, jobs: 2, duration: 8, kill_every: 100.0..100.0)
    puts "\n  control: #{result.summary}"

    expect(result.crashes).to be_empty, -> { explain(result) }
    expect(result.duplicates.size).to be >= 4, -> { explain(result) }
  end
end
