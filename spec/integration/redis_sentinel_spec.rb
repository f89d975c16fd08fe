# frozen_string_literal: true

require "redis"
require "securerandom"
require "socket"

# Redis Sentinel: one master, one replica, three sentinels on 127.0.0.1
# (spec/support/redis_sentinel.rb). kaal asks the sentinels for the master,
# and follows a failover to the new one.
RSpec.describe "Redis backend with Sentinel", :integration do
  include Kaal::Spec::MultiProcess::Examples

  before(:all) do
    reason =
      if !Kaal::Native.backends.include?("redis") then "the redis backend is not compiled into this build"
      elsif !Kaal::Spec::RedisServer.available? then "redis-server is not installed"
      end
    if reason
      raise "#{reason} (KAAL_REQUIRE_SERVICES=1)" if ENV["KAAL_REQUIRE_SERVICES"] == "1"

      skip reason
    end
    @setup = Kaal::Spec::RedisSentinelSetup.start
  end

  after(:all) { @setup&.stop }

  let(:setup) { @setup }
  let(:now) { 1_767_225_600 }
  let(:handles) { [] }

  after { handles.each(&:close) }

  def build(**config)
    Kaal::Backend.build(:redis, namespace: "kaal-sentinel-#{SecureRandom.hex(4)}", config: config)
                 .tap { |b| handles << b }
  end

  def sentinel_config = setup.backend_config.transform_keys(&:to_sym)

  it "asks the sentinels for the master, skipping one that is down" do
    dead = TCPServer.new("127.0.0.1", 0).then { |s| s.addr[1].tap { s.close } }
    b = build(**sentinel_config, sentinels: ["127.0.0.1:#{dead}", *sentinel_config[:sentinels]])
    expect(b.claim([["job", now]], lease_ms: 60_000, node: "n", now: now)).to eq([true])
    master = Redis.new(host: "127.0.0.1", port: setup.master_port)
    expect(master.exists?("{#{b.namespace}}:log:#{now}:job")).to be(true)
    master.close
    expect(b.location).to include(sentinel_master: "kaal-master", sentinels: start_with("127.0.0.1:#{dead},"))
  end

  it "raises ConnectionError naming the master when no sentinel knows it" do
    b = build(**sentinel_config, name: "no-such-master")
    expect { b.ping }.to raise_error(Kaal::ConnectionError, /does not know master "no-such-master"/)
  end

  it "takes the sentinels and the master's name from a redis-rb object passed as redis:" do
    redis = Redis.new(name: Kaal::Spec::RedisSentinelSetup::NAME,
                      sentinels: setup.sentinels.map { |s| { host: "127.0.0.1", port: s.port } })
    b = build(redis: redis)
    expect(b.claim([["job", now]], lease_ms: 60_000, node: "n", now: now)).to eq([true])
    expect(redis.exists?("{#{b.namespace}}:log:#{now}:job")).to be(true) # redis-rb finds the same master
    redis.close
  end

  it "wait_replicas: a claim counts once the replicas have it; with too few it fails and is not won" do
    ok = build(**sentinel_config, wait_replicas: 1)
    expect(ok.claim([["job", now]], lease_ms: 60_000, node: "n", now: now)).to eq([true])
    b = build(**sentinel_config, wait_replicas: 2, wait_timeout: 0.2) # there is one replica
    expect { b.claim([["job", now + 1]], lease_ms: 60_000, node: "n", now: now) }
      .to raise_error(Kaal::ConnectionError, /claim: written, but 1 of the 2 replicas wait_replicas asks for had it within 200 ms/)
    expect(b.connected?).to be(false) # the next call asks the sentinels again
  end

  # Two `kaal start` nodes, three jobs firing every second; SENTINEL
  # FAILOVER in the middle. With wait_replicas: 1 a claim counts only once
  # the replica has it, so the failover cannot hand a pair to a second node.
  it "follows SENTINEL FAILOVER while nodes run: they keep firing on the new master, no pair twice" do
    config = setup.backend_config.merge("wait_replicas" => 1, "connect_timeout" => 1, "command_timeout" => 2)
    ports = nil
    result = Kaal::Spec::MultiProcess.run(
      backend: "redis", backend_config: config, nodes: 2, jobs: 3, duration: 34, kill_every: nil,
      events: [[8, "failover done", -> { ports = setup.failover! }]],
      settings: { "max_backoff" => 2 } # retry often while the failover runs (the default grows to 60 s)
    )
    done_at = result.events.to_h.fetch("failover done")
    puts "\n  sentinel failover #{ports.inspect}: #{result.summary}"

    old_port, new_port = ports
    expect(new_port).not_to eq(old_port)
    expect(result.crashes).to be_empty, -> { explain(result) }
    expect(result.duplicates).to be_empty, -> { explain(result) }
    after_failover = result.records.select { |_, fire, *| fire > done_at.to_i + 2 }
    expect(after_failover.map(&:first).uniq.size).to eq(3), -> { explain(result) } # every job fires again
    expect(after_failover.size).to be >= 3 * 5, -> { explain(result) }
    # ... claimed on the new master: its log entries ({ns}:log:<fire>:<key>) hold those fire times.
    master = Redis.new(host: "127.0.0.1", port: new_port)
    newest = master.keys("{kaal-mp-*}:log:*").map { |k| Integer(k.split(":")[2]) }
    expect(newest.max).to be > done_at.to_i + 2
    master.close
  end
end
