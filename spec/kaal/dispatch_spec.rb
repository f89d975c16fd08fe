# frozen_string_literal: true

require_relative "runtime_helper"

# Spec job classes for the dispatch rules (fake ActiveJob / Sidekiq shapes).
module SpecDispatch
  LOG = Queue.new

  class ActiveLike
    def self.set(**opts)
      Configured.new(opts)
    end

    def self.perform_later(*args, **kwargs)
      LOG << [:active_job, nil, args, kwargs]
    end

    Configured = Struct.new(:opts) do
      def perform_later(*args, **kwargs)
        LOG << [:active_job, opts[:queue], args, kwargs]
        LOG << [:set, opts] if opts.keys != [:queue]
      end
    end
  end

  class SidekiqLike
    def self.set(**opts)
      Configured.new(opts)
    end

    def self.perform_async(*args)
      LOG << [:sidekiq, nil, args]
    end

    Configured = Struct.new(:opts) do
      def perform_async(*args)
        LOG << [:sidekiq, opts[:queue], args]
      end
    end
  end

  class Plain
    def self.perform(*args, **kwargs)
      LOG << [:class_perform, args, kwargs]
    end
  end

  class InstanceOnly
    def perform(*args, **kwargs)
      LOG << [:instance_perform, args, kwargs]
    end
  end

  module ModuleJob
    def self.perform(*args)
      LOG << [:module_perform, args]
    end
  end

  class Nothing; end

  def self.drain
    out = []
    out << LOG.pop until LOG.empty?
    out
  end
end

