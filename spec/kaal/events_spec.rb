# frozen_string_literal: true

require_relative "runtime_helper"
require "json"
require "logger"

RSpec.describe "Kaal events, error handlers and log lines" do
  include KaalRuntimeHelper

  let(:t0) { at("2026-06-01T12:00:00") }
  let(:received) { Queue.new }

  def drain(queue)
    out = []
    out << queue.pop until queue.empty?
    out
  end

  describe "Kaal.subscribe" do
    it "delivers dispatch and tick events with the documented fields" do
      Kaal.subscribe("dispatch", :tick) { |e| received << e }
      Kaal.register(key: "m", cron: "* * * * *", job_class: SpecRecorderJob, queue: nil)
      Kaal.tick!(now: t0)
      events = drain(received)
      dispatch = events.find { |e| e.name == "dispatch" }
      tick = events.find { |e| e.name == "tick" }

      expect(dispatch.payload).to include(
        kind: "dispatch", key: "m", fire_time: Time.at(t0).utc, status: "dispatched", node: Kaal.scheduler.node,
        idempotency_key: Kaal.idempotency_key("m", t0), job_class: "SpecRecorderJob", error: nil
      )
      expect(dispatch[:duration]).to be_a(Float)
      expect(dispatch[:lateness]).to be_a(Float) # seconds after the fire time (the tick ran "now", t0 is the past)
      expect(dispatch.payload).to be_frozen
      expect(dispatch.time).to be_a(Time)
      expect(tick.payload).to include(ok: true, due: 1, claimed: 1, won: 1, delayed: 0, node: Kaal.scheduler.node)
      expect(tick[:duration]).to be >= 0
      SpecRecorderJob.drain
    end

    it "delivers dispatch_failed with the error, delayed_dispatch, scheduler_start/stopping/stop" do
      stub_const("SpecBoomJob", Class.new { def self.perform = raise(ArgumentError, "kaboom") })
      Kaal.subscribe { |e| received << e }
      Kaal.register(key: "boom", cron: "* * * * *", job_class: "SpecBoomJob")
      Kaal.enqueue_at(at: Time.at(t0 - 5), job_class: "SpecRecorderJob", job_id: "d1", args: [1])
      Kaal.tick!(now: t0)
      Kaal.start!
      wait_until("a tick of the loop") { drain(received).tap { |e| (@seen ||= []).concat(e) }.any? { |e| e.name == "scheduler_start" } }
      Kaal.stop!
      (@seen ||= []).concat(drain(received))
      names = @seen.map(&:name)

      failed = @seen.find { |e| e.name == "dispatch_failed" }
      expect(failed.payload).to include(key: "boom", status: "failed", error: "ArgumentError: kaboom")
      expect(failed[:exception]).to be_a(ArgumentError)
      expect(@seen.find { |e| e.name == "dispatch" && e[:key] == "boom" }[:status]).to eq("failed")
      delayed = @seen.find { |e| e.name == "delayed_dispatch" }
      expect(delayed.payload).to include(kind: "delayed_dispatch", job_id: "d1", job_class: "SpecRecorderJob",
                                         status: "dispatched")
      start = @seen.find { |e| e.name == "scheduler_start" }
      expect(start.payload).to include(backend: "memory", namespace: Kaal.configuration.namespace, jobs: 1,
                                       tick_interval: 1, pid: Process.pid)
      expect(names).to include("scheduler_stopping", "scheduler_stop")
      expect(@seen.find { |e| e.name == "scheduler_stop" }.payload).to include(finished: true, was_running: true)
      SpecRecorderJob.drain
    end

    it "delivers catch_up with the missed fire times" do
      Kaal.configure { |c| c.enable_dispatch_recovery = true }
      Kaal.register(key: "h", cron: "0 * * * *", job_class: SpecRecorderJob)
      Kaal.backend.record("h", t0 - 3600, "dispatched", node: "n", now: t0 - 3600) # h ran before (11:00)
      Kaal.subscribe("catch_up") { |e| received << e }
      Kaal.tick!(now: t0 + 1800)
      event = drain(received).first
      expect(event.payload).to include(key: "h", policy: "latest", runs: 1, fire_times: [Time.at(t0).utc])
      expect(log_io.string).to include("INFO kaal: catching up h: 1 missed run (catch_up: latest)")
      SpecRecorderJob.drain
    end

    it "refuses unknown event names and stops delivering after unsubscribe" do
      expect { Kaal.subscribe("dispatched") { nil } }
        .to raise_error(ArgumentError, /unknown kaal event "dispatched" \(events: tick, dispatch, /)
      expect { Kaal.subscribe("tick") }.to raise_error(ArgumentError, /needs a block or a callable/)

      sub = Kaal.subscribe("tick") { |e| received << e }
      Kaal.tick!(now: t0)
      expect(Kaal.unsubscribe(sub)).to be(true)
      Kaal.tick!(now: t0 + 1)
      expect(drain(received).size).to eq(1)
      expect(Kaal.unsubscribe(sub)).to be(false)
    end

    it "builds no payload when nothing listens" do
      events = Kaal::Events.new
      expect(events.listening?(:tick)).to be(false)
      expect(events.emit(:tick) { raise "the payload was built" }).to be_nil
      events.subscribe(:tick) { nil }
      expect(events.emit(:tick) { { a: 1 } }.payload).to eq(a: 1)
    end

    it "logs a subscriber that raises and goes on with the tick and the other subscribers" do
      Kaal.subscribe("dispatch") { raise "subscriber boom" }
      Kaal.subscribe("dispatch") { |e| received << e }
      Kaal.register(key: "m", cron: "* * * * *", job_class: SpecRecorderJob)
      expect(Kaal.tick!(now: t0).map(&:status)).to eq(["dispatched"])
      expect(drain(received).size).to eq(1)
      expect(log_io.string).to match(/ERROR kaal: event subscriber .* raised on dispatch: RuntimeError: subscriber boom/)
      expect(log_io.string).to include("INFO kaal: m @ 2026-06-01T12:00:00Z dispatched in ")
      SpecRecorderJob.drain
    end
  end

  describe "error_handlers" do
    it "are called for failed jobs with the error and a context; one that raises is logged" do
      stub_const("SpecBoomJob", Class.new { def self.perform = raise(ArgumentError, "kaboom") })
      calls = Queue.new
      Kaal.configure do |c|
        c.error_handlers = [->(_e, _ctx) { raise "handler boom" }, ->(e, ctx) { calls << [e, ctx] }]
      end
      Kaal.register(key: "boom", cron: "* * * * *", job_class: "SpecBoomJob")
      expect(Kaal.tick!(now: t0).map(&:status)).to eq(["failed"])
      error, context = calls.pop
      expect(error).to be_a(ArgumentError)
      expect(context).to eq(key: "boom", fire_time: Time.at(t0).utc, idempotency_key: Kaal.idempotency_key("boom", t0),
                            job_class: "SpecBoomJob", node: Kaal.scheduler.node, event: "dispatch_failed")
      expect(log_io.string).to match(/ERROR kaal: error handler .* raised RuntimeError: handler boom/)
      # the default log line is still written
      expect(log_io.string).to match(/ERROR kaal: boom @ 2026-06-01T12:00:00Z failed in .* ArgumentError: kaboom/)
    end

    it "are called for backend errors with the operation" do
      calls = Queue.new
      Kaal.configure { |c| c.error_handlers = [->(e, ctx) { calls << [e, ctx] }] }
      flaky = SpecFlakyBackend.new(Kaal.backend)
      sched = Kaal::Scheduler.new(config: Kaal.configuration, registry: Kaal.registry, backend: flaky,
                                  logger: ->(*) {})
      Kaal.register(key: "m", cron: "* * * * *", job_class: SpecRecorderJob)
      flaky.down!
      expect(sched.tick(t0, wait: true)).to be_empty
      error, context = calls.pop
      expect(error).to be_a(Kaal::ConnectionError)
      expect(context).to eq(operation: "states", backend: "memory", node: sched.node, event: "backend_error")
      expect(log_io.string).to include("WARN kaal: backend memory unavailable, nothing dispatched (fail closed): " \
                                       "simulated outage (states)")
    end
  end

  describe "log_dispatches" do
    it "summary: one info line per tick that dispatched, each run's line at debug, a failed run's at error" do
      stub_const("SpecBoomJob", Class.new { def self.perform = raise(ArgumentError, "kaboom") })
      Kaal.configure { |c| c.log_dispatches = :summary }
      Kaal.logger.level = Logger::INFO
      Kaal.register(key: "m", cron: "* * * * *", job_class: SpecRecorderJob)
      Kaal.register(key: "boom", cron: "* * * * *", job_class: "SpecBoomJob")
      expect(Kaal.tick!(now: t0, wait: true).map(&:status).sort).to eq(%w[dispatched failed])
      Kaal.tick!(now: t0 + 1, wait: true) # nothing due: no line
      expect(log_io.string.lines.grep(/ INFO kaal: tick: /).size).to eq(1)
      expect(log_io.string).to match(/ INFO kaal: tick: 2 due, 2 won, 0 delayed in [\d.]+ ms$/)
      expect(log_io.string).to match(/ERROR kaal: boom @ 2026-06-01T12:00:00Z failed in .* ArgumentError: kaboom/)
      expect(log_io.string).not_to include("m @ 2026-06-01T12:00:00Z dispatched in")

      Kaal.logger.level = Logger::DEBUG
      Kaal.tick!(now: t0 + 60, wait: true)
      expect(log_io.string).to include("DEBUG kaal: m @ 2026-06-01T12:01:00Z dispatched in ")
      SpecRecorderJob.drain
    end

    it "comes from KAAL_LOG_DISPATCHES and refuses anything but each or summary" do
      expect(Kaal::Configuration.new.log_dispatches).to eq(:each)
      expect(Kaal::Configuration.new.apply_env("KAAL_LOG_DISPATCHES" => "summary").log_dispatches).to eq(:summary)
      expect { Kaal::Configuration.new.apply_env("KAAL_LOG_DISPATCHES" => "none") }
        .to raise_error(Kaal::ConfigurationError, /KAAL_LOG_DISPATCHES: log_dispatches: must be one of each, summary/)
    end

    it "builds no dispatch event when only a log line below the log level would use it" do
      events = Kaal.events
      Kaal.logger.level = Logger::WARN
      expect(events.listening?(:dispatch)).to be(true) # the log lines
      expect(events.wanted?(:dispatch)).to be(false)
      Kaal.logger.level = Logger::INFO
      expect(events.wanted?(:dispatch)).to be(true)
      Kaal.configure { |c| c.log_dispatches = :summary }
      expect(events.wanted?(:dispatch)).to be(false)
      sub = Kaal.subscribe(:dispatch) { |e| received << e }
      expect(events.wanted?(:dispatch)).to be(true)
      Kaal.register(key: "m", cron: "* * * * *", job_class: SpecRecorderJob)
      Kaal.tick!(now: t0, wait: true)
      expect(drain(received).map { |e| e[:key] }).to eq(["m"])
      Kaal.unsubscribe(sub)
      Kaal.tick!(now: t0 + 60, wait: true)
      expect(received).to be_empty
      SpecRecorderJob.drain
    end
  end

  describe "log_format: json" do
    it "writes one JSON object per line with the event's fields, passwords redacted" do
      Kaal.configure { |c| c.log_format = :json }
      Kaal.register(key: "m", cron: "* * * * *", job_class: SpecRecorderJob)
      Kaal.tick!(now: t0)
      Kaal.log_plain(:warn, "cannot reach redis://:s3cret@127.0.0.1:6379/0")
      lines = log_io.string.lines.map { |l| JSON.parse(l) }
      dispatch = lines.find { |l| l["event"] == "dispatch" }
      expect(dispatch).to include("level" => "INFO", "message" => a_string_starting_with("m @ 2026-06-01T12:00:00Z dispatched in"))
      expect(dispatch["timestamp"]).to match(/\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\z/)
      expect(dispatch["fields"]).to include("key" => "m", "fire_time" => "2026-06-01T12:00:00.000Z", "status" => "dispatched",
                                            "idempotency_key" => Kaal.idempotency_key("m", t0))
      expect(dispatch["fields"]).not_to have_key("exception")
      plain = lines.last
      expect(plain).to include("level" => "WARN", "event" => nil)
      expect(plain["message"]).to include("[REDACTED]")
      expect(log_io.string).not_to include("s3cret")
      SpecRecorderJob.drain
    end

    it "gives an application's Logger Strings: JSON text in json mode, the plain line otherwise" do
      io = StringIO.new
      Kaal.configure do |c|
        c.logger = Logger.new(io)
        c.log_format = :json
      end
      Kaal.log_plain(:info, "hello")
      expect(io.string).to match(/INFO -- : \{"timestamp":"[^"]+","level":"INFO","event":null,"message":"hello"\}$/)
      Kaal.configure { |c| c.log_format = :text }
      Kaal.log_plain(:info, "plain hello")
      expect(io.string).to match(/INFO -- : plain hello$/)
    end

    it "comes from KAAL_LOG_FORMAT and refuses anything but text or json" do
      config = Kaal::Configuration.new.apply_env("KAAL_LOG_FORMAT" => "json")
      expect(config.log_format).to eq(:json)
      expect { Kaal::Configuration.new.apply_env("KAAL_LOG_FORMAT" => "xml") }
        .to raise_error(Kaal::ConfigurationError, /KAAL_LOG_FORMAT: log_format: must be one of text, json/)
    end
  end

  describe "http_bind" do
    it "accepts HOST:PORT and [IPv6]:PORT, and names the option otherwise" do
      config = Kaal::Configuration.new
      config.http_bind = "127.0.0.1:9394"
      expect(config.http_bind).to eq("127.0.0.1:9394")
      config.http_bind = "[::1]:0"
      expect(config.http_bind).to eq("[::1]:0")
      expect(Kaal::Configuration.new.apply_env("KAAL_HTTP_BIND" => "0.0.0.0:9000").http_bind).to eq("0.0.0.0:9000")
      ["9394", "localhost:99999", "a b:1", 9394].each do |bad|
        expect { config.http_bind = bad }.to raise_error(Kaal::ConfigurationError, /http_bind: must be HOST:PORT/)
      end
    end
  end
end
