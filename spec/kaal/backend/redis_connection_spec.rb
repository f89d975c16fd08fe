# frozen_string_literal: true

require "redis"
require "securerandom"

# Redis-specific behaviour on a private redis-server (password, ACL user,
# databases, Unix socket, timeouts, error replies, what the keys look like).
RSpec.describe "Redis backend connection and storage" do
  secret = "pw-#{SecureRandom.hex(8)}"
  private_redis_server("--requirepass", secret, "--databases", "4") do |server|
    server.command(["AUTH", secret], ["ACL", "SETUSER", "kaal-user", "on", ">user-secret", "~*", "+@all"])
  end

  let(:password) { secret }
  let(:ns) { "kaal-conn-#{SecureRandom.hex(4)}" }
  let(:tag) { "{#{ns}}" } # the hash-tagged key prefix of layout 2 (docs/redis.md)
  let(:now) { 1_767_225_600 }
  let(:handles) { [] }
  let(:raw) { Redis.new(host: "127.0.0.1", port: server.port, password: password) }

  after do
    handles.each(&:close)
    raw.close
  end

  def build(namespace: ns, log_retention: nil, **config)
    Kaal::Backend.build(:redis, namespace: namespace, config: config, log_retention: log_retention)
                 .tap { |b| handles << b }
  end

  def url(userinfo = ":#{password}", db = 0)
    "redis://#{userinfo}@127.0.0.1:#{server.port}/#{db}"
  end

  describe "authentication" do
    it "connects with the password from the URL" do
      expect(build(url: url).claim([["job", now]], lease_ms: 1000, node: "n", now: now)).to eq([true])
    end

    it "connects as a Redis 6 ACL user" do
      b = build(url: url("kaal-user:user-secret"))
      expect(b.ping).to be(true)
      expect(raw.call("CLIENT", "LIST")).to include("user=kaal-user")
    end

    it "raises ConnectionError for a wrong password, naming the host but never the password" do
      b = build(url: url(":wrong-#{password}"))
      expect { b.ping }.to raise_error(Kaal::ConnectionError) { |e|
        expect(e.message).to include("127.0.0.1:#{server.port}")
        expect(e.message).to match(/WRONGPASS|invalid/i)
        expect(e.message).not_to include(password)
      }
    end

    it "raises ConnectionError without a password (NOAUTH)" do
      b = build(url: "redis://127.0.0.1:#{server.port}/0")
      expect { b.claim([["job", now]], lease_ms: 1000, node: "n", now: now) }
        .to raise_error(Kaal::ConnectionError, /127\.0\.0\.1:#{server.port}: NOAUTH/)
      expect(b.connected?).to be(false)
    end

    it "takes the settings of a redis-rb object" do
      b = build(redis: Redis.new(host: "127.0.0.1", port: server.port, password: password, db: 2))
      b.set_enabled("job", false)
      raw.select(2)
      expect(raw.hgetall("#{tag}:states")).to eq("job" => "0")
    end
  end

  describe "databases and sockets" do
    it "selects the database from the URL" do
      build(url: url(":#{password}", 3)).set_enabled("job", true)
      raw.select(3)
      expect(raw.hget("#{tag}:states", "job")).to eq("1")
      raw.select(0)
      expect(raw.exists?("#{tag}:states")).to be(false)
    end

    it "raises ConfigurationError for a database the server does not have" do
      b = build(url: url(":#{password}", 9))
      expect { b.ping }.to raise_error(Kaal::ConfigurationError, /SELECT 9.*out of range/)
    end

    it "claims over a Unix socket given as redis+unix:// or by a redis-rb object's path:" do
      a = build(url: "redis+unix://#{server.socket_path}?password=#{password}")
      expect(a.claim([["job", now]], lease_ms: 60_000, node: "n", now: now)).to eq([true])
      b = build(redis: Redis.new(path: server.socket_path, password: password))
      expect(b.claim([["job", now]], lease_ms: 60_000, node: "n", now: now)).to eq([false])
      expect(raw.call("CLIENT", "LIST").scan(/ addr=\/\S*/).size).to be >= 2 # both on the socket
    end

    it "connects over a Unix socket" do
      b = build(url: "unix://#{server.socket_path}?db=1&password=#{password}")
      b.set_enabled("job", false)
      raw.select(1)
      expect(raw.hget("#{tag}:states", "job")).to eq("0")
    end

    it "raises ConnectionError naming the address when rediss:// meets a plain-text port" do
      b = build(url: "rediss://:#{password}@127.0.0.1:#{server.port}/0", connect_timeout: 0.5)
      expect { b.ping }.to raise_error(Kaal::ConnectionError, /TLS with 127\.0\.0\.1:#{server.port} failed: .*TLS port/) { |e|
        expect(e.message).not_to include(password)
      }
      expect(b.connected?).to be(false)
    end
  end

  describe "timeouts and errors" do
    it "drops the connection after a command timeout and works again on the next call" do
      b = build(url: url, timeout: 0.3)
      b.connect
      server.command(["AUTH", password], ["CLIENT", "PAUSE", "1000"])
      t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      expect { b.claim([["job", now]], lease_ms: 1000, node: "n", now: now) }
        .to raise_error(Kaal::ConnectionError, /timed out/)
      expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0).to be_between(0.25, 2.0) # the 0.3 s timeout fired, not a hang
      expect(b.connected?).to be(false)
      # The pause ends: a PING on a fresh connection is answered only then.
      expect(server.command(["AUTH", password], ["PING"])).to start_with("+PONG")
      # The timed-out claim may or may not have run on the server; either way
      # the reconnected handle is in step and the pair is won at most once.
      first = b.claim([["job", now]], lease_ms: 1000, node: "n", now: now)
      expect(b.claim([["job", now], ["other", now]], lease_ms: 1000, node: "n", now: now)).to eq([false, true])
      expect(first.size).to eq(1)
    end

    it "raises BackendError with the server's message for an error reply, and keeps working" do
      b = build(url: url)
      raw.set("#{tag}:states", "not a hash")
      expect { b.set_enabled("job", true) }.to raise_error(Kaal::BackendError, /WRONGTYPE/) { |e|
        expect(e).not_to be_a(Kaal::ConnectionError)
      }
      expect(b.connected?).to be(true)
      expect(b.claim([["job", now]], lease_ms: 1000, node: "n", now: now)).to eq([true])
    end

    it "keeps working after SCRIPT FLUSH (NOSCRIPT falls back to EVAL)" do
      b = build(url: url)
      expect(b.claim([["job", now]], lease_ms: 1000, node: "n", now: now)).to eq([true])
      raw.script(:flush)
      expect(b.claim([["job", now], ["job", now + 1]], lease_ms: 1000, node: "n", now: now)).to eq([false, true])
      expect(b.dispatches(key: "job").map { |r| r[:fire_time] }).to eq([now + 1, now])
    end
  end

  describe "storage" do
    it "keeps every key under the hash-tagged namespace, the claim and its log entry one key with the retention" do
      b = build(url: url)
      b.claim([["a:b", now]], lease_ms: 30_000, node: "n", now: now)
      b.record("a:b", now, "dispatched", node: "n", now: now + 1)
      b.set_enabled("a:b", true)
      b.delayed_add(job_id: "j", run_at_ms: 5, job_class: "Job", args_json: "[]")
      b.heartbeat("n", '{"pid":1}', now: now, ttl: 60)
      keys = raw.keys("*").select { |k| k.include?(ns) }
      fences = %W[#{ns}:log-index #{ns}:delayed #{ns}:delayed-due #{ns}:states #{ns}:nodes #{ns}:node-info]
      expect(keys - fences).to all(start_with("#{tag}:"))
      expect(keys).to contain_exactly(
        "#{tag}:log:#{now}:a:b", "#{tag}:log-new", "#{tag}:log-index", "#{tag}:log-by-key", "#{tag}:layout",
        "#{tag}:states", "#{tag}:delayed", "#{tag}:delayed-due", "#{tag}:nodes", "#{tag}:node-info", *fences
      )
      # A new namespace fences the previous release's fixed keys (docs/redis.md).
      fences.each { |k| expect(raw.type(k)).to eq("string") }
      expect(raw.get("#{tag}:layout")).to eq("2")
      expect(raw.ttl("#{tag}:log:#{now}:a:b")).to be_between(604_000, 604_800)
      expect(raw.ttl("#{tag}:log-index")).to eq(-1)
    end

    it "keeps a log entry dispatch_log_retention after its last write (log_retention), at least the lease" do
      b = build(url: url, log_retention: 30 * 86_400)
      b.claim([["long", now]], lease_ms: 30_000, node: "n", now: now)
      expect(raw.ttl("#{tag}:log:#{now}:long")).to be_between(30 * 86_400 - 5, 30 * 86_400)
      short = build(url: url, log_retention: 3600)
      short.record("long", now, "dispatched", node: "n", now: now + 1)
      expect(raw.ttl("#{tag}:log:#{now}:long")).to be_between(3595, 3600)
      short.claim([["lease", now]], lease_ms: 7_200_000, node: "n", now: now)
      expect(raw.ttl("#{tag}:log:#{now}:lease")).to be_between(7195, 7200)
      expect { build(url: url, log_retention: 0) }.to raise_error(Kaal::ConfigurationError, /log_retention/)
    end

    it "takes dispatch_log_retention from the configuration, also beyond 7 days" do
      Kaal.configure do |c|
        c.backend = "redis"
        c.backend_config = { url: url }
        c.namespace = ns
        c.recovery_window = 10 * 86_400
        c.dispatch_log_retention = 14 * 86_400
      end
      Kaal.backend.claim([["cfg", now]], lease_ms: 1000, node: "n", now: now)
      expect(raw.ttl("#{tag}:log:#{now}:cfg")).to be_between(14 * 86_400 - 5, 14 * 86_400)
    ensure
      Kaal.reset!
    end

    it "cleans up the log entry and both indexes" do
      b = build(url: url)
      b.claim([["a", now], ["a", now + 10], ["b", now]], lease_ms: 1000, node: "n", now: now)
      expect(b.cleanup(before: now + 5, limit: 10)).to eq(2)
      expect(raw.zrange("#{tag}:log-index", 0, -1)).to eq(["#{now + 10}:a"])
      expect(raw.zrange("#{tag}:log-by-key", 0, -1)).to eq(["a\0#{format("%020d", now + 10 + 2**63)}"])
      expect(raw.exists?("#{tag}:log:#{now}:a")).to be(false)
    end

    it "skips log entries that expired while their index entry remains" do
      b = build(url: url)
      b.claim([["a", now], ["a", now + 1]], lease_ms: 1000, node: "n", now: now)
      raw.del("#{tag}:log:#{now + 1}:a")
      expect(b.dispatches.map { |r| r[:fire_time] }).to eq([now])
      expect(b.dispatches(key: "a", limit: 1).map { |r| r[:fire_time] }).to eq([now])
    end

    it "finds old rows behind many newer ones when filtering" do
      b = build(url: url)
      b.claim([["old", now]], lease_ms: 1000, node: "n", now: now)
      b.record("old", now, "failed", node: "n", error: "x", now: now)
      b.claim(Array.new(1200) { |i| ["new-#{i % 7}", now + 1 + i] }, lease_ms: 1000, node: "n", now: now)
      expect(b.dispatches(status: "failed").map { |r| r[:key] }).to eq(["old"])
      expect(b.dispatches(limit: 1000).size).to eq(1000)
      expect(b.dispatch_status("old", now)).to eq("failed")
    end
  end
end