RSpec.describe "Dispatch rules" do
  include KaalRuntimeHelper

  let(:t0) { at("2026-07-01T08:00:00") }

  before { Kaal.configure { |c| c.enable_dispatch_recovery = false } }
  after { SpecDispatch.drain }

  # Registers job "k" (replacing it) and ticks at its next 08:00.
  def run(job_class, queue: nil, args: [1], kwargs: {})
    Kaal.unregister("k")
    Kaal.register(key: "k", cron: "0 8 * * *", job_class: job_class, queue: queue, args: args, kwargs: kwargs)
    @day = (@day || -1) + 1
    result = Kaal.tick!(now: t0 + (@day * 86_400))
    [result.first, SpecDispatch.drain]
  end

  it "ActiveJob-like: set(queue:).perform_later(*args, **kwargs)" do
    d, log = run("SpecDispatch::ActiveLike", queue: "critical", kwargs: { idempotency_key: "" })
    expect(d.status).to eq("dispatched")
    expect(log).to eq([[:active_job, "critical", [1], { idempotency_key: Kaal.idempotency_key("k", t0) }]])
  end

  it "ActiveJob-like: priority and set: options of the entry go to set(...)" do
    Kaal.register(key: "p", cron: "0 8 * * *", job_class: "SpecDispatch::ActiveLike", queue: "q", priority: 7,
                  set: { "wait" => 30 })
    Kaal.tick!(now: t0)
    expect(SpecDispatch.drain).to eq([[:active_job, "q", [], {}], [:set, { queue: "q", priority: 7, wait: 30 }]])
  end

  it "refuses a priority that is not an Integer, and queue or priority inside set:" do
    expect { Kaal.register(key: "p", cron: "* * * * *", job_class: "X", priority: "high") }
      .to raise_error(Kaal::ConfigurationError, /priority: must be an Integer, got "high"/)
    expect { Kaal.register(key: "p", cron: "* * * * *", job_class: "X", set: { queue: "a" }) }
      .to raise_error(Kaal::ConfigurationError, /set: queue has its own field/)
  end

  it "ActiveJob-like without a queue: perform_later directly" do
    _, log = run(SpecDispatch::ActiveLike)
    expect(log).to eq([[:active_job, nil, [1], {}]])
  end

  it "Sidekiq-like: set(queue:).perform_async(*args)" do
    _, log = run("SpecDispatch::SidekiqLike", queue: "low", args: ["{{fire_time.unix}}"])
    expect(log).to eq([[:sidekiq, "low", [t0]]])
  end

  it "plain class: .perform(*args, **kwargs) on the worker pool" do
    d, log = run("::SpecDispatch::Plain", kwargs: { "mode" => "full" })
    expect(d.status).to eq("dispatched")
    expect(log).to eq([[:class_perform, [1], { mode: "full" }]])
  end

  it "a new instance when only instances respond to perform" do
    _, log = run(SpecDispatch::InstanceOnly)
    expect(log).to eq([[:instance_perform, [1], {}]])
  end

  it "a Module used as given" do
    _, log = run(SpecDispatch::ModuleJob)
    expect(log).to eq([[:module_perform, [1]]])
  end

  it "records failed when the class is unknown or cannot run" do
    d, = run("SpecDispatch::Missing")
    expect(d.status).to eq("failed")
    expect(d.error).to include("unknown job class SpecDispatch::Missing")
    expect(Kaal.backend.dispatch_status("k", t0)).to eq("failed")

    d, = run("SpecDispatch::Nothing")
    expect(d.error).to include("does not respond to perform, perform_later or perform_async")
  end

  it "refuses a class name outside delayed_job_allowed_class_prefixes, recorded as failed" do
    # Registered before the allow-list was set (a job defined after it is refused at once).
    Kaal.register(key: "k", cron: "0 8 * * *", job_class: "SpecDispatch::Plain", args: [1])
    Kaal.configure { |c| c.delayed_job_allowed_class_prefixes = ["SpecDispatch::ActiveLike"] }
    d = Kaal.tick!(now: t0).first
    expect(SpecDispatch.drain).to be_empty
    expect(d.status).to eq("failed")
    expect(d.error).to include("outside delayed_job_allowed_class_prefixes")
    expect(Kaal.backend.dispatch_status("k", t0)).to eq("failed")
    @day = 0
    _, log = run("SpecDispatch::ActiveLike")
    expect(log.size).to eq(1)
  end

  it "matches delayed_job_allowed_class_prefixes by whole constant path segments" do
    allowed = ->(name, prefixes) { Kaal::Dispatcher.allowed_class?(name, prefixes) }
    expect(allowed.call("MyApp", %w[MyApp])).to be(true)
    expect(allowed.call("MyApp::Jobs::Report", %w[MyApp])).to be(true)
    expect(allowed.call("::MyApp::Report", %w[MyApp])).to be(true)
    expect(allowed.call("MyApp::Report", %w[::MyApp::])).to be(true)
    expect(allowed.call("MyAppEvil", %w[MyApp])).to be(false)
    expect(allowed.call("MyAppEvil::Job", %w[MyApp])).to be(false)
    expect(allowed.call("MyAp", %w[MyApp])).to be(false)
    expect(allowed.call("Other", %w[MyApp Other])).to be(true)
    expect(allowed.call("Anything", nil)).to be(true)

    Kaal.configure { |c| c.delayed_job_allowed_class_prefixes = ["SpecDispatch::Act"] }
    # A stored name that the string prefix "SpecDispatch::Act" used to let through.
    Kaal.backend.delayed_add(job_id: "d", run_at_ms: t0 * 1000, job_class: "SpecDispatch::ActiveLike", args_json: "[]")
    d = Kaal.tick!(now: t0 + 1).find { |x| x.job_id == "d" }
    expect(SpecDispatch.drain).to be_empty
    expect(d.error).to include("outside delayed_job_allowed_class_prefixes")
  end

  it "checks a recurring String job_class against the allow-list when the job is defined" do
    Kaal.configure { |c| c.delayed_job_allowed_class_prefixes = %w[SpecDispatch] }
    expect { Kaal.register(key: "evil", cron: "@hourly", job_class: "SpecDispatchEvil") }
      .to raise_error(Kaal::ConfigurationError, /Kaal.register\(key: "evil"\).*job_class: SpecDispatchEvil is outside delayed_job_allowed_class_prefixes \(SpecDispatch\)/)
    expect(Kaal.register(key: "ok", cron: "@hourly", job_class: "SpecDispatch::Plain").key).to eq("ok")
    in_tmpdir do
      write("config/kaal-scheduler.yml", "defaults:\n  jobs:\n    - {key: e, cron: '@daily', job_class: SpecDispatchEvil}\n")
      expect { Kaal.load_scheduler_file!("config/kaal-scheduler.yml") }
        .to raise_error(Kaal::ConfigurationError, %r{\Aconfig/kaal-scheduler.yml: defaults.jobs\[0\] \(job "e"\): job_class: SpecDispatchEvil is outside})
    end
    expect { Kaal.configure { |c| c.delayed_job_allowed_class_prefixes = ["my_app"] } }
      .to raise_error(Kaal::ConfigurationError, /delayed_job_allowed_class_prefixes: "my_app" is not a constant path/)
  end

  it "warns once at start when a shared backend runs in production without an allow-list" do
    skip "sqlite backend not built" unless Kaal::Native.backends.include?("sqlite")

    in_tmpdir do
      write("config/kaal.yml", "production:\n  backend: sqlite\n  backend_config: {path: kaal.sqlite3}\n  tick_interval: 1\n")
      Kaal.load_config_file!("config/kaal.yml", env: "production")
      Kaal.logger = Kaal::Log.build(log_io)
      Kaal.register(key: "k", cron: "@yearly") {}
      2.times do
        Kaal.start!
        Kaal.stop!
      end
      expect(log_io.string.scan("delayed_job_allowed_class_prefixes is not set").size).to eq(1)
      expect(log_io.string).to include("any class name stored in the shared sqlite backend can be run")
    end
  end

  it "only constantizes valid constant paths" do
    dispatcher = Kaal::Dispatcher.new(pool: nil, allowed_prefixes: nil, logger: ->(*) {})
    ["Kernel.exit", "foo", "A::b", "A;B", "::", "A::"].each do |name|
      expect { dispatcher.resolve(name) }.to raise_error(Kaal::Dispatcher::Refused, /not a constant name/)
    end
    expect(dispatcher.resolve("SpecDispatch::Plain")).to be(SpecDispatch::Plain)
  end
