# frozen_string_literal: true

# While a call waits on a slow Redis, other Ruby threads keep running: the
# backend waits without the GVL.
RSpec.describe "Redis backend and the GVL" do
  private_redis_server
  private_redis_backend "kaal-gvl", timeout: 5

  let(:now) { Time.now.to_i }

  it "lets another thread run while a claim waits on a paused server" do
    backend.connect
    expect(server.command("CLIENT", "PAUSE", "800")).to start_with("+OK")
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    won = expect_progress_while(min_ticks: 20) do
      backend.claim([["job", now]], lease_ms: 60_000, node: "spec", now: now)
    end
    expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0).to be >= 0.5 # it really waited
    expect(won).to eq([true])
  end

  it "lets another thread run while a delayed claim waits on a busy script" do
    backend.delayed_add(job_id: "j1", run_at_ms: 1, job_class: "Job", args_json: "[]")
    # A Lua busy loop on another connection blocks the server for ~1 s.
    busy = Thread.new do
      server.command("EVAL", "local t = redis.call('TIME'); local s = t[1] + t[2] / 1e6; " \
                              "repeat t = redis.call('TIME') until t[1] + t[2] / 1e6 > s + 1.0; return 1", "0")
    end
    wait_until("the busy script to block the server") { !answers_ping_within?(0.1) }
    jobs = expect_progress_while(min_ticks: 10) { backend.delayed_claim(now_ms: 10_000, limit: 10) }
    busy.join
    expect(jobs.map { |j| j[:job_id] }).to eq(["j1"])
  end

  # true when the server answers a PING on a fresh connection within +seconds+.
  def answers_ping_within?(seconds)
    TCPSocket.open("127.0.0.1", server.port) do |s|
      s.write("*1\r\n$4\r\nPING\r\n")
      !IO.select([s], nil, nil, seconds).nil?
    end
  end
end
