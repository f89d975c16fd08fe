# frozen_string_literal: true

require "redis"
require "securerandom"
require "stringio"
require "open3"
require "json"
require "rbconfig"
require "fileutils"
require "tmpdir"

# The Redis key layout (docs/redis.md, "Key layout and upgrades"): layout 2
# under the hash-tagged prefix {<ns>}:, the transition from the previous
# release's layout (1+2) and `kaal migrate`, Redis Cluster, and delayed
# claims that meet a payload they cannot decode.
RSpec.describe "Redis key layout" do
  private_redis_server

  let(:ns) { "kaal-layout-#{SecureRandom.hex(4)}" }
  let(:tag) { "{#{ns}}" }
  let(:now) { 1_767_225_600 }
  let(:handles) { [] }
  let(:raw) { Redis.new(url: server.url) }
  let(:fences) { %W[#{ns}:log-index #{ns}:delayed #{ns}:delayed-due #{ns}:states #{ns}:nodes #{ns}:node-info] }

  after do
    handles.each(&:close)
    raw.close
  end

  def build(namespace: ns)
    Kaal::Backend.build(:redis, namespace: namespace, config: { url: server.url }).tap { |b| handles << b }
  end

  # A dispatch-log row as both layouts encode it.
  def row(claimed_at, status, node)
    [claimed_at, claimed_at, status, node].map { |v| "#{v.to_s.bytesize}:#{v}," }.join + "-"
  end

  def delayed_row(run_at_ms, job_class, args)
    [run_at_ms, job_class].map { |v| "#{v.to_s.bytesize}:#{v}," }.join + "-" + "#{args.bytesize}:#{args},"
  end

  # What a node of the previous release (layout 1) leaves behind: a claimed
  # pair with its log entry and index entries, a pending delayed job, a
  # paused job, a heartbeat.
  def write_layout1(key, fire, node: "old-node")
    raw.set("#{ns}:claim:#{fire}:#{key}", node, px: 60_000)
    raw.set("#{ns}:log:#{fire}:#{key}", row(fire, "dispatched", node), ex: 3600)
    raw.zadd("#{ns}:log-index", fire, "#{fire}:#{key}")
    raw.zadd("#{ns}:log-index:#{key}", fire, fire.to_s)
  end

  describe "a namespace no release has used" do
    it "starts at layout 2 and fences the previous release's fixed keys" do
      b = build
      expect(b.claim([["a", now]], lease_ms: 1000, node: "n", now: now)).to eq([true])
      expect(raw.get("#{tag}:layout")).to eq("2")
      fences.each do |k|
        expect(raw.type(k)).to eq("string")
        expect(raw.get(k)).to include("layout 2")
      end
      # A node of the previous release would now fail (WRONGTYPE) on its
      # first claim, heartbeat or enqueue rather than claim beside us.
      expect { raw.zadd("#{ns}:log-index", now, "x") }.to raise_error(Redis::CommandError, /WRONGTYPE/)
      expect(raw.exists?("#{ns}:log:#{now}:a")).to be(false)
    end

    it "refuses a layout it does not know, naming the way out" do
      raw.set("#{tag}:layout", "3")
      expect { build.claim([["a", now]], lease_ms: 1000, node: "n", now: now) }
        .to raise_error(Kaal::ConfigurationError, /key layout "3".*upgrade kaal/)
    end
  end

  describe "a namespace the previous release uses (layout 1+2)" do
    before { write_layout1("old", now) }

    it "checks and writes the previous release's keys, so nodes of both releases never both win a pair" do
      b = build
      raw.set("#{ns}:claim:#{now + 1}:leased", "old-node", px: 60_000) # claimed, log entry not yet visible
      won = b.claim([["old", now], ["leased", now + 1], ["new", now]], lease_ms: 1000, node: "n", now: now)
      expect(won).to eq([false, false, true])
      expect(raw.get("#{tag}:layout")).to eq("1+2")
      # the previous release checks <ns>:log:<fire>:<key> before it claims
      expect(raw.get("#{ns}:log:#{now}:new")).to eq(row(now, "claimed", "n"))
      expect(raw.ttl("#{ns}:log:#{now}:new")).to be_between(604_000, 604_800)
      expect(raw.zrange("#{ns}:log-index", 0, -1)).to eq(["#{now}:old"]) # its index is its own
    end

    it "takes the previous release's due delayed jobs too, oldest first, and cancels them" do
      raw.hset("#{ns}:delayed", "old-1", delayed_row(1000, "OldJob", "[1]"))
      raw.zadd("#{ns}:delayed-due", 1000, "old-1")
      raw.hset("#{ns}:delayed", "old-2", delayed_row(3000, "OldJob", "[2]"))
      raw.zadd("#{ns}:delayed-due", 3000, "old-2")
      raw.hset("#{ns}:delayed", "old-3", delayed_row(4000, "OldJob", "[3]"))
      raw.zadd("#{ns}:delayed-due", 4000, "old-3")
      b = build
      b.delayed_add(job_id: "new-1", run_at_ms: 2000, job_class: "NewJob", args_json: "[9]")
      expect(b.delayed_cancel("old-3")).to be(true)
      rows = b.delayed_claim(now_ms: 5000, limit: 10)
      expect(rows.map { |r| [r[:job_id], r[:run_at_ms], r[:job_class], r[:args_json]] })
        .to eq([["old-1", 1000, "OldJob", "[1]"], ["new-1", 2000, "NewJob", "[9]"], ["old-2", 3000, "OldJob", "[2]"]])
      expect(raw.hlen("#{ns}:delayed")).to eq(0)
      expect(b.delayed_claim(now_ms: 5000, limit: 10)).to eq([])
    end

    it "reads the job states of both, ours over theirs, and writes both" do
      raw.hset("#{ns}:states", "paused-old", "0", "both", "0")
      b = build
      b.set_enabled("both", true)
      expect(b.states).to eq("paused-old" => false, "both" => true)
      expect(raw.hget("#{ns}:states", "both")).to eq("1")
    end

    it "moves to layout 2 with `kaal migrate`: old entries copied with their lifetime, old keys fenced" do
      write_layout1("old", now + 1)
      raw.hset("#{ns}:delayed", "old-1", delayed_row(1000, "OldJob", "[1]"))
      raw.zadd("#{ns}:delayed-due", 1000, "old-1")
      raw.hset("#{ns}:states", "paused-old", "0")
      raw.zadd("#{ns}:nodes", now, "old-node")
      b = build
      expect(b.claim([["new", now]], lease_ms: 1000, node: "n", now: now)).to eq([true]) # 1+2 from here
      other = build # settled in 1+2 too, before the migration
      expect(other.claim([["new", now + 1]], lease_ms: 1000, node: "n", now: now)).to eq([true])

      build.migrate

      expect(raw.get("#{tag}:layout")).to eq("2")
      fences.each { |k| expect(raw.type(k)).to eq("string") }
      expect(raw.keys("#{ns}:log-index:*")).to eq([])
      expect(raw.exists?("#{ns}:log:#{now}:old")).to be(false)
      expect(raw.exists?("#{ns}:claim:#{now}:old")).to be(false)
      expect(raw.ttl("#{tag}:log:#{now}:old")).to be_between(3500, 3600)
      expect(b.dispatches(key: "old").map { |r| [r[:fire_time], r[:status], r[:node]] })
        .to eq([[now + 1, "dispatched", "old-node"], [now, "dispatched", "old-node"]])
      expect(b.dispatches.map { |r| [r[:key], r[:fire_time]] })
        .to eq([["old", now + 1], ["new", now + 1], ["old", now], ["new", now]])
      expect(b.delayed_list.map { |r| r[:job_id] }).to eq(["old-1"])
      expect(b.states).to eq("paused-old" => false)
      # A handle that still believes in 1+2 learns the new layout from its
      # next claim and leaves the fenced keys alone.
      expect(other.claim([["old", now], ["new", now + 2]], lease_ms: 1000, node: "n", now: now)).to eq([false, true])
      expect(raw.type("#{ns}:log:#{now + 2}:new")).to eq("none")
      expect(other.claim([["new", now + 3]], lease_ms: 1000, node: "n", now: now)).to eq([true])
      build.migrate # again: nothing to do
      expect(raw.get("#{tag}:layout")).to eq("2")
      expect(b.dispatches(key: "old").size).to eq(2)
    end

    # `kaal status` in a directory configured for this namespace on the
    # private server: [stdout, the --json report].
    def kaal_status
      Dir.mktmpdir("kaal-layout-status-") do |dir|
        FileUtils.mkdir_p(File.join(dir, "config"))
        File.write(File.join(dir, "config/kaal.yml"),
                   "defaults:\n  backend: redis\n  namespace: #{ns}\n  backend_config:\n    url: #{server.url}\n")
        File.write(File.join(dir, "config/kaal-scheduler.yml"), "defaults:\n  jobs: []\n")
        env = { "KAAL_ENV" => nil, "RAILS_ENV" => nil, "RACK_ENV" => nil }
        kaal = [RbConfig.ruby, "-I", File.expand_path("../../../lib", __dir__), File.expand_path("../../../bin/kaal", __dir__)]
        text, err, status = Open3.capture3(env, *kaal, "status", chdir: dir)
        expect(status.exitstatus).to eq(0), err
        json, err, status = Open3.capture3(env, *kaal, "status", "--json", chdir: dir)
        expect(status.exitstatus).to eq(0), err
        [text, JSON.parse(json)["backend"]]
      end
    end

    it "is reported by Backend#layout and `kaal status` (text and --json), with `kaal migrate` due, until it runs" do
      b = build
      expect(b.layout).to eq("1+2")
      text, report = kaal_status
      expect(text).to include("Redis key layout: 1+2", "once every node runs kaal #{Kaal::VERSION}, run `kaal migrate`")
      expect(report).to include("layout" => "1+2", "migrate_due" => true)

      build.migrate
      expect(b.layout).to eq("2") # read again: this handle had settled 1+2
      text, report = kaal_status
      expect(text).to include("Redis key layout: 2")
      expect(text).not_to include("kaal migrate")
      expect(report).to include("layout" => "2", "migrate_due" => false)
      expect(Kaal::Backend.build(:memory, namespace: ns).tap { |m| handles << m }.layout).to be_nil
    end
  end

  describe "delayed claims and a payload that cannot be decoded" do
    it "hands over the other jobs and keeps the bad one aside, reported" do
      b = build
      %w[j1 j2 j3].each_with_index do |id, i|
        b.delayed_add(job_id: id, run_at_ms: 1000 + i, job_class: "Job", args_json: "[#{i}]")
      end
      raw.hset("#{tag}:delayed", "j2", "not an encoded row")
      rows = b.delayed_claim(now_ms: 5000, limit: 10)
      expect(rows.map { |r| [r[:job_id], r[:run_at_ms], r[:job_class], r[:args_json]] })
        .to eq([["j1", 1000, "Job", "[0]"], ["j2", 1001, nil, nil], ["j3", 1002, "Job", "[2]"]])
      expect(raw.hgetall("#{tag}:delayed-unreadable")).to eq("j2" => "not an encoded row")
      expect(b.delayed_count).to eq(0)
    end

    it "records the unreadable job as failed on the scheduler and dispatches the rest" do
      log = StringIO.new
      Kaal.reset!
      Kaal.configure do |c|
        c.backend = "redis"
        c.backend_config = { url: server.url }
        c.namespace = ns
        c.logger = Kaal::Log.build(log)
        c.enable_dispatch_recovery = false
      end
      ran = Queue.new
      stub_const("LayoutSpecJob", Class.new { define_singleton_method(:perform) { |*args| ran << args } })
      Kaal.enqueue_at(at: Time.at(now), job_class: "LayoutSpecJob", args: [1], job_id: "good")
      Kaal.enqueue_at(at: Time.at(now), job_class: "LayoutSpecJob", args: [2], job_id: "bad")
      raw.hset("#{tag}:delayed", "bad", "5:12,")
      result = Kaal.tick!(now: now + 1)
      expect(result.map { |d| [d.job_id, d.status] }).to contain_exactly(%w[good dispatched], %w[bad failed])
      bad = result.find { |d| d.job_id == "bad" }
      expect(bad.error).to include("could not be decoded")
      expect(ran.pop).to eq([1])
      expect(log.string).to include("delayed bad").and include("could not be decoded")
    ensure
      Kaal.reset!
    end
  end

  describe "on a Redis Cluster node that serves only the namespace's slot" do
    cluster = nil
    before(:all) do
      cluster = Kaal::Spec::RedisServer.start("--cluster-enabled", "yes", "--cluster-require-full-coverage", "no")
      @cluster_ns = "kaal-cluster-#{SecureRandom.hex(4)}"
      c = Redis.new(url: cluster.url)
      slot = c.call("CLUSTER", "KEYSLOT", "{#{@cluster_ns}}")
      c.call("CLUSTER", "ADDSLOTS", slot)
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 20
      until c.call("CLUSTER", "INFO").include?("cluster_state:ok")
        raise "cluster state not ok after 20 s" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

        sleep 0.05
      end
      c.close
    end
    after(:all) { cluster&.stop }

    # Any key outside that slot, or an undeclared key the node does not
    # serve, fails the command: every operation here names its keys, all
    # in the namespace's slot.
    it "runs every operation" do
      b = Kaal::Backend.build(:redis, namespace: @cluster_ns, config: { url: cluster.url })
      handles << b
      b.migrate
      expect(b.claim([["a", now], ["b:c", now], ["a", now + 1]], lease_ms: 1000, node: "n", now: now))
        .to eq([true, true, true])
      expect(b.claim([["a", now]], lease_ms: 1000, node: "n", now: now)).to eq([false])
      b.record("a", now, "failed", node: "n", error: "boom", now: now + 1)
      expect(b.dispatches.map { |r| [r[:key], r[:fire_time]] }).to eq([["a", now + 1], ["b:c", now], ["a", now]])
      expect(b.dispatches(key: "a", status: "failed").map { |r| r[:error] }).to eq(["boom"])
      expect(b.dispatches(before: [now + 1, "a"], limit: 1).map { |r| r[:key] }).to eq(["b:c"])
      expect(b.dispatch_status("b:c", now)).to eq("claimed")
      expect(b.cleanup(before: now + 1, limit: 10)).to eq(2)
      b.set_enabled("a", false)
      expect(b.states).to eq("a" => false)
      b.delayed_add(job_id: "d1", run_at_ms: 10, job_class: "Job", args_json: "[]")
      b.delayed_add(job_id: "d2", run_at_ms: 20, job_class: "Job", args_json: "[]")
      expect(b.delayed_count).to eq(2)
      expect(b.delayed_list.map { |r| r[:job_id] }).to eq(%w[d1 d2])
      expect(b.delayed_cancel("d2")).to be(true)
      expect(b.delayed_claim(now_ms: 100, limit: 10).map { |r| r[:job_id] }).to eq(["d1"])
      b.record_many([["b:c", now, "dispatched", nil], ["gone", now - 5, "failed", "x"]], node: "n", now: now + 2)
      expect(b.latest_fires(["a", "b:c", "gone", "none"])).to eq([now + 1, now, now - 5, nil])
      q = "{#{@cluster_ns}}:queue" # a hand-off target in the same slot
      expect(b.claim_push(["p", "p"], [now, now + 1], [["l", q, "job-1", nil, nil], ["z", q + "-at", "job-2", nil, "5"]],
                          lease_ms: 1000, node: "n", now: now)).to eq([true, true])
      expect(b.dispatch_status("p", now)).to eq("dispatched")
      b.heartbeat("n", "{}", now: now, ttl: 60)
      expect(b.nodes(since: now - 1).map { |n| n[:node] }).to eq(["n"])
      c = Redis.new(url: cluster.url)
      expect(c.get("{#{@cluster_ns}}:layout")).to eq("2")
      expect(c.lrange(q, 0, -1)).to eq(["job-1"])
      expect(c.zrange("#{q}-at", 0, -1, with_scores: true)).to eq([["job-2", 5.0]])
      c.close
    end
  end
end