end

RSpec.describe "Kaal.idempotency_key" do
  include KaalRuntimeHelper

  def reference(ns, key, epoch)
    Digest::SHA256.hexdigest("kaal:v1:#{ns.bytesize}:#{ns}:#{key.bytesize}:#{key}:#{epoch}")
  end

  it "is SHA-256 of the canonical string, 64 lowercase hex characters" do
    require "digest"
    t = Time.utc(2026, 3, 9, 6, 30, 0)
    key = Kaal.idempotency_key("reports:weekly", t, namespace: "my-app")
    expect(key).to match(/\A[0-9a-f]{64}\z/)
    expect(key).to eq(reference("my-app", "reports:weekly", t.to_i))
    expect(Kaal.idempotency_key("reports:weekly", t.to_i, namespace: "my-app")).to eq(key)
    expect(Kaal.idempotency_key("reports:weekly", t + 0.7, namespace: "my-app")).to eq(key)
  end

  it "counts bytes for multibyte keys and namespaces" do
    require "digest"
    expect(Kaal.idempotency_key("rapport:hebdo-été-📈", 1_700_000_000, namespace: "ñs"))
      .to eq(reference("ñs", "rapport:hebdo-été-📈", 1_700_000_000))
  end

  it "keeps namespace and key apart (a-b + c differs from a + b-c)" do
    expect(Kaal.idempotency_key("c", 1, namespace: "a-b")).not_to eq(Kaal.idempotency_key("b-c", 1, namespace: "a"))
  end

  it "defaults to the configured namespace" do
    require "digest"
    expect(Kaal.idempotency_key("k", 42)).to eq(reference(Kaal.configuration.namespace, "k", 42))
  end
end
