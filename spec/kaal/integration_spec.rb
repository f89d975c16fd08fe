# frozen_string_literal: true

require_relative "runtime_helper"
require "sequel"
require "redis"
require "json"
require "kaal/cli"

RSpec.describe Kaal::Integration do
  include KaalRuntimeHelper

  def app(dir, config: nil, jobs: nil)
    write(File.join(dir, "config/kaal.yml"), config) if config
    write(File.join(dir, "config/kaal-scheduler.yml"), jobs) if jobs
    dir
  end

  JOBS = <<~YAML
    defaults:
      jobs:
        - key: "a"
          cron: "* * * * * *"
          job_class: "SpecRecorderJob"
  YAML

  let(:logger) { Kaal::Log.build(log_io) }

  around do |example|
    Dir.mktmpdir("kaal-integration") do |dir|
      @dir = dir
      example.run
    ensure
      described_class.stop_scheduler!(timeout: 5)
    end
  end

  it "reads config/kaal.yml from the root, puts the options over it and loads the scheduler file" do
    app(@dir, config: "defaults:\n  namespace: from-file\n  tick_interval: 3\n", jobs: JOBS)
    config = described_class.setup(root: @dir, environment: "test", namespace: "from-option", logger: logger)

    expect(config).to equal(Kaal.configuration)
    expect(config.namespace).to eq("from-option")
    expect(config.tick_interval).to eq(3)
    expect(config.scheduler_config_path).to eq(File.join(@dir, "config/kaal-scheduler.yml"))
    expect(Kaal.jobs.map { |j| j[:key] }).to eq(["a"])
    expect(config.logger).to equal(logger)
  end

  it "puts defaults beneath the file and KAAL_* variables over the options" do
    app(@dir, config: "defaults:\n  tick_interval: 3\n  database: secondary\n")
    seen = nil
    defaults = lambda do |settings|
      seen = settings
      { tick_interval: 9, namespace: "from-defaults" }
    end
    ENV["KAAL_WINDOW_LOOKBACK"] = "30"
    config = described_class.setup(root: @dir, defaults: defaults, file_keys: ["database"], window_lookback: 60,
                                   logger: logger)
    expect(seen).to include(tick_interval: 3, database: "secondary", window_lookback: 60)
    expect([config.tick_interval, config.namespace, config.window_lookback]).to eq([3, "from-defaults", 30])
  ensure
    ENV.delete("KAAL_WINDOW_LOOKBACK")
  end

  it "adds a backend_config without a connection of its own to the connection the defaults give" do
    app(@dir, config: "defaults:\n  backend_config:\n    command_timeout: 7\n")
    defaults = { backend: "sqlite", backend_config: { url: "db/app.sqlite3" } }
    config = described_class.setup(root: @dir, defaults: defaults, logger: logger)
    expect(config.backend_config).to eq(url: File.join(@dir, "db/app.sqlite3"), command_timeout: 7)

    app(@dir, config: "defaults:\n  backend_config:\n    url: db/other.sqlite3\n")
    config = described_class.setup(root: @dir, defaults: defaults, logger: logger)
    expect(config.backend_config).to eq(url: File.join(@dir, "db/other.sqlite3"))
  end

  it "refuses unknown options, naming the option and the caller" do
    expect { described_class.setup(root: @dir, label: "kaal (Sinatra)", tick_intervall: 1) }
      .to raise_error(Kaal::ConfigurationError, /kaal \(Sinatra\): unknown option tick_intervall:/)
  end

  it "refuses an unknown key in config/kaal.yml unless the integration allows it" do
    app(@dir, config: "defaults:\n  database: primary\n")
    expect { described_class.setup(root: @dir) }
      .to raise_error(Kaal::ConfigurationError, %r{config/kaal.yml: database: unknown option})
  end

  it "fails the boot on a broken scheduler file, naming file, job and field" do
    app(@dir, jobs: "defaults:\n  jobs:\n    - key: \"b\"\n      cron: \"61 * * * *\"\n      job_class: \"X\"\n")
    expect { described_class.setup(root: @dir, logger: logger) }
      .to raise_error(Kaal::ConfigurationError, %r{kaal-scheduler.yml.*b.*cron}m)
  end

  it "refuses a scheduler_config_path that does not exist" do
    expect { described_class.setup(root: @dir, scheduler_config_path: "config/nope.yml") }
      .to raise_error(Kaal::ConfigurationError, %r{config/nope.yml: scheduler file not found})
  end

  describe "connection options" do
    it "turns redis: into the redis backend" do
      redis = Redis.new(url: "redis://127.0.0.1:6399/2")
      config = described_class.setup(root: @dir, redis: redis)
      expect(config.backend).to eq("redis")
      expect(config.backend_config[:redis]).to equal(redis)
    end

    it "infers the backend from a Sequel database and refuses a contradicting adapter:" do
      db = Sequel.sqlite(File.join(@dir, "app.sqlite3"))
      expect(described_class.setup(root: @dir, database: db).backend).to eq("sqlite")
      expect(described_class.setup(root: @dir, database: db, adapter: "sqlite").backend).to eq("sqlite")
      expect { described_class.setup(root: @dir, database: db, adapter: "postgres") }
        .to raise_error(Kaal::ConfigurationError, /adapter: "postgres" contradicts database:/)
    ensure
      db&.disconnect
    end

    it "refuses conflicting connection options" do
      db = Sequel.sqlite
      redis = Redis.new
      expect { described_class.setup(root: @dir, redis: redis, database: db) }
        .to raise_error(Kaal::ConfigurationError, /redis: or database:, not both/)
      expect { described_class.setup(root: @dir, adapter: "postgres") }
        .to raise_error(Kaal::ConfigurationError, /adapter: goes with database:/)
      expect { described_class.setup(root: @dir, redis: redis, backend: "postgres") }
        .to raise_error(Kaal::ConfigurationError, /backend: "postgres" contradicts redis:/)
      expect { described_class.setup(root: @dir, database: "postgres://x") }
        .to raise_error(Kaal::ConfigurationError, /database: must be a Sequel::Database/)
    ensure
      db&.disconnect # an open SQLite connection would be inherited by the forks of later examples
    end
  end

  describe "the embedded scheduler" do
    it "starts with start_scheduler: true, runs the file's jobs and stops" do
      app(@dir, jobs: JOBS)
      SpecRecorderJob.drain
      described_class.setup(root: @dir, logger: logger, tick_interval: 1, start_scheduler: true)
      expect(described_class.scheduler_running?).to be(true)
      deadline = Time.now + 10
      sleep 0.05 while SpecRecorderJob.runs.empty? && Time.now < deadline
      expect(SpecRecorderJob.runs).not_to be_empty
      expect(described_class.stop_scheduler!(timeout: 5)).to be(true)
      expect(Kaal.running?).to be(false)
    end

    it "runs on the memory backend in one process only: a second process does not start it" do
      app(@dir, jobs: JOBS)
      described_class.setup(root: @dir, logger: logger, start_scheduler: true)
      reader, writer = IO.pipe
      pid = fork do
        reader.close
        Kaal.reset!
        out = StringIO.new
        described_class.setup(root: @dir, logger: Kaal::Log.build(out))
        started = described_class.after_fork
        writer.write("#{started} #{out.string[/backend memory keeps claims in one process only/]}")
        writer.close
        exit!(0)
      end
      writer.close
      Process.wait(pid)
      expect(reader.read).to eq("false backend memory keeps claims in one process only")
    end
    it "after a fork, runs a fresh scheduler in the child, never the dispatches the parent had queued" do
      runs = File.join(@dir, "runs.log")
      parent = Process.pid
      gate = Queue.new
      described_class.setup(root: @dir, logger: logger, backend: "sqlite",
                            backend_config: { url: File.join(@dir, "kaal.sqlite3") },
                            worker_threads: 1, shutdown_timeout: 3)
      Kaal.backend.migrate
      # a-slow holds the only worker thread in the parent, so b-record waits in its queue
      Kaal.register(key: "a-slow", cron: "0 0 1 1 *") { |**| gate.pop if Process.pid == parent }
      Kaal.register(key: "b-record", cron: "0 0 1 1 *") do |fire_time:, **|
        File.open(runs, "a") { |f| f.write("#{fire_time.to_i} #{Process.pid}\n") }
      end
      t0 = at("2025-01-01T00:00:00")
      t1 = at("2026-01-01T00:00:00")
      Kaal.tick!(now: t0, wait: false)

      pid = fork do
        described_class.after_fork
        Kaal.tick!(now: t1, wait: true) # the child's own work for t1
        described_class.stop_scheduler!(timeout: 3)
        exit!(0)
      end
      Process.wait(pid)
      gate << true
      Kaal.stop!(timeout: 5) # waits for the parent's queued b-record

      lines = File.readlines(runs, chomp: true)
      expect(lines).to contain_exactly("#{t0} #{parent}", "#{t1} #{pid}")
    end
  end

  describe "error_reporter and job_wrapper" do
    it "reports failed jobs with their context and runs every job inside the wrapper" do
      stub_const("FailingJob", Class.new { def self.perform(**) = raise("boom") })
      app(@dir, jobs: "defaults:\n  jobs:\n    - key: f\n      cron: \"* * * * *\"\n      job_class: FailingJob\n")
      reported = Queue.new
      wrapped = Queue.new
      described_class.setup(root: @dir, logger: logger,
                            error_reporter: ->(error, context) { reported << [error.message, context] },
                            job_wrapper: ->(&blk) { wrapped << :in; blk.call })
      Kaal.tick!(now: Time.utc(2026, 1, 1, 0, 0, 0))
      deadline = Time.now + 5
      sleep 0.02 while reported.empty? && Time.now < deadline
      message, context = reported.pop(true)
      expect(message).to eq("boom")
      expect(context).to include(key: "f", fire_time: Time.utc(2026, 1, 1, 0, 0, 0),
                                 idempotency_key: Kaal.idempotency_key("f", Time.utc(2026, 1, 1)))
      expect(wrapped.size).to eq(1)
    end
  end
  describe ".set_up?" do
    it "is true while setup's configuration is in force, and the CLI keeps it" do
      app(@dir, config: "defaults:\n  namespace: from-file\n", jobs: JOBS)
      expect(described_class.set_up?).to be(false)
      described_class.setup(root: @dir, environment: "test", namespace: "from-app", logger: logger)
      expect(described_class.set_up?).to be(true)

      out = StringIO.new
      Dir.chdir(@dir) { Kaal::CLI.start(%w[status --json], out: out, err: StringIO.new) }
      expect(JSON.parse(out.string)["settings"]["namespace"]).to eq("from-app")

      Kaal.configure { |c| c.namespace = "by-hand" }
      expect(described_class.set_up?).to be(false)
    end
  end
end
