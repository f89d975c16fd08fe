# frozen_string_literal: true

require "delegate"
require "logger"

# The class the stored schedules of these examples name (a tick may run them).
class StoredScheduleSpecJob
  def self.perform(*_args, **_kwargs); end
end
OtherStoredScheduleSpecJob = Class.new(StoredScheduleSpecJob)

# "stored schedules": Kaal.schedules over one backend (the API, its checks)
# and what a node makes of them (Kaal::ScheduleFeed into a registry, polled
# by a real Kaal::Scheduler tick), against the real store. Each backend's
# spec file runs it with one line, after kaal_backend_for.
RSpec.shared_examples "stored schedules" do
  let(:ns) { unique_namespace("sched") }
  let(:backend) { backend_factory.call(ns) }
  let(:node_backend) { backend_factory.call(ns) } # another node (memory: the same handle)
  let(:config) do
    Kaal::Configuration.new.tap do |c|
      c.backend = kaal_backend_kind.to_s
      c.namespace = ns
      c.time_zone = "UTC"
    end
  end
  let(:allowed) { nil } # class prefixes this process allows
  let(:registry) { Kaal::Registry.new }
  let(:schedules) do
    check = lambda do |job|
      next if allowed.nil? || allowed.any? { |p| job.job_class_name.start_with?(p) }

      raise Kaal::ConfigurationError, "#{job.location}: job_class: #{job.job_class_name} is outside " \
                                      "delayed_job_allowed_class_prefixes (#{allowed.join(", ")})"
    end
    Kaal::Schedules.new(backend: backend, configuration: config, registry: registry, check_class: check)
  end
  let(:node_registry) { Kaal::Registry.new }
  let(:logged) { [] }
  let(:feed) { feed_on(node_backend, node_registry) }

  # The node's runs go to kaal's own log subscriber: not into the spec output.
  around do |example|
    logger = Kaal.configuration.logger
    Kaal.configuration.logger = Logger.new(File::NULL)
    example.run
  ensure
    Kaal.configuration.logger = logger
  end

  # A feed into reg whose `schedules` events land in logged.
  def feed_on(handle, reg)
    build = ->(row) { Kaal::Schedules.job_from(row, default_time_zone: "UTC") }
    events = Kaal::Events.new
    events.subscribe(:schedules) { |e| logged << e.payload }
    Kaal::ScheduleFeed.new(backend: handle, registry: reg, build: build, policy: -> { :error }, events: events,
                           node: -> { "node-b" })
  end

  # A node's registry after one tick of a real scheduler with the feed.
  def tick_node(at: Time.utc(2026, 1, 1, 8, 59, 58).to_i)
    @scheduler ||= Kaal::Scheduler.new(config: config, registry: node_registry, backend: node_backend,
                                       logger: ->(*) {}, feed: feed)
    @scheduler.tick(at, wait: true) # its runs recorded before the example (and its store) ends
    node_registry.jobs
  end

  it "creates a schedule every node sees within one tick, checked and stored like a file job" do
    stored = schedules.upsert(key: "report:42", cron: "0 9 * * *", job_class: "StoredScheduleSpecJob", args: [42, "{{key}}"],
                              kwargs: { format: "pdf", at: "{{fire_time.iso8601}}" }, time_zone: "Europe/Paris",
                              queue: "reports")
    expect(stored).to include(key: "report:42", cron: "0 9 * * *", job_class: "StoredScheduleSpecJob", args: [42, "{{key}}"],
                              kwargs: { "format" => "pdf", "at" => "{{fire_time.iso8601}}" },
                              time_zone: "Europe/Paris", queue: "reports", enabled: true, source: "stored")
    expect(stored[:updated_at]).to be_a(Time)
    expect(schedules.find("report:42")).to eq(stored)
    expect(schedules.find("nope")).to be_nil
    expect(schedules.count).to eq(1)

    jobs = tick_node
    job = jobs.fetch("report:42")
    expect(job.source).to eq(:stored)
    expect([job.expression, job.cron.time_zone, job.job_class, job.queue]).to eq(["0 9 * * *", "Europe/Paris", "StoredScheduleSpecJob", "reports"])
    expect(job.arguments_for(1_767_254_400, "idem")).to eq([[42, "report:42"], { format: "pdf", at: "2026-01-01T09:00:00+01:00" }])
    expect(feed.version).to be >= 1
  end

  it "changes a schedule in place: the node applies only that one, the next tick" do
    schedules.upsert(key: "a", cron: "0 9 * * *", job_class: "StoredScheduleSpecJob")
    schedules.upsert(key: "b", cron: "0 10 * * *", job_class: "StoredScheduleSpecJob")
    tick_node
    before = node_registry["a"]
    schedules.upsert(key: "b", cron: "30 10 * * *", job_class: "OtherStoredScheduleSpecJob", time_zone: "Asia/Tokyo")
    expect(feed.poll).to eq(1)
    expect(node_registry["b"].expression).to eq("30 10 * * *")
    expect(node_registry["b"].cron.time_zone).to eq("Asia/Tokyo")
    expect(node_registry["b"].job_class).to eq("OtherStoredScheduleSpecJob")
    expect(node_registry["a"]).to equal(before) # untouched
    expect(schedules.map { |s| s[:key] }).to eq(%w[a b])
    expect(schedules.count).to eq(2)
  end

  it "keeps a schedule stored with enabled: false off, and Kaal.disable's pause apart from it" do
    schedules.upsert(key: "off", cron: "* * * * *", job_class: "StoredScheduleSpecJob", enabled: false)
    schedules.upsert(key: "on", cron: "* * * * *", job_class: "StoredScheduleSpecJob")
    backend.set_enabled("on", false) # what Kaal.disable stores
    tick_node
    scheduler = @scheduler
    expect(node_registry["off"].enabled).to be(false)
    expect(scheduler.enabled?(node_registry["off"])).to be(false)
    expect(node_registry["on"].enabled).to be(true)
    expect(scheduler.enabled?(node_registry["on"])).to be(false) # paused
    expect(schedules.list.map { |s| s.values_at(:key, :enabled, :paused, :state) })
      .to eq([["off", false, false, "disabled (stored)"], ["on", true, true, "paused (Kaal.disable)"]])

    backend.set_enabled("on", true)
    schedules.upsert(key: "off", cron: "* * * * *", job_class: "StoredScheduleSpecJob", enabled: true)
    tick_node(at: Time.utc(2026, 1, 1, 9, 0, 30).to_i)
    expect(scheduler.enabled?(node_registry["on"])).to be(true)
    expect(scheduler.enabled?(node_registry["off"])).to be(true)
  end

  it "deletes a schedule: gone from the store and, the next tick, from every node" do
    schedules.upsert(key: "gone", cron: "0 9 * * *", job_class: "StoredScheduleSpecJob")
    schedules.upsert(key: "kept", cron: "0 9 * * *", job_class: "StoredScheduleSpecJob")
    tick_node
    expect(node_registry.jobs.keys).to contain_exactly("gone", "kept")
    expect(schedules.delete("gone")).to be(true)
    expect(schedules.delete("gone")).to be(false)
    expect(schedules.find("gone")).to be_nil
    expect(schedules.count).to eq(1)
    expect(tick_node.keys).to eq(["kept"])

    # stored again under the same key: back on the node
    schedules.upsert(key: "gone", cron: "0 8 * * *", job_class: "StoredScheduleSpecJob")
    expect(tick_node.fetch("gone").expression).to eq("0 8 * * *")
  end

  describe "validation (the same checks as a file job, the field named)" do
    let(:allowed) { %w[Reports::] }

    def refused(**fields)
      base = { key: "bad", cron: "0 9 * * *", job_class: "Reports::DailyJob" }
      expect { schedules.upsert(**base, **fields) }.to raise_error(Kaal::ConfigurationError) do |e|
        yield e.message
      end
      expect(schedules.count).to eq(0) # nothing stored
    end

    it "refuses a bad cron, zone, class, key, queue, args, kwargs or placeholder, storing nothing" do
      refused(cron: "61 * * * *") { |m| expect(m).to match(/upsert\(key: "bad"\): cron: "61 \* \* \* \*": minute field/) }
      refused(time_zone: "Mars/Olympus") { |m| expect(m).to include('unknown time zone "Mars/Olympus"') }
      refused(job_class: "reports") { |m| expect(m).to include('job_class: "reports" is not a constant name') }
      refused(job_class: "Billing::ChargeJob") { |m| expect(m).to include("job_class: Billing::ChargeJob is outside") }
      refused(key: "") { |m| expect(m).to include("key: must be a non-empty String") }
      refused(key: "kaal:manual:x") { |m| expect(m).to include('"kaal:manual:" starts the dispatch-log keys') }
      refused(queue: 5) { |m| expect(m).to include("queue: must be a String") }
      refused(args: { "a" => 1 }) { |m| expect(m).to include("args: must be a list") }
      refused(args: [Time.now]) { |m| expect(m).to include("args[0]:").and include("does not survive a JSON round trip") }
      refused(kwargs: [1]) { |m| expect(m).to include("kwargs: must be a mapping") }
      refused(kwargs: { "a" => "{{nope}}" }) { |m| expect(m).to include("unknown placeholder {{nope}}") }
      refused(enabled: "yes") { |m| expect(m).to include("enabled: must be true or false") }
      expect(schedules.count).to eq(0)
    end

    it "refuses a key this process has in its scheduler file or in code (scheduler_conflict_policy error)" do
      file_job = Kaal::Job.new(key: "nightly", cron: "0 2 * * *", job_class: "Reports::NightlyJob",
                               location: "config/kaal-scheduler.yml", source: :file)
      registry.replace_file_jobs([file_job], "config/kaal-scheduler.yml", policy: :error)
      refused(key: "nightly") { |m| expect(m).to include("already defined in the scheduler file") }
      config.scheduler_conflict_policy = :code_wins
      expect(schedules.upsert(key: "nightly", cron: "0 3 * * *", job_class: "Reports::NightlyJob")[:key]).to eq("nightly")
    end
  end

  it "pages through many schedules with each (by key) and the feed (by version)" do
    stub_const("Kaal::Schedules::PAGE", 2)
    stub_const("Kaal::ScheduleFeed::PAGE", 2)
    keys = %w[e a d c b]
    keys.each { |k| schedules.upsert(key: k, cron: "0 9 * * *", job_class: "StoredScheduleSpecJob") }
    expect(schedules.map { |s| s[:key] }).to eq(keys.sort)
    expect(schedules.list(after: "b", limit: 2).map { |s| s[:key] }).to eq(%w[c d])
    threads = Thread.list.size
    expect(feed.poll).to eq(5) # the page after a full one is read ahead, in a thread of its own
    expect(Thread.list.size).to eq(threads)
    expect(node_registry.jobs.keys.sort).to eq(keys.sort)
    expect(feed.poll).to eq(0)
  end

  it "loads plain schedules with one checked Spec per definition, each run's arguments as stored" do
    stub_const("Kaal::ScheduleFeed::PAGE", 4)
    12.times do |i|
      schedules.upsert(key: "t#{i}", cron: "#{i % 3} 9 * * *", job_class: "StoredScheduleSpecJob", args: [i, "x#{i}"],
                       time_zone: i.even? ? "Europe/Paris" : nil)
    end
    schedules.upsert(key: "kw", cron: "0 9 * * *", job_class: "StoredScheduleSpecJob", kwargs: { "n" => 1 })
    schedules.upsert(key: "tpl", cron: "0 9 * * *", job_class: "StoredScheduleSpecJob", args: ["{{key}}"])
    schedules.upsert(key: "a key with spaces", cron: "0 9 * * *", job_class: "StoredScheduleSpecJob", args: [7])
    schedules.upsert(key: "gone", cron: "0 9 * * *", job_class: "StoredScheduleSpecJob")
    schedules.delete("gone")
    expect(feed.poll).to eq(15)
    jobs = node_registry.jobs
    expect(jobs.keys).to match_array((0...12).map { |i| "t#{i}" } + ["kw", "tpl", "a key with spaces"])
    plain = (0...12).map { |i| jobs.fetch("t#{i}") }
    expect(plain.map(&:spec).uniq(&:object_id).size).to eq(6) # 3 crons x 2 zones
    expect(plain[0].spec).to equal(plain[6].spec)
    plain.each_with_index do |job, i|
      expect(job.args).to eq([i, "x#{i}"])
      expect(job.args).to be_frozen
      expect(job.kwargs).to eq({})
      expect(job.arguments_for(1_767_254_400, "idem")).to eq([[i, "x#{i}"], {}])
      expect([job.expression, job.cron.time_zone]).to eq(["#{i % 3} 9 * * *", i.even? ? "Europe/Paris" : "UTC"])
      expect([job.source, job.enabled, job.templated?]).to eq([:stored, true, false])
    end
    expect(plain[3].location).to eq('stored schedule "t3"')
    expect(jobs.fetch("kw").arguments_for(1_767_254_400, "idem")).to eq([[], { n: 1 }])
    expect(jobs.fetch("tpl").arguments_for(1_767_254_400, "idem")).to eq([["tpl"], {}])
    expect(jobs.fetch("a key with spaces").arguments_for(1_767_254_400, "idem")).to eq([[7], {}])
    expect(logged.last).to include(applied: 15, refused: [], stored: 15)
    schedules.upsert(key: "t1", cron: "0 9 * * *", job_class: "StoredScheduleSpecJob", args: [1])
    schedules.delete("t2")
    expect(feed.poll).to eq(2)
    expect(logged.last).to include(applied: 2, refused: [], stored: 14)
    expect(node_registry["t1"].args).to eq([1])
    expect(node_registry["t2"]).to be_nil

    bad = Kaal::Schedules::StoredJob.from("hand-edited", plain[0].spec, "[1,")
    expect { bad.args }.to raise_error(Kaal::ConfigurationError, /\Astored schedule "hand-edited": args: not valid JSON/)
  end

  it "reads changes as columns, and makes the plain rows' jobs grouped by definition" do
    schedules.upsert(key: "a", cron: "0 9 * * *", job_class: "StoredScheduleSpecJob", args: [1])
    schedules.upsert(key: "b", cron: "0 10 * * *", job_class: "StoredScheduleSpecJob", args: [2], queue: "q")
    schedules.upsert(key: "c", cron: "0 9 * * *", job_class: "StoredScheduleSpecJob", args: [3])
    schedules.upsert(key: "d", cron: "0 9 * * *", job_class: "StoredScheduleSpecJob", kwargs: { "x" => 1 })
    schedules.upsert(key: "e e", cron: "0 10 * * *", job_class: "StoredScheduleSpecJob", queue: "q")
    schedules.upsert(key: "f", cron: "0 9 * * *", job_class: "StoredScheduleSpecJob", args: ["{{key}}"])
    schedules.upsert(key: "g", cron: "0 10 * * *", job_class: "StoredScheduleSpecJob", args: [4], queue: "q")
    schedules.upsert(key: "h", cron: "0 9 * * *", job_class: "StoredScheduleSpecJob")
    schedules.delete("h")
    schedules.upsert(key: "i", cron: "0 9 * * *", job_class: "StoredScheduleSpecJob", args: [-5])
    schedules.upsert(key: "j", cron: "0 9 * * *", job_class: "StoredScheduleSpecJob", args: [12_345_678_901_234_567_890])
    counter, last, keys, args, kwargs, defs, def_of = node_backend.schedule_change_columns(since: 0, limit: 100)
    expect([counter, last]).to eq([11, 11])
    expect(keys).to eq(["a", "b", "c", "d", "e e", "f", "g", "h", "i", "j"])
    # [n]: the Integer n, when a Fixnum
    expect(args).to eq([1, 2, 3, "[]", "[]", '["{{key}}"]', 4, nil, -5, "[12345678901234567890]"])
    expect(kwargs).to eq([nil, nil, nil, '{"x":1}', nil, "{}", nil, nil, nil, nil])
    expect(defs).to eq([["0 9 * * *", "StoredScheduleSpecJob", nil, nil, true, 0],
                        ["0 10 * * *", "StoredScheduleSpecJob", nil, "q", true, 1]])
    expect(def_of).to eq([0, 1, 0, ~0, 1, ~0, 1, nil, 0, 0])
    expect(keys + args.grep(String) + kwargs.compact + defs).to all(be_frozen)

    specs = [Object.new, false]
    jobs, rest = Kaal::Native.stored_jobs(Kaal::Schedules::StoredJob, keys, args, def_of, specs)
    expect(jobs.map(&:key)).to eq(%w[a c i j]) # definition 1 has no Spec: its rows are the caller's
    expect(jobs.map(&:spec)).to all(equal(specs[0]))
    expect(rest).to eq([1, 3, 4, 5, 6, 7])
    specs[1] = Object.new
    jobs, rest = Kaal::Native.stored_jobs(Kaal::Schedules::StoredJob, keys, args, def_of, specs)
    expect(jobs.map(&:key)).to eq(%w[a c i j b g]) # "e e" is not a plain key: checked by Ruby
    expect(jobs.map(&:args)).to eq([[1], [3], [-5], [12_345_678_901_234_567_890], [2], [4]])
    expect(jobs.map(&:args)).to all(be_frozen)
    expect(rest).to eq([3, 4, 5, 7])
  end

  it "refuses every schedule of a definition this node cannot accept, each with its own key" do
    node_feed = Kaal::ScheduleFeed.new(
      backend: node_backend, registry: node_registry, policy: -> { :error }, events: Kaal::Events.new.tap { |e| e.subscribe(:schedules) { |ev| logged << ev.payload } },
      build: lambda do |row|
        job = Kaal::Schedules.job_from(row, default_time_zone: "UTC")
        raise Kaal::ConfigurationError, "#{job.location}: job_class: not here" if job.job_class == "OtherStoredScheduleSpecJob"

        job
      end
    )
    { "a" => [1], "b" => ["b"], "c" => [] }.each do |k, args|
      schedules.upsert(key: k, cron: "0 9 * * *", job_class: "OtherStoredScheduleSpecJob", args: args)
    end
    schedules.upsert(key: "d", cron: "0 9 * * *", job_class: "StoredScheduleSpecJob", args: [1])
    expect(node_feed.poll).to eq(1)
    expect(node_registry.jobs.keys).to eq(["d"])
    expect(logged.last[:refused]).to eq(%w[a b c].map { |k| { key: k, error: "stored schedule #{k.inspect}: job_class: not here" } })
  end

  it "applies the changes made while a poll reads its pages, in their order" do
    stub_const("Kaal::ScheduleFeed::PAGE", 2)
    %w[a b c d e].each { |k| schedules.upsert(key: k, cron: "0 9 * * *", job_class: "StoredScheduleSpecJob", args: [1]) }
    calls = 0
    writer = schedules
    changing = Class.new(SimpleDelegator) do
      define_method(:schedule_change_columns) do |**kw|
        calls += 1
        if calls == 2 # after the first page (a and b) was read
          writer.upsert(key: "a", cron: "0 10 * * *", job_class: "StoredScheduleSpecJob", args: [2])
          writer.delete("b")
          writer.upsert(key: "f", cron: "0 9 * * *", job_class: "StoredScheduleSpecJob")
        end
        super(**kw)
      end
    end.new(node_backend)
    node_feed = feed_on(changing, node_registry)
    node_feed.poll
    jobs = node_registry.jobs
    expect(jobs.keys).to match_array(%w[a c d e f])
    expect([jobs["a"].expression, jobs["a"].args]).to eq(["0 10 * * *", [2]])
    expect(logged.last).to include(refused: [], stored: 5)
    expect(node_feed.version).to eq(8)
    expect(node_feed.poll).to eq(0)
  end

  it "polls with one backend call per tick, reading only the changed schedules (no rescan)" do
    calls = Hash.new(0)
    rows_read = []
    counting = Class.new(SimpleDelegator) do
      define_method(:schedule_change_columns) do |**kw|
        calls[:schedule_changes] += 1
        super(**kw).tap { |_, _, keys| rows_read << keys.size }
      end
      %i[schedule_changes schedule_list schedule_get schedule_count].each do |m|
        define_method(m) do |*a, **kw|
          calls[m] += 1
          super(*a, **kw)
        end
      end
    end.new(node_backend)
    node_feed = feed_on(counting, node_registry)
    40.times { |i| schedules.upsert(key: format("tenant-%02d", i), cron: "0 9 * * *", job_class: "StoredScheduleSpecJob") }
    expect(node_feed.poll).to eq(40) # the start: every stored schedule once
    calls.clear
    rows_read.clear
    3.times { expect(node_feed.poll).to eq(0) }
    expect(calls).to eq(schedule_changes: 3) # one call a tick, nothing listed or fetched
    expect(rows_read).to eq([0, 0, 0])
    schedules.upsert(key: "tenant-07", cron: "0 10 * * *", job_class: "StoredScheduleSpecJob")
    schedules.delete("tenant-08")
    expect(node_feed.poll).to eq(2)
    expect(rows_read.last).to eq(2) # the two changed rows, not the 40
    expect(calls).to eq(schedule_changes: 4)
    expect(node_registry.jobs.size).to eq(39)
  end

  it "leaves out (and logs) a stored schedule the node's registry refuses, and takes it once changed" do
    code_job = Kaal::Job.new(key: "clash", cron: "0 1 * * *", job_class: "CodeJob", location: "Kaal.register", source: :code)
    node_registry.register(code_job, policy: :error)
    schedules.upsert(key: "clash", cron: "0 9 * * *", job_class: "StoredScheduleSpecJob")
    feed.poll
    expect(node_registry["clash"]).to equal(code_job)
    expect(logged.last).to include(node: "node-b", applied: 0, stored: 0)
    expect(logged.last[:refused].map { |r| r[:key] }).to eq(["clash"])
    expect(logged.last[:refused].first[:error]).to include("already registered in code")
    node_registry.unregister("clash", policy: :error)
    schedules.upsert(key: "clash", cron: "0 9 * * *", job_class: "StoredScheduleSpecJob", queue: "q")
    feed.poll
    expect(node_registry["clash"].source).to eq(:stored)
    expect(logged.last).to include(applied: 1, refused: [], stored: 1)
    logged.clear
    feed.poll
    expect(logged).to eq([]) # nothing changed: no event
  end
end
