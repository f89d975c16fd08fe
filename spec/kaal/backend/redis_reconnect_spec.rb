# frozen_string_literal: true

require "redis"

# A Redis restart or a fork never needs a new backend object: while the server
# is gone the handle fails closed (Kaal::ConnectionError, nothing claimed), and
# it reconnects by itself on the next call.
RSpec.describe "Redis backend reconnect and fork" do
  private_redis_server
  private_redis_backend "kaal-reconnect", timeout: 1

  let(:fire) { Time.now.to_i }

  def claim(key, fire_time)
    backend.claim([[key, fire_time]], lease_ms: 60_000, node: "spec", now: Time.now)
  end

  it "raises ConnectionError while the server is down and works again after a restart" do
    expect(claim("job", fire)).to eq([true])

    server.kill
    expect { claim("job", fire + 1) }.to raise_error(Kaal::ConnectionError, /redis/)
    expect(backend.connected?).to be(false)
    # still down: every call tries again, fails fast and claims nothing
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    expect { claim("job", fire + 2) }
      .to raise_error(Kaal::ConnectionError, /127\.0\.0\.1:#{server.port}.*refused/i)
    expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0).to be < 1.0
    expect { backend.ping }.to raise_error(Kaal::ConnectionError)

    server.start # same port, empty data set (no persistence)
    expect(claim("job", fire + 3)).to eq([true])
    expect(claim("job", fire + 3)).to eq([false])
    expect(backend.dispatch_status("job", fire + 3)).to eq("claimed")
  end

  it "reconnects in a forked child and leaves the parent's connection in use" do
    skip "fork is not available" unless Process.respond_to?(:fork)

    expect(claim("job", fire)).to eq([true]) # the parent is connected
    raw = Redis.new(url: server.url)
    connections = -> { Integer(raw.info("stats").fetch("total_connections_received")) }
    before = connections.call

    in_child = in_fork do
      claim("job", fire + 1) == [true] && claim("job", fire) == [false] ? "ok" : "wrong result"
    end
    expect(in_child).to eq("ok")

    # The parent keeps its own connection (it does not reconnect) and sees the
    # child's claim.
    expect(claim("job", fire + 1)).to eq([false])
    expect(claim("job", fire + 2)).to eq([true])
    expect(connections.call - before).to eq(1) # the child's connection only
  ensure
    raw&.close
  end

  it "takes the handle over in a child forked while another thread is inside a call, without crashing" do
    skip "fork is not available" unless Process.respond_to?(:fork)

    # A Puma master running the embedded scheduler forks its workers while the
    # scheduler thread is inside backend calls: the child must not free the
    # parent's half-updated session (a crash in free()), and must work.
    busy = Thread.new do
      n = 0
      n += 1 while claim("busy-#{n}", fire) == [true] && !Thread.current[:stop]
      n
    end
    statuses = Array.new(150) do |i|
      pid = fork do
        ok = claim("child-#{i}", fire) == [true] && claim("child-#{i}", fire) == [false]
        exit(ok ? 0 : 3) # exit, not exit!: the handle is freed too
      end
      Process.wait2(pid).last
    end
    busy[:stop] = true

    expect(statuses.map { |st| st.signaled? ? "signal #{st.termsig}" : st.exitstatus }.tally).to eq(0 => 150)
    expect(busy.value).to be > 0
    expect(claim("after", fire)).to eq([true])
  end
end
