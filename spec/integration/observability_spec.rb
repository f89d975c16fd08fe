# frozen_string_literal: true

require "spec_helper"
require "json"
require "open3"
require "securerandom"
require "socket"

# Real `kaal start` processes: the --http listener (/health, /metrics checked
# by promtool), /health following a Redis server that stops and returns,
# ActiveSupport::Notifications and Kaal.subscribe in the process, raising
# subscribers and error handlers, NOTIFY_SOCKET and JSON log lines.
RSpec.describe "kaal start observability (real processes)" do
  process = Kaal::Spec::KaalProcess

  # Every second: appends to ticks.log.
  jobs_rb = <<~RUBY
    class TickleJob
      def self.perform(unix)
        File.open("ticks.log", "a") { |f| f.puts(unix) }
      end
    end
  RUBY
  tickle = [{ "key" => "tickle", "cron" => "* * * * * *", "job_class" => "TickleJob", "args" => ["{{fire_time.unix}}"] }]
  define_method(:jobs_rb) { jobs_rb }
  define_method(:tickle) { tickle }

  after { @nodes&.each(&:cleanup) }

  def node(**kw)
    (@nodes ||= []) << Kaal::Spec::KaalProcess.new(jobs_rb: jobs_rb, jobs: tickle, **kw)
    @nodes.last
  end

  def get(port, path, method: "GET")
    Kaal::Spec::KaalProcess.http(port, path, method: method)
  rescue SystemCallError, IOError, Net::ReadTimeout, Net::OpenTimeout
    nil
  end

  # The value of one sample line of the exposition text (nil when absent).
  def sample(text, series)
    line = text.lines.find { |l| l.start_with?("#{series} ") }
    line && Float(line.split(" ").last)
  end

  def promtool_check(text)
    unless system("command -v promtool >/dev/null 2>&1")
      raise "promtool is not installed (bin/setup installs the prometheus package)" if ENV["KAAL_REQUIRE_SERVICES"] == "1"

      skip "promtool is not installed (Debian package prometheus; bin/setup installs it)"
    end
    out, status = Open3.capture2e("promtool", "check", "metrics", stdin_data: text)
    [status.success?, out]
  end

  def wait_healthy(port, code = 200, timeout: 30)
    wait_until("GET /health to answer #{code}", timeout: timeout) do
      res = get(port, "/health")
      res if res && res[0] == code
    end
  end

  shared_examples "a scheduler with the --http listener" do
    it "serves /health and /metrics whose counters grow as the job fires, valid for promtool" do
      port = process.free_port
      kaal = node(**backend_settings).start("--http", "127.0.0.1:#{port}")
      _, body = wait_healthy(port)
      verdict = JSON.parse(body)
      expect(verdict).to include("healthy" => true, "status" => "ok", "reason" => nil)
      expect(verdict["last_tick_age"]).to be <= verdict["max_tick_age"]

      series = 'kaal_dispatches_total{job="tickle",status="dispatched"}'
      first = wait_until("a first dispatch in /metrics") do
        text = get(port, "/metrics")&.at(1)
        text if text && sample(text, series).to_f >= 1
      end
      ticks = sample(first, 'kaal_ticks_total{result="ok"}')
      later = wait_until("two more dispatches in /metrics", timeout: 20) do
        text = get(port, "/metrics")&.at(1)
        text if text && sample(text, series) >= sample(first, series) + 2
      end
      expect(sample(later, 'kaal_ticks_total{result="ok"}')).to be > ticks
      expect(sample(later, 'kaal_claims_total{result="won"}')).to be >= 3
      expect(sample(later, "kaal_jobs")).to eq(1)
      expect(sample(later, "kaal_delayed_pending")).to eq(0)
      expect(sample(later, "kaal_last_tick_timestamp_seconds")).to be_within(30).of(Time.now.to_f)
      expect(sample(later, "kaal_dispatch_lateness_seconds_count")).to be >= 3
      expect(later).to include("# TYPE kaal_tick_duration_seconds histogram", 'kaal_tick_duration_seconds_bucket{le="+Inf"}')
      ok, out = promtool_check(later)
      expect(ok).to be(true), "promtool check metrics failed:\n#{out}"

      expect(get(port, "/nope")[0]).to eq(404)
      expect(get(port, "/metrics", method: "DELETE")[0]).to eq(405)
      expect(kaal.log).to include("http: listening on http://127.0.0.1:#{port} (GET /health, GET /metrics)")
      expect(kaal.stop).to eq(0)
      expect(get(port, "/health")).to be_nil # the listener is gone with the process
    end
  end

  describe "on memory" do
    let(:backend_settings) { { backend: "memory" } }

    it_behaves_like "a scheduler with the --http listener"

    it "refuses a bad --http and a port already taken" do
      kaal = node
      _, err, code = kaal.command("start", "--http", "9394")
      expect([err, code]).to eq(["kaal: --http: must be HOST:PORT (127.0.0.1:9394, [::1]:9394), got \"9394\"\n", 2])
      taken = TCPServer.new("127.0.0.1", 0)
      _, err, code = kaal.command("start", "--require", "./jobs.rb", "--http", "127.0.0.1:#{taken.addr[1]}")
      expect(code).to eq(1)
      expect(err).to match(/kaal: http_bind 127\.0\.0\.1:#{taken.addr[1]}: cannot listen/)
    ensure
      taken&.close
    end

    it "turns 503 while the tick loop is stalled (an enqueue that blocks the tick thread), 200 after" do
      rb = jobs_rb + <<~RUBY
        class StuckJob # ActiveJob-like: enqueued on the tick thread; its second enqueue blocks it for 6 s
          @calls = 0
          def self.perform_later(*)
            @calls += 1
            sleep 6 if @calls == 2
          end
        end
      RUBY
      jobs = tickle + [{ "key" => "stuck", "cron" => "*/2 * * * * *", "job_class" => "StuckJob" }]
      kaal = Kaal::Spec::KaalProcess.new(jobs_rb: rb, jobs: jobs)
      (@nodes ||= []) << kaal
      port = process.free_port
      kaal.start("--http", "127.0.0.1:#{port}")
      wait_healthy(port, 200)
      _, body = wait_healthy(port, 503, timeout: 20)
      expect(JSON.parse(body)["reason"]).to match(/\Atick loop stalled: last successful tick \d+\.\ds ago \(allowed 3\.0s\)\z/)
      wait_healthy(port, 200, timeout: 20)
      expect(kaal.stop).to eq(0)
    end

    it "takes http_bind from config/kaal.yml and KAAL_HTTP_BIND" do
      port = process.free_port
      kaal = node(settings: { "http_bind" => "127.0.0.1:#{port}" }).start
      wait_healthy(port)
      kaal.stop
      port2 = process.free_port
      kaal.start(env: { "KAAL_HTTP_BIND" => "127.0.0.1:#{port2}" })
      wait_healthy(port2)
    end
  end

  describe "on Redis" do
    before do
      url = ENV["KAAL_TEST_REDIS_URL"]
      if url.nil? || url.empty? || !Kaal::Native.backends.include?("redis")
        raise "KAAL_TEST_REDIS_URL is not set (KAAL_REQUIRE_SERVICES=1)" if ENV["KAAL_REQUIRE_SERVICES"] == "1"

        skip "KAAL_TEST_REDIS_URL is not set (bin/services start; source tmp/services/env)"
      end
    end

    let(:backend_settings) { { backend: "redis", backend_config: { "url" => ENV["KAAL_TEST_REDIS_URL"] } } }

    it_behaves_like "a scheduler with the --http listener"
  end

  describe "/health and kaal status while the Redis server stops and returns" do
    private_redis_server

    it "turns 503 with the reason when Redis stops, and 200 again when it returns" do
      port = process.free_port
      kaal = node(backend: "redis", backend_config: { "url" => server.url }).start("--http", "127.0.0.1:#{port}")
      wait_healthy(port)
      out, _, code = kaal.command("status", "--json")
      expect(code).to eq(0)
      expect(JSON.parse(out)["health"]).to include("healthy" => true, "status" => "ok", "node" => a_string_matching(/:/))

      server.kill
      _, body = wait_healthy(port, 503)
      expect(JSON.parse(body)).to include("healthy" => false, "reason" => a_string_starting_with("backend unreachable: "))
      out, _, code = kaal.command("status", "--json")
      expect(code).to eq(1)
      expect(JSON.parse(out)["health"]).to include("healthy" => false, "reason" => a_string_starting_with("backend unreachable: "))
      metrics = get(port, "/metrics")[1]
      expect(sample(metrics, 'kaal_ticks_total{result="failed"}')).to be >= 1
      expect(metrics).to match(/^kaal_backend_errors_total\{operation="\w+"\} [1-9]/)

      server.start
      wait_healthy(port, 200, timeout: 90) # the loop retries with back-off (1 s, 2 s, 4 s, ...)
      expect(kaal.log).to include("is back after")
      expect(kaal.stop).to eq(0)
    end
  end

  describe "subscribers and error handlers inside kaal start" do
    it "gives ActiveSupport::Notifications and Kaal.subscribe the dispatch events; raising ones stop nothing" do
      rb = jobs_rb + <<~RUBY
        require "active_support"
        require "active_support/notifications"
        require "json"
        OUT = File.open("events.jsonl", "a")
        OUT.sync = true
        def record(via, name, payload)
          OUT.puts JSON.generate(via: via, name: name, payload: payload.reject { |k, _| k == :exception })
        end
        ActiveSupport::Notifications.subscribe("dispatch.kaal") do |name, _start, _finish, _id, payload|
          record("as", name, payload)
        end
        Kaal.subscribe("dispatch") { |event| record("kaal", event.name, event.payload) }
        Kaal.subscribe("tick") { raise "subscriber boom" }
        ActiveSupport::Notifications.subscribe("tick.kaal") { raise "as subscriber boom" }
        class BoomJob
          def self.perform = raise(ArgumentError, "job boom")
        end
        Kaal.on_start do
          Kaal.configuration.error_handlers = [
            ->(_error, _context) { raise "handler boom" },
            ->(error, context) { record("handler", error.class.name, context) }
          ]
        end
      RUBY
      jobs = tickle + [{ "key" => "boom", "cron" => "* * * * * *", "job_class" => "BoomJob" }]
      kaal = Kaal::Spec::KaalProcess.new(jobs_rb: rb, jobs: jobs)
      (@nodes ||= []) << kaal
      kaal.start
      records = lambda do
        File.exist?(kaal.path("events.jsonl")) ? File.readlines(kaal.path("events.jsonl")).map { |l| JSON.parse(l) } : []
      end
      wait_until("3 tickle runs after failures of boom", timeout: 20) do
        File.exist?(kaal.path("ticks.log")) && File.readlines(kaal.path("ticks.log")).size >= 3 &&
          records.call.count { |r| r["via"] == "handler" } >= 2
      end
      expect(kaal).to be_alive
      all = records.call
      %w[as kaal].each do |via|
        event = all.find { |r| r["via"] == via && r["payload"]["key"] == "tickle" && r["payload"]["status"] == "dispatched" }
        expect(event).not_to be_nil, "no dispatch event via #{via}"
        expect(event["name"]).to eq(via == "as" ? "dispatch.kaal" : "dispatch")
        expect(event["payload"].keys).to include("key", "fire_time", "idempotency_key", "node", "lateness", "duration",
                                                 "status", "job_class", "kind")
        expect(event["payload"]["idempotency_key"]).to match(/\A\h{64}\z/)
      end
      failed = all.find { |r| r["via"] == "kaal" && r["payload"]["key"] == "boom" }
      expect(failed["payload"]).to include("status" => "failed", "error" => "ArgumentError: job boom")
      handler = all.find { |r| r["via"] == "handler" }
      expect(handler).to include("name" => "ArgumentError")
      expect(handler["payload"]).to include("key" => "boom", "event" => "dispatch_failed")
      expect(handler["payload"].keys).to include("fire_time", "idempotency_key", "node")
      log = kaal.log
      expect(log).to match(/ERROR kaal: event subscriber .* raised on tick: RuntimeError: subscriber boom/)
      expect(log).to match(/ERROR kaal: ActiveSupport::Notifications.instrument\(tick\.kaal\) raised /)
      expect(log).to match(/ERROR kaal: error handler .* raised RuntimeError: handler boom/)
      expect(log).to match(/ERROR kaal: boom @ \S+ failed in .* ArgumentError: job boom/)
      expect(kaal.stop).to eq(0)
    end
  end

  describe "NOTIFY_SOCKET" do
    def notifications(socket, until_message, seen, timeout: 20)
      wait_until("#{until_message} on the notify socket", timeout: timeout) do
        loop do
          msg, = socket.recvmsg_nonblock(exception: false)
          break if msg == :wait_readable || msg.nil?

          seen << msg
        end
        seen.any? { |m| m.split("\n").include?(until_message) }
      end
    end

    [["a socket path", false], ["an abstract socket (@name)", true]].each do |what, abstract|
      it "receives READY=1 after the first tick, WATCHDOG=1 each tick and STOPPING=1 on TERM, on #{what}" do
        kaal = node
        name = abstract ? "@kaal-spec-#{SecureRandom.hex(6)}" : kaal.path("notify.sock")
        socket = Socket.new(:UNIX, :DGRAM)
        socket.bind(Socket.pack_sockaddr_un(abstract ? "\0#{name[1..]}" : name))
        kaal.start(env: { "NOTIFY_SOCKET" => name })
        seen = []
        notifications(socket, "READY=1", seen)
        expect(seen.first.split("\n")).to include("READY=1", "MAINPID=#{kaal.pid}")
        notifications(socket, "WATCHDOG=1", seen)
        count = seen.count("WATCHDOG=1")
        wait_until("two more WATCHDOG=1") do
          notifications(socket, "WATCHDOG=1", seen)
          seen.count("WATCHDOG=1") >= count + 2
        end
        pid = kaal.pid
        expect(kaal.stop).to eq(0)
        notifications(socket, "STOPPING=1", seen, timeout: 5)
        expect(seen.count { |m| m.include?("READY=1") }).to eq(1)
        expect(pid).to be_a(Integer)
      ensure
        socket&.close
      end
    end
  end

  describe "KAAL_LOG_FORMAT=json" do
    it "writes one JSON object per line, with the events' fields" do
      kaal = node.start(env: { "KAAL_LOG_FORMAT" => "json" })
      wait_until("two dispatch lines") { kaal.log.lines.count { |l| l.include?('"event":"dispatch"') } >= 2 }
      expect(kaal.stop).to eq(0)
      lines = kaal.log.lines.map { |l| JSON.parse(l) }
      expect(lines).to all(include("timestamp", "level", "event", "message"))
      start = lines.find { |l| l["event"] == "scheduler_start" }
      expect(start["message"]).to start_with("scheduler started: node ")
      expect(start["fields"]).to include("backend" => "memory", "namespace" => kaal.namespace, "jobs" => 1)
      dispatch = lines.find { |l| l["event"] == "dispatch" }
      expect(dispatch).to include("level" => "INFO")
      expect(dispatch["fields"]).to include("key" => "tickle", "status" => "dispatched", "job_class" => "TickleJob")
      expect(dispatch["fields"]["fire_time"]).to match(/\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z\z/)
      expect(lines.map { |l| l["event"] }).to include("scheduler_stop", nil) # nil: lines of no event ("received TERM")
    end
  end
end
