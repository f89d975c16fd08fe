# frozen_string_literal: true

require "spec_helper"
require "json"
require "open3"
require "tmpdir"
require "yaml"

# The exactly-once hand-off to Sidekiq on kaal's Redis (docs/guarantee.md):
# a private redis-server, a real Sidekiq 7 process consuming the queue, kaal
# ticking in this process.
RSpec.describe "exactly-once hand-off to Sidekiq" do
  jobs_file = File.expand_path("../fixtures/handoff_sidekiq_jobs.rb", __dir__)
  let(:jobs_file) { jobs_file }

  before(:all) do
    skip "redis-server is not installed" unless Kaal::Spec::RedisServer.available?
    skip "the redis backend is not compiled in" unless Kaal::Native.backends.include?("redis")
    @redis = Kaal::Spec::RedisServer.start
    @dir = Dir.mktmpdir("kaal-handoff-")
    @records = File.join(@dir, "records.jsonl")
    ENV["KAAL_HANDOFF_RECORDS"] = @records
    require jobs_file
    Sidekiq.configure_client { |c| c.redis = { url: @redis.url } }
    Sidekiq.default_configuration.logger = Logger.new(File::NULL)
  end

  after(:all) do
    ENV.delete("KAAL_HANDOFF_RECORDS")
    @redis&.stop
    FileUtils.rm_rf(@dir) if @dir
  end

  after { Kaal.reset! }

  let(:queue) { "handoff-#{SecureRandom.hex(3)}" }

  def configure(url: @redis.url, **settings)
    Kaal.configure do |c|
      c.backend = :redis
      c.backend_config = { url: url }
      c.namespace = "ho-#{SecureRandom.hex(4)}"
      c.tick_interval = 1
      c.window_lookback = 5
      c.lease_ttl = 10
      c.logger = Logger.new(File::NULL)
      settings.each { |k, v| c.public_send("#{k}=", v) }
    end
  end

  def register(**opts)
    Kaal.register(key: "report", cron: "* * * * * *", job_class: HandoffSidekiqJob, queue: queue,
                  args: ["{{key}}", "{{fire_time.unix}}", "{{idempotency_key}}"], **opts)
  end

  def redis(*cmd)
    Sidekiq.redis { |c| c.call(*cmd) }
  end

  def records
    File.exist?(@records) ? File.readlines(@records).map { |l| JSON.parse(l) } : []
  end

  def start_sidekiq
    log = File.join(@dir, "sidekiq-#{queue}.log")
    pid = Process.spawn({ "REDIS_URL" => @redis.url, "KAAL_HANDOFF_RECORDS" => @records },
                        "bundle", "exec", "sidekiq", "-r", jobs_file, "-q", queue, "-c", "2", "-t", "5",
                        out: log, err: %i[child out], pgroup: true)
    [pid, log]
  end

  def stop_sidekiq(pid)
    Process.kill("TERM", pid)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 20
    until Process.waitpid(pid, Process::WNOHANG)
      if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
        Process.kill("KILL", -pid)
        Process.waitpid(pid)
        break
      end
      sleep 0.05
    end
  rescue Errno::ESRCH, Errno::ECHILD
    nil
  end

  it "claims, pushes Sidekiq's own payload and logs 'dispatched' in one step; a real Sidekiq 7 runs each run once" do
    configure
    register(handoff: "atomic")
    t0 = Time.now.to_i
    first = Kaal.tick!(now: t0 + 2) # the start tick: the runs due at t0+2
    expect(first.map(&:status)).to all(eq("dispatched"))
    3.times { |i| Kaal.tick!(now: t0 + 3 + i) }
    handed = Kaal.dispatches(key: "report", limit: 50)
    expect(handed.map { |r| r[:status] }.uniq).to eq(["dispatched"])
    expect(Kaal.dispatches(status: "claimed", limit: 50)).to be_empty
    fires = handed.map { |r| r[:fire_time] }.sort
    expect(fires).to eq(fires.uniq)

    # The jobs wait in Sidekiq's queue, registered in the queues set.
    expect(redis("LLEN", "queue:#{queue}")).to eq(fires.size)
    expect(redis("SISMEMBER", "queues", queue)).to eq(1)
    payload = JSON.parse(redis("LINDEX", "queue:#{queue}", 0))
    expect(payload.keys).to include("class", "args", "queue", "jid", "created_at", "enqueued_at", "retry")
    expect(payload).to include("class" => "HandoffSidekiqJob", "queue" => queue, "retry" => 3)

    # Ticking the same instants again (another node) pushes nothing.
    other = Kaal::Scheduler.new(config: Kaal.configuration, registry: Kaal.registry,
                                backend: Kaal::Backend.build("redis", namespace: Kaal.configuration.namespace,
                                                                      config: { url: @redis.url }),
                                logger: ->(*) {})
    (t0 + 2..t0 + 5).each { |t| expect(other.tick(t)).to be_empty }
    expect(redis("LLEN", "queue:#{queue}")).to eq(fires.size)

    pid, log = start_sidekiq
    begin
      ran = wait_until(-> { "Sidekiq to run #{fires.size} jobs (#{File.read(log) rescue ""})" }, timeout: 60) do
        runs = records.select { |r| r["queue"] == queue }
        runs if runs.size >= fires.size
      end
      expect(ran.map { |r| r["args"][1] }.sort).to eq(fires)
      ran.each do |r|
        expect(r["args"][2]).to eq(Kaal.idempotency_key("report", r["args"][1]))
        expect(r).to include("class" => "HandoffSidekiqJob", "retry" => 3)
        expect(r["enqueued_at"]).to be_a(Float)
        expect(r["created_at"]).to be_a(Float)
      end
      expect(ran.map { |r| r["jid"] }.uniq.size).to eq(fires.size)
    ensure
      stop_sidekiq(pid)
    end
  end

  it "kaal status lists a pair claimed at most once and never dispatched, never a handed-off one" do
    configure
    register(handoff: "atomic")
    ns = Kaal.configuration.namespace
    long_ago = Time.now.to_i - 60 # claims older than lease_ttl are the ones kaal status lists
    expect(Kaal.tick!(now: long_ago).map(&:status)).to eq(["dispatched"])
    # an at-most-once claim whose node died before dispatching it
    expect(Kaal.backend.claim_columns(["plain"], [long_ago], lease_ms: 10_000, node: "dead-node", now: long_ago))
      .to eq([true])

    Dir.mktmpdir("kaal-handoff-status-") do |dir|
      FileUtils.mkdir_p(File.join(dir, "config"))
      File.write(File.join(dir, "config", "kaal.yml"),
                 YAML.dump("defaults" => { "backend" => "redis", "backend_config" => { "url" => @redis.url },
                                           "namespace" => ns, "tick_interval" => 1, "window_lookback" => 5,
                                           "lease_ttl" => 10 }))
      File.write(File.join(dir, "config", "kaal-scheduler.yml"),
                 YAML.dump("defaults" => { "jobs" => [{ "key" => "report", "cron" => "* * * * * *",
                                                         "job_class" => "HandoffSidekiqJob", "handoff" => "atomic" }] }))
      out, err, status = Open3.capture3(RbConfig.ruby, "-I", File.expand_path("../../lib", __dir__),
                                        File.expand_path("../../bin/kaal", __dir__), "status", "--json", chdir: dir)
      expect(status.exitstatus).to eq(0), err
      backend = JSON.parse(out)["backend"]
      expect(backend["claimed_not_dispatched"].map { |d| d["key"] }).to eq(["plain"])
      expect(backend["recent_dispatches"].find { |d| d["key"] == "report" }).to include("status" => "dispatched")
    end
  end

  it "writes neither claim nor job when the push cannot happen (a queue key of the wrong type), and fails closed" do
    configure
    register(handoff: "atomic")
    errors = []
    sub = Kaal.events.subscribe(:backend_error) { |event| errors << event.payload }
    redis("SET", "queue:#{queue}", "not a list")
    t = Time.now.to_i
    expect(Kaal.tick!(now: t)).to be_empty
    expect(errors.map { |e| e[:error] }.join).to include("WRONGTYPE")
    expect(Kaal.dispatches(limit: 10)).to be_empty
    expect(redis("KEYS", "{#{Kaal.configuration.namespace}}:log:*")).to be_empty

    redis("DEL", "queue:#{queue}")
    expect(Kaal.tick!(now: t + 1).map(&:status)).to eq(%w[dispatched dispatched])
    expect(redis("LLEN", "queue:#{queue}")).to eq(2)
  ensure
    Kaal.events.unsubscribe(sub) if sub
  end

  it "hands off atomically by default (handoff: auto) and falls back to at most once where it cannot" do
    configure
    register
    expect(Kaal.tick!(now: Time.now.to_i).map(&:status)).to eq(["dispatched"])
    expect(Kaal.scheduler.handoff_of("report")).to eq("atomic")
    Kaal.reset!

    configure(url: @redis.url(3)) # Sidekiq's Redis is db 0
    register
    expect(Kaal.tick!(now: Time.now.to_i).map(&:status)).to eq(["dispatched"])
    expect(Kaal.scheduler.handoff_of("report")).to eq("at_most_once")
  end

  it "refuses at start a handoff: atomic that the target cannot do, naming the job and the reason" do
    configure(url: @redis.url(3))
    register(handoff: :atomic)
    expect { Kaal.start! }.to raise_error(Kaal::ConfigurationError,
                                          /"report".*handoff: atomic is not possible: HandoffSidekiqJob's Sidekiq Redis \(127\.0\.0\.1:\d+\/0\) is not the Redis of kaal's backend \(127\.0\.0\.1:\d+\/3\)/)
    Kaal.reset!

    stub_const("PlainHandoffJob", Class.new { def self.perform(*); end })
    configure(handoff: "atomic")
    Kaal.register(key: "plain", cron: "* * * * *", job_class: "PlainHandoffJob")
    expect { Kaal.start! }.to raise_error(Kaal::ConfigurationError,
                                          /"plain".*handoff: atomic \(the configuration's handoff\) is not possible: PlainHandoffJob is a plain Ruby job/)
    Kaal.reset!

    Kaal.configure { |c| c.backend = :memory }
    register(handoff: "atomic")
    expect { Kaal.start! }.to raise_error(Kaal::ConfigurationError, /only on the redis backend.*kaal's backend is memory/)
  end

  it "refuses a block with handoff: atomic, and unknown hand-off values, where they are set" do
    expect { Kaal.register(key: "b", cron: "* * * * *", handoff: "atomic") { nil } }
      .to raise_error(Kaal::ConfigurationError, /handoff: atomic is not possible for a block/)
    expect { Kaal.register(key: "b", cron: "* * * * *", job_class: "X", handoff: "twice") }
      .to raise_error(Kaal::ConfigurationError, /handoff: must be atomic or at_most_once, got "twice"/)
    expect { Kaal.configuration.apply_env("KAAL_HANDOFF" => "sometimes") }
      .to raise_error(Kaal::ConfigurationError, /KAAL_HANDOFF: handoff: must be one of auto, atomic, at_most_once/)
    expect(Kaal::Configuration.new.apply_env("KAAL_HANDOFF" => "at_most_once").handoff).to eq(:at_most_once)
  end
end
