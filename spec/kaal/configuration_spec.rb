# frozen_string_literal: true

require_relative "runtime_helper"

RSpec.describe Kaal::Configuration do
  include KaalRuntimeHelper

  let(:config) { described_class.new }

  it "has the documented defaults" do
    expect(config.to_h).to include(
      backend: "memory", backend_config: {}, scheduler_config_path: "config/kaal-scheduler.yml",
      namespace: "kaal", tick_interval: 5, window_lookback: 120, window_lookahead: 0, lease_ttl: 125,
      enable_dispatch_recovery: true, enable_log_dispatch_registry: true, time_zone: "UTC",
      delayed_job_allowed_class_prefixes: nil, recovery_window: 86_400, catch_up: "latest",
      scheduler_conflict_policy: "error", worker_threads: 5, shutdown_timeout: 30, log_level: "info", node_id: nil
    )
    expect(config.max_catch_up_runs).to be >= 1
    expect(config.dispatch_log_retention).to be > config.recovery_window
  end

  describe "logger and log_level" do
    it "leaves the level of a logger the application passes as it is" do
      app_logger = Logger.new(StringIO.new)
      app_logger.level = Logger::DEBUG
      Kaal.configure { |c| c.logger = app_logger; c.log_level = :warn }
      expect(Kaal.logger).to be(app_logger)
      expect(app_logger.level).to eq(Logger::DEBUG)
    end

    it "applies log_level to the logger kaal builds itself" do
      Kaal.configure { |c| c.logger = nil; c.log_level = :warn }
      expect(Kaal.logger.level).to eq(Logger::WARN)
    end
  end

  describe "time_zone" do
    it "is refused where it is set when the zone does not exist" do
      expect { Kaal.configure { |c| c.time_zone = "Mars/Base" } }
        .to raise_error(Kaal::ConfigurationError, /time_zone: unknown time zone "Mars\/Base"/)
      expect { config.apply_env("KAAL_TIME_ZONE" => "Mars/Base") }
        .to raise_error(Kaal::ConfigurationError, %r{KAAL_TIME_ZONE: time_zone: unknown time zone "Mars/Base"})
      in_tmpdir do
        write("config/kaal.yml", "defaults:\n  time_zone: Mars/Base\n")
        expect { Kaal.load_config_file!("config/kaal.yml") }
          .to raise_error(Kaal::ConfigurationError, %r{\Aconfig/kaal.yml: time_zone: unknown time zone "Mars/Base"})
      end
      Kaal.configure { |c| c.time_zone = "Europe/Berlin" }
      expect(Kaal.configuration.time_zone).to eq("Europe/Berlin")
    end

    it "names TZDIR and the tzdata package when the zone database is missing" do
      script = <<~RUBY
        begin
          Kaal.configure { |c| c.time_zone = "America/Chicago" }
        rescue Kaal::ConfigurationError => e
          puts e.message
        end
      RUBY
      out = IO.popen({ "TZDIR" => "/nonexistent-zoneinfo" },
                     [RbConfig.ruby, "-I", File.expand_path("../../lib", __dir__), "-rkaal", "-e", script], &:read)
      expect(out).to include('time_zone: unknown time zone "America/Chicago"', "/nonexistent-zoneinfo (from TZDIR)",
                             "tzdata package", "TZDIR")
    end
  end

  it "refuses a wrong type naming the option" do
    expect { config.tick_interval = "fast" }
      .to raise_error(Kaal::ConfigurationError, /tick_interval: must be a number > 0, got "fast"/)
    expect { config.enable_dispatch_recovery = "yes" }.to raise_error(Kaal::ConfigurationError, /enable_dispatch_recovery/)
    expect { config.catch_up = :sometimes }.to raise_error(Kaal::ConfigurationError, /catch_up: must be one of latest, all, none/)
    expect { config.worker_threads = 0 }.to raise_error(Kaal::ConfigurationError, /worker_threads: must be an Integer >= 1/)
  end

  it "refuses a namespace or node_id that a backend column cannot hold" do
    expect { config.namespace = "n" * 256 }
      .to raise_error(Kaal::ConfigurationError, /namespace: is 256 characters long; at most 255 fit a backend's column/)
    expect { config.node_id = "web\0" }.to raise_error(Kaal::ConfigurationError, /node_id: must not contain NUL bytes/)
    expect { config.node_id = "\xff".b }.to raise_error(Kaal::ConfigurationError, /node_id: must be valid UTF-8/)
    config.node_id = nil
    expect(config.node_id).to be_nil
  end

  it "refuses an unknown backend listing the valid ones" do
    expect { config.backend = :cassandra }
      .to raise_error(Kaal::ConfigurationError, /backend: unknown backend "cassandra" \(valid backends: memory, redis, sqlite, postgres, mysql\)/)
  end

  it "refuses a dispatch_log_retention that does not outlive recovery_window" do
    expect { Kaal.configure { |c| c.dispatch_log_retention = 3600 } }
      .to raise_error(Kaal::ConfigurationError,
                      /dispatch_log_retention: must be > recovery_window \(86400\), got 3600: .*dispatched again/)
    expect { Kaal.configure { |c| c.dispatch_log_retention = 3600; c.recovery_window = 600 } }.not_to raise_error
    expect { Kaal.configure { |c| c.enable_dispatch_recovery = false; c.dispatch_log_retention = 60 } }
      .to raise_error(Kaal::ConfigurationError, /must be > window_lookback \(120\), got 60/)
  end

  it "accepts a recovery_window of days on every backend, the retention outliving it" do
    %w[redis postgres].each do |backend|
      expect do
        Kaal.configure { |c| c.backend = backend; c.recovery_window = 8 * 86_400; c.dispatch_log_retention = 30 * 86_400 }
      end.not_to raise_error
    end
  end

  it "refuses lease_ttl below window_lookback + tick_interval" do
    expect { Kaal.configure { |c| c.window_lookback = 300 } }
      .to raise_error(Kaal::ConfigurationError, /lease_ttl: must be >= window_lookback \+ tick_interval \(300 \+ 1\), got 125/)
    expect { Kaal.configure { |c| c.window_lookback = 300; c.lease_ttl = 301 } }.not_to raise_error
  end

  describe "KAAL_<OPTION> environment overrides" do
    it "parses booleans, numbers, lists and enums" do
      config.apply_env(
        "KAAL_ENABLE_DISPATCH_RECOVERY" => "off", "KAAL_ENABLE_LOG_DISPATCH_REGISTRY" => "Yes",
        "KAAL_TICK_INTERVAL" => "2.5", "KAAL_WORKER_THREADS" => "9",
        "KAAL_DELAYED_JOB_ALLOWED_CLASS_PREFIXES" => "Jobs::, Mailers::", "KAAL_CATCH_UP" => "all",
        "KAAL_BACKEND" => "redis", "KAAL_NAMESPACE" => "from-env"
      )
      expect(config.enable_dispatch_recovery).to be(false)
      expect(config.enable_log_dispatch_registry).to be(true)
      expect(config.tick_interval).to eq(2.5)
      expect(config.worker_threads).to eq(9)
      expect(config.delayed_job_allowed_class_prefixes).to eq(%w[Jobs:: Mailers::])
      expect(config.catch_up).to eq(:all)
      expect(config.backend).to eq("redis")
      expect(config.namespace).to eq("from-env")
    end

    it "refuses anything unparsable, naming the variable" do
      expect { config.apply_env("KAAL_ENABLE_DISPATCH_RECOVERY" => "maybe") }
        .to raise_error(Kaal::ConfigurationError, %r{KAAL_ENABLE_DISPATCH_RECOVERY: .*1/true/yes/on/0/false/no/off, got "maybe"})
      expect { config.apply_env("KAAL_TICK_INTERVAL" => "5s") }
        .to raise_error(Kaal::ConfigurationError, /KAAL_TICK_INTERVAL: tick_interval: cannot parse "5s"/)
      expect { config.apply_env("KAAL_WORKER_THREADS" => "2.5") }
        .to raise_error(Kaal::ConfigurationError, /KAAL_WORKER_THREADS/)
    end

    it "lets KAAL_BACKEND_URL override backend_config.url" do
      config.backend_config = { url: "redis://127.0.0.1:1/0", connect_timeout: 2 }
      config.apply_env("KAAL_BACKEND_URL" => "redis://127.0.0.1:2/1")
      expect(config.backend_config).to eq(url: "redis://127.0.0.1:2/1", connect_timeout: 2)
    end
  end

  it "never shows a password in to_h" do
    config.backend_config = { url: "redis://:s3cret@127.0.0.1:6379/0", connection: { password: "hunter2", host: "db" } }
    text = config.to_h.inspect
    expect(text).not_to include("s3cret")
    expect(text).not_to include("hunter2")
    expect(text).to include("127.0.0.1:6379")
  end

  describe "Kaal.load_config_file!" do
    around { |ex| in_tmpdir { ex.run } }

    def load(env: nil)
      Kaal.load_config_file!("config/kaal.yml", env: env)
    end

    it "merges defaults with the environment section, renders ERB and applies KAAL_* variables" do
      write("config/kaal.yml", <<~YAML)
        defaults:
          backend: memory
          namespace: <%= "app" + "-ns" %>
          tick_interval: 5
          backend_config:
            connect_timeout: 3
        production:
          tick_interval: 2
          backend_config:
            url: redis://127.0.0.1:6379/0
      YAML
      expect(load(env: "production").to_h).to include(namespace: "app-ns", tick_interval: 2)
      expect(Kaal.configuration.backend_config).to eq(connect_timeout: 3, url: "redis://127.0.0.1:6379/0")
      expect(load(env: "development").tick_interval).to eq(5)

      ENV["KAAL_TICK_INTERVAL"] = "3"
      expect(load(env: "production").tick_interval).to eq(3)
    ensure
      ENV.delete("KAAL_TICK_INTERVAL")
    end

    it "picks the section from KAAL_ENV, then RAILS_ENV, RACK_ENV, APP_ENV, else development" do
      expect(Kaal::ConfigFile.environment(nil, {})).to eq("development")
      expect(Kaal::ConfigFile.environment(nil, "APP_ENV" => "a", "RACK_ENV" => "r")).to eq("r")
      expect(Kaal::ConfigFile.environment(nil, "KAAL_ENV" => "k", "RAILS_ENV" => "x")).to eq("k")
      expect(Kaal::ConfigFile.environment("cli", "KAAL_ENV" => "k")).to eq("cli")
    end

    it "names the file and lists valid options for an unknown key" do
      write("config/kaal.yml", "defaults:\n  backend: memory\n  tick_intreval: 5\n")
      expect { load }.to raise_error(Kaal::ConfigurationError) { |e|
        expect(e.message).to start_with("config/kaal.yml: tick_intreval: unknown option (valid options: backend, ")
        expect(e.message).to include("tick_interval")
      }
    end

    it "names the file and field for a wrong type and an unknown backend" do
      write("config/kaal.yml", "defaults:\n  lease_ttl: soon\n")
      expect { load }.to raise_error(Kaal::ConfigurationError, /\Aconfig\/kaal.yml: lease_ttl: must be a number > 0, got "soon"/)
      write("config/kaal.yml", "defaults:\n  backend: mongo\n")
      expect { load }.to raise_error(Kaal::ConfigurationError, /\Aconfig\/kaal.yml: backend: unknown backend "mongo"/)
    end

    it "reports a missing file, invalid YAML (with line) and a broken lease rule" do
      expect { load }.to raise_error(Kaal::ConfigurationError, /\Aconfig\/kaal.yml: configuration file not found/)
      write("config/kaal.yml", "defaults:\n  backend: [memory\n")
      expect { load }.to raise_error(Kaal::ConfigurationError, /\Aconfig\/kaal.yml: line \d+: invalid YAML/)
      write("config/kaal.yml", "defaults:\n  window_lookback: 600\n")
      expect { load }.to raise_error(Kaal::ConfigurationError, /\Aconfig\/kaal.yml: lease_ttl: must be >= window_lookback/)
    end

    it "keeps passwords out of error messages" do
      write("config/kaal.yml", "defaults:\n  backend_config: \"redis://:hunter2@h/0\"\n")
      expect { load }.to raise_error(Kaal::ConfigurationError) { |e|
        expect(e.message).to include("config/kaal.yml: backend_config: must be a Hash")
        expect(e.message).not_to include("hunter2")
      }
    end
  end
end
