# frozen_string_literal: true

require_relative "runtime_helper"
require "json"
require "stringio"
require "kaal/cli"

# `kaal schedules list|add|remove` and the stored schedules of `kaal
# status`, in process (Kaal::CLI.start), over a SQLite file.
RSpec.describe "kaal schedules" do
  include KaalRuntimeHelper

  around { |ex| in_tmpdir { ex.run } }

  before do
    write("config/kaal.yml", <<~YAML)
      defaults:
        backend: sqlite
        backend_config:
          path: #{File.join(Dir.pwd, "kaal.sqlite3")}
        namespace: cli-schedules
        delayed_job_allowed_class_prefixes: ["Reports::"]
    YAML
    write("config/kaal-scheduler.yml", <<~YAML)
      defaults:
        jobs:
          - key: nightly
            cron: "0 2 * * *"
            job_class: Reports::NightlyJob
    YAML
  end

  def kaal(*args)
    out = StringIO.new
    err = StringIO.new
    Kaal.reset!
    code = Kaal::CLI.start(args, out: out, err: err)
    [out.string, err.string, code]
  end

  it "adds, lists (table and --json), replaces and removes stored schedules" do
    out, err, code = kaal("schedules", "add", "report:1", "--cron", "0 9 * * 1-5", "--class", "Reports::DailyJob",
                          "--args", "[42]", "--kwargs", '{"format": "pdf"}', "-z", "Europe/Paris", "-q", "reports")
    expect([err, code]).to eq(["", 0])
    expect(out).to eq("stored: report:1  0 9 * * 1-5  Europe/Paris  Reports::DailyJob\n")
    _, _, code = kaal("schedules", "add", "report:2", "--cron", "@hourly", "--class", "Reports::HourlyJob", "--disabled")
    expect(code).to eq(0)

    out, = kaal("schedules", "list")
    expect(out.lines.first.split).to eq(%w[KEY CRON ZONE STATE CLASS QUEUE ARGS])
    expect(out).to include("report:1", "Europe/Paris", "enabled", "Reports::DailyJob", "reports", '[42] {"format":"pdf"}')
    expect(out).to match(/report:2\s+@hourly\s+\(UTC\)\s+disabled \(stored\)/)
    listed = JSON.parse(kaal("schedules", "list", "--json")[0])
    expect(listed.map { |s| s.values_at("key", "source", "enabled", "paused", "state") })
      .to eq([["report:1", "stored", true, false, "enabled"], ["report:2", "stored", false, false, "disabled (stored)"]])

    kaal("schedules", "add", "report:2", "--cron", "30 * * * *", "--class", "Reports::HourlyJob")
    expect(JSON.parse(kaal("schedules", "list", "--json")[0]).last).to include("cron" => "30 * * * *", "enabled" => true)

    out, err, code = kaal("status")
    expect(code).to eq(0), err
    expect(out).to include("Stored schedules (2):", "report:1", "report:2")
    status = JSON.parse(kaal("status", "--json")[0])
    expect(status.dig("backend", "stored_schedules", "count")).to eq(2)

    expect(kaal("schedules", "remove", "report:2")).to eq(["removed: report:2\n", "", 0])
    expect(kaal("schedules", "remove", "report:2")).to eq(["", "kaal: no stored schedule \"report:2\" (namespace cli-schedules)\n", 1])
    expect(JSON.parse(kaal("schedules", "list", "--json")[0]).map { |s| s["key"] }).to eq(["report:1"])
  end

  it "refuses bad input with exit 2, naming the option or the field, storing nothing" do
    {
      %w[schedules] => "missing action",
      %w[schedules purge] => 'unknown action "purge"',
      %w[schedules add] => "missing KEY",
      %w[schedules add k --class Reports::X] => "--cron EXPR is required",
      %w[schedules add k --cron @daily] => "--class NAME is required",
      ["schedules", "add", "k", "--cron", "@daily", "--class", "Reports::X", "--args", "{"] => "--args: not valid JSON",
      ["schedules", "add", "k", "--cron", "@daily", "--class", "Reports::X", "--kwargs", "[1]"] => "--kwargs: expected a JSON object",
      ["schedules", "add", "k", "--cron", "99 * * * *", "--class", "Reports::X"] => "cron: \"99 * * * *\": minute field",
      ["schedules", "add", "k", "--cron", "@daily", "--class", "Billing::X"] => "job_class: Billing::X is outside delayed_job_allowed_class_prefixes",
      ["schedules", "add", "nightly", "--cron", "@daily", "--class", "Reports::X"] => "already defined in the scheduler file"
    }.each do |args, message|
      out, err, code = kaal(*args)
      expect([out, code]).to eq(["", 2]), "#{args.join(" ")}: #{err}"
      expect(err).to include(message)
    end
    expect(kaal("schedules", "list")[0]).to eq("no stored schedules (namespace cli-schedules)\n")
  end

  it "refuses the memory backend, whose schedules would vanish with the command" do
    write("config/kaal.yml", "defaults:\n  backend: memory\n")
    out, err, code = kaal("schedules", "add", "k", "--cron", "@daily", "--class", "Reports::X")
    expect([out, code]).to eq(["", 2])
    expect(err).to include("the memory backend keeps stored schedules in one process")
  end
end
