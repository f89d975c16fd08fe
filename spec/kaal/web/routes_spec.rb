# frozen_string_literal: true

require "rack/test"
require "kaal/web"
require "tmpdir"

# Every page and action of Kaal::Web through rack-test, over the memory and
# SQLite backends, mounted under /kaal as in a config.ru `map "/kaal"`.
RSpec.describe Kaal::Web do
  include Rack::Test::Methods

  module WebSpecJob
    RUNS = Queue.new
    def self.perform(*args, **kwargs)
      RUNS << [args, kwargs]
    end
  end

  let(:read_only) { nil }
  let(:app) do
    web = described_class.new(read_only: read_only, per_page: 2)
    Rack::Builder.new { map("/kaal") { run web } }.to_app
  end

  def csrf_token
    get "/kaal/"
    rack_mock_session.cookie_jar["kaal_csrf"] || last_response.body[/name="_csrf" value="([0-9a-f]{64})"/, 1]
  end

  def post_action(path, token: csrf_token, **headers)
    headers.each { |k, v| header k, v }
    post path, { "_csrf" => token }
  end

  %i[memory sqlite].each do |kind|
    context "over the #{kind} backend" do
      before do
        Kaal.reset!
        WebSpecJob::RUNS.clear
        @dir = Dir.mktmpdir("kaal-web")
        Kaal.configure do |c|
          c.backend = kind
          c.backend_config = { path: File.join(@dir, "kaal.sqlite3") } if kind == :sqlite
          c.namespace = "web-spec"
        end
        Kaal.backend.migrate
        Kaal.register(key: "nightly-report", cron: "30 2 * * *", job_class: WebSpecJob, args: ["{{idempotency_key}}"])
        Kaal.register(key: "<script>alert(1)</script>", cron: "*/5 * * * *", job_class: WebSpecJob)
        Kaal.register(key: "off", cron: "@hourly", job_class: WebSpecJob, enabled: false)
      end

      after do
        Kaal.reset!
        FileUtils.rm_rf(@dir)
      end

      it "lists jobs with cron, explanation, zone, next fire times and state, a page at a time" do
        get "/kaal/"
        expect(last_response.status).to eq(200)
        body = last_response.body
        expect(body).to include("&lt;script&gt;alert(1)&lt;/script&gt;")
        expect(body).to include("Every 5 minutes").or include("every 5 minutes")
        expect(body.scan(/<tr[ >]/).size).to eq(3) # head + 2 rows (per_page 2)
        expect(body).to include('rel="next"')
        get "/kaal/", "page" => "2"
        expect(last_response.body).to include(">off</a>")
        expect(last_response.body).to include("disabled in code")
        expect(last_response.body).not_to include("nightly-report</a>")
      end

      it "lists stored schedules with their source, enabled and paused apart, a page at a time; pauses one" do
        schedules = Kaal.schedules
        schedules.upsert(key: "report:1", cron: "0 9 * * *", job_class: "WebSpecJob", time_zone: "Europe/Paris")
        schedules.upsert(key: "report:2", cron: "0 10 * * *", job_class: "WebSpecJob", enabled: false)
        schedules.upsert(key: "report:<3>", cron: "0 11 * * *", job_class: "WebSpecJob", queue: "low")
        get "/kaal/schedules"
        expect(last_response.status).to eq(200)
        body = last_response.body
        expect(body).to include("Stored schedules", "3 stored", "report:1", "Europe/Paris", "stored", "from stored")
        expect(body).to include("disabled in stored")
        expect(body.scan(/<tr[ >]/).size).to eq(3) # head + 2 rows (per_page 2)
        next_page = body[/<a href="([^"]+)" rel="next">Next/, 1]
        expect(next_page).to eq("/kaal/schedules?after=report%3A2")
        get next_page
        expect(last_response.body).to include("report:&lt;3&gt;", "low")
        expect(last_response.body).not_to include("report:<3>")

        post_action "/kaal/jobs/report%3A1/pause", "Referer" => "http://example.org/kaal/schedules"
        expect(last_response.status).to eq(303)
        expect(last_response.headers["location"]).to include("/kaal/schedules")
        get "/kaal/schedules"
        expect(last_response.body).to include("paused at runtime")
        expect(Kaal.schedules.list.find { |r| r[:key] == "report:1" }).to include(paused: true, enabled: true,
                                                                                   state: "paused (Kaal.disable)")

        # Run now, from a process whose scheduler does not run the stored schedule
        expect(Kaal.registry["report:<3>"]).to be_nil
        post_action "/kaal/jobs/report%3A%3C3%3E/run", "Referer" => "http://example.org/kaal/schedules"
        follow_redirect!
        expect(last_response.body).to include("Ran report:&lt;3&gt; now")
        expect(WebSpecJob::RUNS.pop(true)).to eq([[], {}])
      end

      it "never renders a value unescaped" do
        Kaal.backend.claim([["<script>alert(1)</script>", 1_700_000_000]], lease_ms: 1000, node: "<b>n</b>", now: 1_700_000_000)
        Kaal.backend.record("<script>alert(1)</script>", 1_700_000_000, "failed", node: "<b>n</b>",
                                                                                error: "<img src=x onerror=alert(1)>", now: 1_700_000_001)
        %w[/kaal/ /kaal/problems /kaal/jobs/%3Cscript%3Ealert(1)%3C%2Fscript%3E].each do |path|
          get path
          expect(last_response.status).to eq(200), "#{path}: #{last_response.status}"
          expect(last_response.body).not_to include("<script>alert")
          expect(last_response.body).not_to include("<img src=x")
          expect(last_response.body).not_to include("<b>n</b>")
        end
        expect(last_response.body).to include("&lt;img src=x onerror=alert(1)&gt;")
      end

      it "shows a job's dispatch log with status, node, lateness and redacted error text" do
        Kaal.backend.claim([["nightly-report", 1_700_000_000]], lease_ms: 1000, node: "n1", now: 1_700_000_000)
        Kaal.backend.record("nightly-report", 1_700_000_000, "failed", node: "n1",
                                                                     error: "RuntimeError: redis://u:s3cret@db.local/0 down", now: 1_700_000_003)
        get "/kaal/jobs/nightly-report"
        body = last_response.body
        expect(last_response.status).to eq(200)
        expect(body).to include("n1", "3s", "failed", "RuntimeError")
        expect(body).not_to include("s3cret")
        get "/kaal/jobs/nope"
        expect(last_response.status).to eq(404)
      end

      it "pages through a job's log, scheduled and manual runs merged, with Older links (keyset cursor)" do
        fires = (1..5).map { |i| 1_700_000_000 + i * 60 }
        Kaal.backend.claim(fires.map { |f| ["nightly-report", f] }, lease_ms: 1000, node: "n1", now: fires.last)
        Kaal.backend.claim([["kaal:manual:nightly-report", fires[2]]], lease_ms: 1000, node: "n1", now: fires.last)
        Kaal.backend.claim([["off", fires[3]]], lease_ms: 1000, node: "n1", now: fires.last) # another job's row
        seen = []
        path = "/kaal/jobs/nightly-report"
        pages = 0
        while path
          get path
          expect(last_response.status).to eq(200)
          pages += 1
          seen.concat(last_response.body.scan(/<time datetime="([^"]+)"[^>]*>[^<]*<\/time><\/td><td data-label="Kind">(.*?)<\/td>/))
          path = last_response.body[/<a href="([^"]+)" rel="next">Older/, 1]&.gsub("&amp;", "&")
        end
        expect(pages).to eq(3) # 6 rows, 2 a page
        times = seen.map { |t, _| Time.iso8601(t).to_i }
        expect(times).to eq([fires[4], fires[3], fires[2], fires[2], fires[1], fires[0]])
        expect(seen.count { |_, kind| kind.include?("manual") }).to eq(1)
        get "/kaal/jobs/nightly-report", "before" => "garbage"
        expect(last_response.status).to eq(200)
      end

      it "shows live nodes with their heartbeat and version" do
        Kaal.backend.heartbeat("web-node-1", JSON.generate(version: Kaal::VERSION, pid: 42), now: Time.now, ttl: 60)
        get "/kaal/nodes"
        expect(last_response.body).to include("web-node-1", Kaal::VERSION, "s ago")
      end

      it "shows claimed-never-dispatched pairs and recent failures on the problems page" do
        old = Time.now.to_i - 3600
        Kaal.backend.claim([["nightly-report", old]], lease_ms: 1000, node: "dead-node", now: old)
        Kaal.backend.claim([["off", old - 60]], lease_ms: 1000, node: "n2", now: old - 60)
        Kaal.backend.record("off", old - 60, "failed", node: "n2", error: "Boom: bad", now: old - 59)
        get "/kaal/problems"
        body = last_response.body
        expect(body).to include("dead-node", "Boom: bad")
        expect(body[/Claimed, never dispatched.*?Recent failures/m]).to include("dead-node")
      end

      it "lists pending delayed jobs and cancels one (POST with the CSRF token)" do
        Kaal.enqueue_at(at: Time.now + 3600, job_class: "WebSpecJob", job_id: "invoice-<7>", queue: "mail")
        get "/kaal/delayed"
        expect(last_response.body).to include("invoice-&lt;7&gt;", "WebSpecJob", "mail", "1 pending")
        post_action "/kaal/delayed/invoice-%3C7%3E/cancel"
        expect(last_response.status).to eq(303)
        expect(last_response.location).to start_with("/kaal/delayed?notice=")
        expect(Kaal.backend.delayed_count).to eq(0)
      end

      it "pages through pending delayed jobs with Later links (keyset cursor)" do
        at = Time.now + 3600
        %w[d1 d2 d3 d4 d5].each_with_index { |id, i| Kaal.enqueue_at(at: at + (i / 2), job_class: "WebSpecJob", job_id: id) }
        ids = []
        path = "/kaal/delayed"
        pages = 0
        while path
          get path
          pages += 1
          ids.concat(last_response.body.scan(/<td data-label="Job id">([^<]+)</).flatten)
          path = last_response.body[/<a href="([^"]+)" rel="next">Later/, 1]&.gsub("&amp;", "&")
        end
        expect(pages).to eq(3)
        expect(ids).to eq(%w[d1 d2 d3 d4 d5])
      end

      it "pauses and resumes a job; the pause is stored in the backend" do
        post_action "/kaal/jobs/nightly-report/pause"
        expect(last_response.status).to eq(303)
        expect(Kaal.jobs.find { |j| j[:key] == "nightly-report" }).to include(paused: true, enabled: false)
        follow_redirect!
        expect(last_response.body).to include("Paused nightly-report")
        expect(last_response.body).to include("paused at runtime")
        post_action "/kaal/jobs/nightly-report/resume"
        expect(Kaal.jobs.find { |j| j[:key] == "nightly-report" }).to include(paused: false, enabled: true)
      end

      it "refuses to resume a job its source disables, saying why" do
        post_action "/kaal/jobs/off/resume"
        follow_redirect!
        expect(last_response.body).to include("enabled: false there")
      end

      it "runs a job now once, under a manual log key and its own idempotency key" do
        post_action "/kaal/jobs/nightly-report/run"
        expect(last_response.status).to eq(303)
        args, = WebSpecJob::RUNS.pop(timeout: 5)
        expect(WebSpecJob::RUNS.size).to eq(0)
        rows = Kaal.dispatches(key: "kaal:manual:nightly-report")
        expect(rows.size).to eq(1)
        expect(rows.first).to include(status: "dispatched")
        expect(args.first).to eq(Kaal.idempotency_key("kaal:manual:nightly-report", rows.first[:fire_time]))
        expect(args.first).not_to eq(Kaal.idempotency_key("nightly-report", rows.first[:fire_time]))
        expect(Kaal.dispatches(key: "nightly-report")).to be_empty # no scheduled fire time taken
        get "/kaal/jobs/nightly-report"
        expect(last_response.body).to include("manual", "dispatched")
      end

      it "refuses a POST without the token, with a wrong token, or from another origin (403, nothing changes)" do
        token = csrf_token
        post "/kaal/jobs/nightly-report/pause"
        expect(last_response.status).to eq(403)
        post "/kaal/jobs/nightly-report/pause", { "_csrf" => "0" * 64 }
        expect(last_response.status).to eq(403)
        post_action "/kaal/jobs/nightly-report/pause", token: token, "Origin" => "http://evil.example"
        expect(last_response.status).to eq(403)
        expect(Kaal.jobs.find { |j| j[:key] == "nightly-report" }[:paused]).to be(false)
      end

      it "answers 404 for unknown pages and 405 for other methods" do
        get "/kaal/nope"
        expect(last_response.status).to eq(404)
        put "/kaal/"
        expect(last_response.status).to eq(405)
      end

      it "follows the read_only option when not given read_only:" do
        Kaal.configuration.read_only = true
        get "/kaal/"
        expect(last_response.body).not_to include("<form")
        Kaal.configuration.read_only = false
        get "/kaal/"
        expect(last_response.body).to include("<form")
      end

      context "when read_only" do
        let(:read_only) { true }

        it "renders no action and refuses every POST" do
          get "/kaal/"
          expect(last_response.body).not_to include("<form")
          expect(last_response.body).to include("read-only")
          post "/kaal/jobs/nightly-report/pause", { "_csrf" => "x" }
          expect(last_response.status).to eq(403)
          expect(Kaal.jobs.find { |j| j[:key] == "nightly-report" }[:paused]).to be(false)
        end
      end
    end
  end
