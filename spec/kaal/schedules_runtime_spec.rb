# frozen_string_literal: true

require_relative "runtime_helper"
require "tmpdir"

# Kaal.schedules through the process-wide runtime (Kaal.tick!, Kaal.jobs,
# Kaal.disable, a fork, a new configuration) over a SQLite file.
RSpec.describe "Kaal.schedules in the runtime" do
  include KaalRuntimeHelper

  around do |ex|
    Dir.mktmpdir("kaal-sched-rt") do |dir|
      @path = File.join(dir, "kaal.sqlite3")
      Kaal.configure do |c|
        c.backend = :sqlite
        c.backend_config = { path: @path }
      end
      ex.run
    end
  end

  let(:now) { Time.utc(2026, 3, 2, 8, 0, 0).to_i }

  it "schedules a stored job on the next tick, shows its three state facts, and pauses it from any process" do
    Kaal.schedules.upsert(key: "report", cron: "0 9 * * *", job_class: "SpecRecorderJob", args: ["{{key}}"])
    Kaal.tick!(now: now)
    job = Kaal.jobs(now: now).find { |j| j[:key] == "report" }
    expect(job).to include(source: "stored", source_enabled: true, paused: false, enabled: true, state: "enabled")
    Kaal.disable("report")
    expect(Kaal.jobs(now: now).find { |j| j[:key] == "report" }).to include(paused: true, state: "paused (Kaal.disable)")
    Kaal.enable("report")
    Kaal.schedules.upsert(key: "report", cron: "0 9 * * *", job_class: "SpecRecorderJob", enabled: false)
    Kaal.tick!(now: now + 1)
    expect(Kaal.jobs(now: now).find { |j| j[:key] == "report" }).to include(source_enabled: false, state: "disabled (stored)")
    expect { Kaal.enable("report") }.to raise_error(Kaal::ConfigurationError, /enabled: false there/)
  end

  it "a scheduler made again after fork keeps the stored jobs it inherited and follows the changes" do
    Kaal.schedules.upsert(key: "a", cron: "0 9 * * *", job_class: "SpecRecorderJob")
    Kaal.tick!(now: now)
    result = in_fork do
      Kaal.schedules.upsert(key: "b", cron: "0 10 * * *", job_class: "SpecRecorderJob")
      Kaal.tick!(now: now + 1)
      [Kaal.registry.jobs.keys.sort, log_io.string.scan(/ERROR.*/)].inspect
    end
    expect(result).to eq([%w[a b], []].inspect)
  end

  it "a new configuration takes the old namespace's stored jobs out of the registry" do
    Kaal.schedules.upsert(key: "a", cron: "0 9 * * *", job_class: "SpecRecorderJob")
    Kaal.tick!(now: now)
    expect(Kaal.registry.jobs.keys).to eq(["a"])
    Kaal.configure { |c| c.namespace = "another" }
    expect(Kaal.registry.jobs.keys).to eq([])
    Kaal.tick!(now: now + 1)
    expect(Kaal.registry.jobs.keys).to eq([])
  end
end
