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
    skip_unavailable(Kaal::Spec::RedisServer.unavailable_reason)
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

  # The dispatch log of namespace ns on the server at port of sentinel setup
  # s, read through kaal (whatever the key layout): [[key, fire_time], ...].
  def log_on(s, port, ns)
    tls = s.backend_config.slice("ssl", "ssl_params").transform_keys(&:to_sym)
    url = "#{tls.empty? ? "redis" : "rediss"}://127.0.0.1:#{port}/0"
    handle = Kaal::Backend.build(:redis, namespace: ns, config: { url: url, **tls })
    handle.dispatches(limit: 100).map { |r| [r[:key], r[:fire_time]] }
  ensure
    handle&.close
  end

  it "asks the sentinels for the master, skipping one that is down" do
    dead = TCPServer.new("127.0.0.1", 0).then { |s| s.addr[1].tap { s.close } }
    b = build(**sentinel_config, sentinels: ["127.0.0.1:#{dead}", *sentinel_config[:sentinels]])
    expect(b.claim([["job", now]], lease_ms: 60_000, node: "n", now: now)).to eq([true])
    expect(log_on(setup, setup.master_port, b.namespace)).to eq([["job", now]])
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
    expect(log_on(setup, redis.call("CLIENT", "INFO")[/laddr=\S+:(\d+)/, 1].to_i, b.namespace))
      .to eq([["job", now]]) # on the master redis-rb finds
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
    # ... claimed on the new master: its dispatch log holds those fire times.
    master = setup.redis(new_port)
    namespaces = master.keys("*kaal-mp-*").map { |k| k[/kaal-mp-\h+/] }.uniq
    master.close
    expect(namespaces.size).to eq(1)
    expect(log_on(setup, new_port, namespaces.first).map(&:last).max).to be > done_at.to_i + 2
  end

  # Sentinels, master and replica that speak only TLS: the sentinels are
  # asked over TLS, with the master's settings.
  describe "over TLS" do
    before(:all) do
      skip "this build has no TLS (libssl-dev missing)" unless Kaal::Native::REDIS_TLS
      @files = Kaal::Spec::TlsFiles.new
      @tls_setup = Kaal::Spec::RedisSentinelSetup.start(tls: @files)
    end

    after(:all) do
      @tls_setup&.stop
      @files&.cleanup
    end

    it "asks the sentinels over TLS and claims on the master over TLS; a wrong CA is a ConnectionError" do
      config = @tls_setup.backend_config.transform_keys(&:to_sym)
      b = build(**config)
      expect(b.claim([["job", now]], lease_ms: 60_000, node: "n", now: now)).to eq([true])
      expect(log_on(@tls_setup, @tls_setup.master_port, b.namespace)).to eq([["job", now]])
      wrong = build(**config, ssl_params: { ca_file: @files.other_ca })
      expect { wrong.ping }.to raise_error(Kaal::ConnectionError, /no master "kaal-master".*certificate verify failed/)
    end
  end
end
