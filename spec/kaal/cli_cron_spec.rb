# frozen_string_literal: true

require "spec_helper"
require "open3"
require "json"
require "time"

RSpec.describe "bin/kaal (cron commands)" do
  let(:bin) { File.expand_path("../../bin/kaal", __dir__) }

  # Runs bin/kaal as a user would (a separate process, warnings on).
  def kaal(*args, env: {})
    out, err, status = Open3.capture3({ "RUBYOPT" => nil }.merge(env), RbConfig.ruby, "-w", bin, *args,
                                      chdir: Dir.tmpdir)
    [out, err, status.exitstatus]
  end

  it "prints the next fire times with offsets, across a DST gap" do
    out, err, status = kaal("next", "30 2 * * *", "--count", "3", "--time-zone", "America/New_York",
                            "--from", "2026-03-07T12:00:00-05:00")
    expect([out, err, status]).to eq([<<~OUT, "", 0])
      2026-03-08T03:30:00-04:00
      2026-03-09T02:30:00-04:00
      2026-03-10T02:30:00-04:00
    OUT
  end

  it "prints UTC times as +00:00, one by default, and accepts Unix seconds for --from" do
    expect(kaal("next", "0 0 * * *", "--from", "0")).to eq(["1970-01-02T00:00:00+00:00\n", "", 0])
  end

  it "defaults --from to now" do
    out, _err, status = kaal("next", "* * * * *")
    expect(status).to eq(0)
    time = Time.iso8601(out.chomp)
    expect(time).to be > Time.now - 1
    expect(time).to be <= Time.now + 61
  end

  it "prints a JSON array with --json, and takes a trailing zone and a multi-argument expression" do
    out, err, status = kaal("--json", "next", "0", "9", "*", "*", "1", "Europe/Berlin", "-n", "2",
                            "--from", "2026-01-01T00:00:00Z")
    expect([err, status]).to eq(["", 0])
    expect(JSON.parse(out)).to eq(%w[2026-01-05T09:00:00+01:00 2026-01-12T09:00:00+01:00])
  end

  it "explains an expression in one sentence" do
    expect(kaal("explain", "30 2 * * *", "--time-zone", "America/New_York"))
      .to eq(["At 02:30 every day (America/New_York)\n", "", 0])
    out, _err, status = kaal("explain", "5 4 * * SUN#2", "--json")
    expect(status).to eq(0)
    expect(JSON.parse(out)).to eq("expression" => "5 4 * * SUN#2", "time_zone" => "UTC",
                                  "explanation" => "At 04:05 on the second Sunday of the month (UTC)")
  end

  it "exits 2 with one line naming the field for a bad expression" do
    out, err, status = kaal("next", "61 * * * *")
    expect(out).to eq("")
    expect(status).to eq(2)
    expect(err).to eq(%(kaal: minute field: "61" is out of range 0-59 in "61 * * * *"\n))

    _out, err, status = kaal("explain", "0 0 30 2 *")
    expect(status).to eq(2)
    expect(err).to start_with("kaal: expression:").and include("can never fire")
    expect(err.lines.size).to eq(1)
  end

  it "exits 2 for usage errors" do
    [
      [%w[next], /missing cron expression/],
      [%w[frobnicate], /unknown command "frobnicate"/],
      [["next", "* * * * *", "--from", "yesterday"], /--from: "yesterday" is not an ISO 8601 time/],
      [["next", "* * * * *", "--count", "0"], /--count must be between 1 and/],
      [["next", "* * * * *", "--count", "x"], /invalid argument: --count x/],
      [["next", "* * * * *", "--bogus"], /invalid option: --bogus/],
      [["next", "* * * * *", "--time-zone", "Mars/Base"], %r{unknown time zone "Mars/Base"}],
      [["--require", "no/such/file", "version"], %r{--require: cannot load no/such/file}]
    ].each do |args, message|
      out, err, status = kaal(*args)
      expect([out, status]).to eq(["", 2]), args.inspect
      expect(err).to start_with("kaal: ").and match(message)
      expect(err.lines.size).to eq(1)
    end
  end

  it "prints the version" do
    expect(kaal("version")).to eq(["kaal #{Kaal::VERSION}\n", "", 0])
    expect(JSON.parse(kaal("version", "--json")[0])).to eq("version" => Kaal::VERSION)
  end

  it "prints usage for help, -h and --help, and per-command help" do
    [["help"], ["-h"], ["--help"]].each do |args|
      out, err, status = kaal(*args)
      expect([err, status]).to eq(["", 0])
      expect(out).to start_with("Usage: kaal COMMAND").and include("next EXPR", "explain EXPR", "--config PATH")
    end
    out, _err, status = kaal("help", "next")
    expect(status).to eq(0)
    expect(out).to start_with("Usage: kaal next EXPR").and include("--count N", "--time-zone ZONE", "--from TIME")
    expect(kaal("next", "--help")).to eq([out, "", 0])
    # No command is a usage error: the usage goes to stderr, exit 2.
    out, err, status = kaal
    expect([out, status]).to eq(["", 2])
    expect(err).to start_with("Usage: kaal COMMAND")
  end

  it "accepts the global options before or after the command" do
    config = File.join(Dir.tmpdir, "kaal-cli-spec-required.rb")
    File.write(config, "$stderr.puts 'required'\n")
    out, err, status = kaal("--config", "config/kaal.yml", "--env", "test", "explain", "@daily",
                            "--require", config)
    expect([out, err, status]).to eq(["At 00:00 every day (UTC)\n", "required\n", 0])
  ensure
    File.delete(config) if config && File.exist?(config)
  end

  it "exits 1 with one line for a runtime failure" do
    failing = File.join(Dir.tmpdir, "kaal-cli-spec-failing.rb")
    File.write(failing, "Kaal::Cron.prepend(Module.new { def next_times(*) = raise(IOError, 'disk on fire') })\n")
    out, err, status = kaal("--require", failing, "next", "* * * * *")
    expect([out, err, status]).to eq(["", "kaal: disk on fire (IOError)\n", 1])
  ensure
    File.delete(failing) if failing && File.exist?(failing)
  end
end
