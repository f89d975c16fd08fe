# frozen_string_literal: true

require "spec_helper"
require "socket"
require "json"
require "stringio"

RSpec.describe Kaal::HttpServer do
  let(:health) do
    Struct.new(:verdict) { def check = verdict }.new({ healthy: true, status: "ok", reason: nil })
  end
  let(:metrics) { Struct.new(:text) { def render = text }.new("# HELP x y\n# TYPE x counter\nx 1\n") }
  let(:server) { described_class.new(bind: "127.0.0.1:0", health: health, metrics: metrics, read_timeout: 0.5).start }

  after { server.stop }

  # Sends raw bytes, returns the whole response (the server closes).
  def raw(request, close_write: true)
    TCPSocket.open("127.0.0.1", server.port) do |s|
      s.write(request)
      s.close_write if close_write
      s.read
    end
  end

  def status_of(response)
    response[%r{\AHTTP/1\.1 (\d{3})}, 1].to_i
  end

  it "serves /health as JSON, 200 when healthy and 503 with the reason otherwise" do
    res = raw("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    expect(status_of(res)).to eq(200)
    expect(res).to include("Content-Type: application/json\r\n", "Connection: close\r\n")
    expect(JSON.parse(res.split("\r\n\r\n", 2).last)).to include("healthy" => true)

    health.verdict = { healthy: false, status: "unhealthy", reason: "stopping" }
    res = raw("GET /health?verbose=1 HTTP/1.0\r\n\r\n")
    expect(status_of(res)).to eq(503)
    expect(JSON.parse(res.split("\r\n\r\n", 2).last)).to include("reason" => "stopping")
  end

  it "serves /metrics in the Prometheus text format, HEAD without a body" do
    res = raw("GET /metrics HTTP/1.1\r\n\r\n")
    expect(status_of(res)).to eq(200)
    expect(res).to include("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n", "Content-Length: 32\r\n")
    expect(res).to end_with("\r\n\r\n# HELP x y\n# TYPE x counter\nx 1\n")
    head = raw("HEAD /metrics HTTP/1.1\r\n\r\n")
    expect(head).to include("Content-Length: 32\r\n")
    expect(head).to end_with("\r\n\r\n")
  end

  it "answers 404 for other paths, 405 for other methods, 400 for garbage, 431 for a huge head" do
    expect(status_of(raw("GET / HTTP/1.1\r\n\r\n"))).to eq(404)
    res = raw("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    expect(status_of(res)).to eq(405)
    expect(res).to include("Allow: GET, HEAD\r\n")
    expect(status_of(raw("hello\r\n\r\n"))).to eq(400)
    expect(status_of(raw("GET /metrics HTTP/1.1\r\nX: #{"a" * 10_000}\r\n\r\n"))).to eq(431)
  end

  it "gives up on a client that does not send its request within read_timeout, and serves others meanwhile" do
    slow = TCPSocket.open("127.0.0.1", server.port)
    slow.write("GET /hea")
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    expect(status_of(raw("GET /health HTTP/1.1\r\n\r\n"))).to eq(200) # not queued behind the slow one
    expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).to be < 0.5
    expect(status_of(slow.read)).to eq(408)
  ensure
    slow&.close
  end

  it "answers 500 and logs when rendering fails, and goes on serving" do
    def metrics.render = raise("render boom")
    log = StringIO.new
    Kaal.reset!
    Kaal.configure { |c| c.logger = Kaal::Log.build(log) }
    expect(status_of(raw("GET /metrics HTTP/1.1\r\n\r\n"))).to eq(500)
    expect(log.string).to include("ERROR kaal: http: GET /metrics failed: RuntimeError: render boom")
    expect(status_of(raw("GET /health HTTP/1.1\r\n\r\n"))).to eq(200)
  ensure
    Kaal.reset!
  end

  it "names the address it cannot bind" do
    taken = TCPServer.new("127.0.0.1", 0)
    port = taken.addr[1]
    expect { described_class.new(bind: "127.0.0.1:#{port}", health: health, metrics: metrics).start }
      .to raise_error(Kaal::Error, /http_bind 127\.0\.0\.1:#{port}: cannot listen \(.*in use/i)
  ensure
    taken&.close
  end
end

RSpec.describe Kaal::Health do
  it "is healthy while the last successful tick is within 3 tick intervals plus the back-off" do
    expect(described_class.evaluate(tick_interval: 5, last_tick_age: 14.9)).to include(healthy: true, status: "ok",
                                                                                        reason: nil, max_tick_age: 15.0)
    expect(described_class.evaluate(tick_interval: 5, last_tick_age: 15.1)[:reason])
      .to eq("tick loop stalled: last successful tick 15.1s ago (allowed 15.0s)")
    expect(described_class.evaluate(tick_interval: 5, last_tick_age: 20, backoff: 8)).to include(healthy: true)
  end

  it "says why it is unhealthy: stopping, loop not running, backend down, no tick yet" do
    verdict = ->(**kw) { described_class.evaluate(tick_interval: 1, last_tick_age: 0.5, **kw)[:reason] }
    expect(verdict.call(stopping: true)).to eq("stopping")
    expect(verdict.call(alive: false)).to eq("the tick loop is not running")
    expect(verdict.call(backend_error: "connection refused")).to eq("backend unreachable: connection refused")
    expect(described_class.evaluate(tick_interval: 1, last_tick_age: nil)[:reason]).to eq("no successful tick yet")
  end

  it "follows the event stream" do
    events = Kaal::Events.new
    alive = true
    health = described_class.new(events: events, tick_interval: 1, alive: -> { alive }).install
    expect(health.check[:reason]).to eq("no successful tick yet")
    events.emit(:scheduler_start) { { node: "n1", tick_interval: 1 } }
    events.emit(:tick) { { ok: true } }
    expect(health.check).to include(healthy: true, node: "n1", failures: 0)
    events.emit(:backend_error) { { fail_closed: true, error: "down", failures: 1, retry_in: 1.0 } }
    expect(health.check).to include(healthy: false, reason: "backend unreachable: down", failures: 1)
    events.emit(:tick) { { ok: true } }
    expect(health.check[:healthy]).to be(true)
    events.emit(:scheduler_stopping) { {} }
    expect(health.check[:reason]).to eq("stopping")
  end
end

RSpec.describe Kaal::Metrics do
  it "escapes label values and counts from events" do
    events = Kaal::Events.new
    metrics = described_class.new(events: events, jobs: -> { 2 }, delayed_pending: -> { raise "down" }).install
    events.emit(:tick) { { ok: true, duration: 0.002, due: 3, claimed: 3, won: 2 } }
    events.emit(:tick) { { ok: false, duration: 0.1 } }
    events.emit(:dispatch) { { key: "a\"b\\c\nd", status: "failed", lateness: 0.3 } }
    events.emit(:backend_error) { { operation: "claim" } }
    text = metrics.render
    expect(text).to include('kaal_ticks_total{result="ok"} 1', 'kaal_ticks_total{result="failed"} 1',
                            'kaal_claims_total{result="won"} 2', 'kaal_claims_total{result="lost"} 1',
                            'kaal_dispatches_total{job="a\\"b\\\\c\\nd",status="failed"} 1',
                            'kaal_dispatch_lateness_seconds_bucket{le="0.25"} 0',
                            'kaal_dispatch_lateness_seconds_bucket{le="0.5"} 1',
                            'kaal_backend_errors_total{operation="claim"} 1', "kaal_jobs 2",
                            "kaal_tick_duration_seconds_count 2")
    expect(text).not_to include("kaal_delayed_pending") # the read failed: no sample this scrape
  end

  it "keeps histogram buckets cumulative and dispatch series sorted by job, then status" do
    events = Kaal::Events.new
    metrics = described_class.new(events: events, jobs: nil).install
    [[0.005, "b", "dispatched"], [0.3, "a", "failed"], [0.3, "a", "dispatched"], [500, "b", "dispatched"]]
      .each { |late, key, status| events.emit(:dispatch) { { key: key, status: status, lateness: late } } }
    lines = metrics.render.lines.map(&:chomp)
    expect(lines.grep(/kaal_dispatch_lateness_seconds_bucket/)).to eq(
      [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300].each_with_index.map do |b, i|
        %(kaal_dispatch_lateness_seconds_bucket{le="#{Kaal::Metrics.number(b)}"} #{[1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3][i]})
      end + ['kaal_dispatch_lateness_seconds_bucket{le="+Inf"} 4']
    )
    expect(lines.grep(/\Akaal_dispatches_total\{/)).to eq(['kaal_dispatches_total{job="a",status="dispatched"} 1',
                                                           'kaal_dispatches_total{job="a",status="failed"} 1',
                                                           'kaal_dispatches_total{job="b",status="dispatched"} 2'])
  end

  it "reads kaal_delayed_pending on scrape and caches it for cache_ttl" do
    reads = 0
    metrics = described_class.new(events: Kaal::Events.new, delayed_pending: -> { reads += 1 }, cache_ttl: 60)
    expect(metrics.render).to include("kaal_delayed_pending 1")
    expect(metrics.render).to include("kaal_delayed_pending 1")
    expect(reads).to eq(1)
  end
end