end

RSpec.describe Kaal::ManualRun do
  after { Kaal.reset! }

  it "reserves the manual log-key prefix: no job may be registered under it" do
    expect { Kaal.register(key: "kaal:manual:x", cron: "@daily") { nil } }
      .to raise_error(Kaal::ConfigurationError, /kaal:manual:.*manual runs/)
  end

  it "dispatches at most once per job and second, even when asked twice" do
    runs = Queue.new
    Kaal.configure { |c| c.backend = :memory }
    Kaal.register(key: "twice", cron: "@daily") { |idempotency_key:| runs << idempotency_key }
    now = Time.at(1_800_000_000)
    first = Kaal.run_now("twice", now: now)
    second = Kaal.run_now("twice", now: now)
    expect([first.status, second.status]).to eq(%w[dispatched already_run])
    expect(runs.size).to eq(1)
    expect(runs.pop).to eq(first.idempotency_key)
    expect(Kaal.run_now("twice", now: now + 1).status).to eq("dispatched")
  end

  it "emits dispatch (and dispatch_failed) events for a manual run, under its log key" do
    Kaal.configure { |c| c.backend = :memory }
    Kaal.register(key: "fails", cron: "@daily") { raise "nope" }
    events = []
    sub = Kaal.subscribe("dispatch", "dispatch_failed") { |e| events << [e.name, e[:key], e[:kind], e[:status]] }
    expect(Kaal.run_now("fails").status).to eq("failed")
    Kaal.unsubscribe(sub)
    expect(events).to eq([["dispatch", "kaal:manual:fails", "manual", "failed"],
                          ["dispatch_failed", "kaal:manual:fails", "manual", "failed"]])
    expect(Kaal.dispatches(key: "kaal:manual:fails").first).to include(status: "failed", error: "RuntimeError: nope")
  end
end
