# frozen_string_literal: true

require "ferrum"
require "open3"
require "tmpdir"
require "fileutils"
require "timeout"

# The dashboard in a real browser: a real Puma on 127.0.0.1 serves
# Kaal::Web mounted at /kaal (config.ru `map "/kaal"`, as in the README)
# next to a running scheduler, over the memory and SQLite backends; headless
# Chromium clicks the buttons. The jobs append their runs to a file, which
# is how the specs observe the scheduler.
#
# KAAL_WEB_SCREENSHOT=docs/dashboard.png saves the jobs page there (the
# README's picture); otherwise it goes to tmp/.
RSpec.describe "Kaal::Web in a browser", :integration do
  CHROMIUM = %w[/usr/bin/chromium /usr/bin/chromium-browser].find { |p| File.executable?(p) }
  ROOT = File.expand_path("../..", __dir__)

  CONFIG_RU = <<~'RUBY'
    $LOAD_PATH.unshift(File.join(ENV.fetch("KAAL_WEB_ROOT"), "lib"))
    require "kaal/web"

    RUNS = ENV.fetch("KAAL_WEB_RUNS")
    class BrowserJob
      def self.perform(key, fire, idempotency_key)
        File.open(RUNS, "a") { |f| f.flock(File::LOCK_EX); f.puts("#{key} #{fire} #{idempotency_key}") }
      end
    end
    class ReportJob < BrowserJob; end
    module Billing; class InvoiceJob < BrowserJob; end; end

    Kaal.configure do |c|
      c.backend = ENV.fetch("KAAL_WEB_BACKEND")
      c.backend_config = { path: ENV.fetch("KAAL_WEB_DB") } if c.backend.to_s == "sqlite"
      c.namespace = "shop"
      c.tick_interval = 1
    end
    Kaal.backend.migrate
    args = ["{{key}}", "{{fire_time.unix}}", "{{idempotency_key}}"]
    Kaal.register(key: "heartbeat", cron: "* * * * * *", job_class: BrowserJob, args: args)
    Kaal.register(key: "sync-inventory", cron: "*/2 * * * * *", job_class: BrowserJob, args: args)
    Kaal.register(key: "nightly-report", cron: "30 2 * * *", job_class: ReportJob, args: args, queue: "reports")
    Kaal.register(key: "weekly-digest", cron: "0 9 * * MON", time_zone: "Europe/Berlin", job_class: BrowserJob, args: args)
    Kaal.register(key: "invoices:monthly", cron: "0 6 1 * *", time_zone: "America/New_York", job_class: Billing::InvoiceJob,
                  args: args, queue: "billing")
    Kaal.register(key: "cleanup-sessions", cron: "15 */4 * * *", job_class: BrowserJob, args: args, enabled: false)
    Kaal.enqueue_at(at: Time.now + 3600, job_class: "Billing::InvoiceJob", job_id: "invoice-1042", queue: "billing",
                    args: [1042]) if Kaal.backend.delayed_count.zero?
    Kaal.start!
    at_exit { Kaal.stop!(timeout: 5) }

    map("/kaal") { run Kaal::Web }
  RUBY

  def runs
    File.exist?(@runs) ? File.readlines(@runs, chomp: true).map { |l| l.split(" ") } : []
  end

  def runs_of(key)
    runs.select { |k, _| k == key }
  end

  # The scheduler has run the every-second heartbeat job for a fire time at or after t.
  def wait_for_scheduler_past(t, timeout: 30)
    wait_until("the scheduler to run heartbeat at or after #{t}", timeout: timeout, interval: 0.1) do
      runs_of("heartbeat").any? { |_, fire, _| fire.to_i >= t }
    end
  end

  def start_puma(kind)
    env = { "KAAL_WEB_ROOT" => ROOT, "KAAL_WEB_RUNS" => @runs, "KAAL_WEB_BACKEND" => kind.to_s,
            "KAAL_WEB_DB" => File.join(@dir, "kaal.sqlite3"), "RACK_ENV" => "production" }
    cmd = ["bundle", "exec", "puma", "--bind", "tcp://127.0.0.1:0", "--threads", "1:4", "--environment", "production",
           File.join(@dir, "config.ru")]
    stdin, @out, @puma = Open3.popen2e(env, *cmd, chdir: ROOT)
    stdin.close
    @log = +""
    Timeout.timeout(60) do
      until (port = @log[%r{Listening on http://127\.0\.0\.1:(\d+)}, 1])
        line = @out.gets or raise "puma exited before listening:\n#{@log}"
        @log << line
      end
      @base = "http://127.0.0.1:#{port}/kaal"
    end
    @drain = Thread.new { IO.copy_stream(@out, File::NULL) }
  end

  def stop_puma
    return unless @puma

    Process.kill("TERM", @puma.pid)
    Timeout.timeout(20) { @puma.value }
  rescue Timeout::Error
    Process.kill("KILL", @puma.pid)
    @puma.value
  ensure
    @drain&.join(5)
    @out&.close
  end

  def visit(path)
    @browser.goto("#{@base}#{path}")
    expect(@browser.network.status).to eq(200)
  end

  def click_in_row(key, label)
    button = wait_until("a #{label} button in the row of #{key}") do
      @browser.at_xpath(%(//tr[.//a[normalize-space()="#{key}"]]//button[normalize-space()="#{label}"]))
    end
    button.click
    wait_until("the notice after #{label} on #{key}") { @browser.at_css("p.notice")&.text }
  end

  %i[memory sqlite].each do |kind|
    context "over the #{kind} backend" do
      before do
        skip "Debian's chromium is not installed (bin/setup installs it)" unless CHROMIUM || ENV["KAAL_REQUIRE_SERVICES"] == "1"
        @dir = Dir.mktmpdir("kaal-web-browser")
        @runs = File.join(@dir, "runs.log")
        File.write(File.join(@dir, "config.ru"), CONFIG_RU)
        start_puma(kind)
        @browser = Ferrum::Browser.new(browser_path: CHROMIUM, headless: true, window_size: [1360, 900], timeout: 30,
                                       process_timeout: 30, browser_options: { "no-sandbox" => nil })
      end

      after do
        @browser&.quit
        stop_puma
        FileUtils.rm_rf(@dir) if @dir
      end

      it "lists the jobs, pauses a job so it stops firing, runs a job now once, and loads nothing from elsewhere" do
        visit("/")
        keys = @browser.css("table.jobs a.key").map(&:text)
        expect(keys).to eq(%w[cleanup-sessions heartbeat invoices:monthly nightly-report sync-inventory weekly-digest])
        expect(@browser.body).to include("At 02:30 every day").or include("At 02:30")

        # Pause: the running scheduler stops firing the job.
        wait_until("sync-inventory to run", timeout: 30, interval: 0.1) { runs_of("sync-inventory").any? }
        notice = click_in_row("sync-inventory", "Pause")
        expect(notice).to include("Paused sync-inventory")
        paused_at = Time.now.to_i
        expect(@browser.at_xpath(%(//tr[.//a[normalize-space()="sync-inventory"]]//td[contains(@class,"state")])).text)
          .to include("paused")
        wait_for_scheduler_past(paused_at + 4)
        late = runs_of("sync-inventory").select { |_, fire, _| fire.to_i > paused_at }
        expect(late).to be_empty, "sync-inventory ran after its pause: #{late.inspect}"

        # Run now: one dispatch, with the manual run's own idempotency key.
        notice = click_in_row("nightly-report", "Run now")
        expect(notice).to include("Ran nightly-report now")
        wait_until("the manual run of nightly-report", timeout: 15, interval: 0.1) { runs_of("nightly-report").any? }
        asked = Time.now.to_i
        wait_for_scheduler_past(asked + 2)
        manual = runs_of("nightly-report")
        expect(manual.size).to eq(1)
        _, fire, idem = manual.first
        expect(idem).to eq(Kaal::Native.idempotency_key("shop", "kaal:manual:nightly-report", fire.to_i))
        expect(runs.map(&:last).uniq.size).to eq(runs.size) # no idempotency key ran twice

        visit("/jobs/nightly-report")
        expect(@browser.at_css("table.log tbody").text).to include("manual", "dispatched")

        # Every request the pages made went to this server.
        visit("/")
        urls = @browser.network.traffic.map { |ex| ex.request&.url }.compact
        expect(urls).to all(start_with("http://127.0.0.1:"))

        if kind == :memory
          shot = ENV["KAAL_WEB_SCREENSHOT"] || File.join(ROOT, "tmp", "dashboard.png")
          FileUtils.mkdir_p(File.dirname(shot))
          @browser.screenshot(path: shot, full: true)
          @browser.resize(width: 390, height: 844)
          @browser.screenshot(path: shot.sub(/\.png\z/, "-phone.png"), full: true) if ENV["KAAL_WEB_SCREENSHOT"]
        end
      end
    end
  end
end
