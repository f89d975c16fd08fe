# frozen_string_literal: true

# Several real `kaal start` processes on one MySQL/MariaDB database, one of them
# SIGKILLed and restarted every few seconds: no (job key, fire time) may run
# twice, and nearly every second of every job must still run. The record is
# written by the jobs themselves (see spec/support/multi_process.rb).
RSpec.describe "kaal start on MySQL/MariaDB with nodes killed at random", :integration do
  let(:url) { ENV.fetch("KAAL_TEST_MYSQL_URL", "") }
  let(:duration) { Float(ENV.fetch("KAAL_MP_SECONDS", "30")) }

  def explain(result)
    ([result.summary] + result.crashes + result.node_logs.map { |n, log| "#{n}:\n#{log}" }).join("\n---\n")
  end

  before do
    reason =
      if !Kaal::Native.backends.include?("mysql") then "the mysql backend is not compiled into this build"
      elsif url.empty? then "KAAL_TEST_MYSQL_URL is not set (bin/services start mysql)"
      end
    if reason
      raise "#{reason} (KAAL_REQUIRE_SERVICES=1)" if ENV["KAAL_REQUIRE_SERVICES"] == "1"

      skip reason
    end
    # the tables exist before the nodes start (as after `kaal migrate`)
    handle = Kaal::Backend.build(:mysql, namespace: "migrate", config: { url: url })
    handle.migrate
    handle.close
  end

  it "runs every (key, fire time) at most once and keeps >= 90% coverage" do
    result = Kaal::Spec::MultiProcess.run(backend: "mysql", backend_config: { "url" => url },
                                          nodes: 3, jobs: 5, duration: duration)
    puts "\n  #{result.summary}"

    expect(result.crashes).to be_empty, -> { explain(result) }
    expect(result.kills).to be >= [(duration / 8).floor, 1].max
    expect(result.dispatches).to be > 0, -> { explain(result) }
    expect(result.duplicates).to be_empty, -> { explain(result) }
    expect(result.coverage).to be >= 90.0, -> { explain(result) }
  end
end
