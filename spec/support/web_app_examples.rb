# frozen_string_literal: true

require_relative "web_app"

# What every web framework integration (kaal-sinatra, kaal-roda,
# kaal-hanami) must do with a real Puma, against real Redis and PostgreSQL.
# The including group defines `app_files`: a callable taking the Ruby source
# of the app's requires and of the `kaal` call's arguments and returning the
# app's files ({ "config.ru" => "...", ... }); its routes answer GET / with
# "ok" and GET /kaal with KaalStatus.line (from jobs.rb).
#
#   RSpec.describe "kaal-roda under Puma" do
#     let(:app_files) { ->(requires, kaal_args) { { "config.ru" => ..., "app.rb" => ... } } }
#     it_behaves_like "kaal in a Puma-served app"
#   end
#
# cluster: false runs the single-mode examples only (for a second style of
# the same framework).
RSpec.shared_examples "kaal in a Puma-served app" do |cluster: true|
  web = Kaal::Spec::WebApp

  before { @web_apps = [] }

  after do |example|
    if example.exception
      @web_apps.each { |a| warn "\n#{example.full_description}: #{a.log_tail(80)}" }
    end
    @web_apps.each(&:cleanup)
  end

  def web_app(backend, files: {})
    reason = Kaal::Spec::WebApp.unavailable_reason(backend)
    if reason
      raise reason if ENV["KAAL_REQUIRE_SERVICES"] == "1"

      skip reason
    end
    namespace = "spec-#{SecureRandom.hex(4)}"
    Kaal::Spec::WebApp.migrate(backend, namespace)
    args = Kaal::Spec::WebApp.kaal_args(backend, namespace: namespace)
    app = Kaal::Spec::WebApp.new(app_files.call(Kaal::Spec::WebApp.requires(backend), args).merge(files))
    @web_apps << app
    [app, namespace]
  end

  %i[memory redis postgres].each do |backend|
    it "single mode, #{backend}: fires the scheduler file's job every second in the Puma process, " \
       "answers HTTP meanwhile, stops the scheduler on TERM" do
      app, namespace = web_app(backend)
      app.start
      app.wait_for_fires(3)

      expect(app.get("/").body).to eq("ok")
      # the option wins over config/kaal.yml's namespace; its tick_interval is read
      expect(app.get("/kaal").body).to eq("#{backend} #{namespace} tick=1 running")
      expect(app.fires.map(&:pid).uniq).to eq([app.pid.to_s])
      expect(app.fires.map(&:key).uniq).to eq([web::JOB_KEY])
      expect(app.duplicates).to eq([])

      expect(app.stop).to be_success
      expect(app.log).to include("scheduler stopped")
    end
  end

  if cluster
    %i[redis postgres].product([false, true]).each do |backend, preload|
      mode = preload ? "preload_app! and Kaal::Integration.after_fork in before_worker_boot" : "no preload"
      nodes = preload ? 3 : 2 # preloaded: the master runs one too
      it "cluster mode, 2 workers, #{mode}, #{backend}: #{nodes} nodes, each (key, fire time) runs once" do
        app, = web_app(backend)
        app.start(workers: 2, preload: preload, worker_boot: preload ? "Kaal::Integration.after_fork" : nil)
        app.wait_until(web::BOOT_TIMEOUT, "#{nodes} schedulers to start") { app.log.scan("scheduler started").size >= nodes }
        app.wait_for_fires(6)

        expect(app.get("/").body).to eq("ok")
        expect(app.stop).to be_success
        expect(app.log.lines.grep(/scheduler (started|stopped)|Worker|kaal/).reject { |l| l.include?("dispatched in") })
          .to satisfy("#{nodes} schedulers started and stopped") { |lines|
            lines.grep(/scheduler started/).size == nodes && lines.grep(/scheduler stopped/).size == nodes
          }
        expect(app.duplicates).to eq([])
        expect(app.fire_times.size).to be >= 6
      end
    end

    [false, true].each do |preload|
      mode = preload ? "preload_app! and Kaal::Integration.after_fork" : "no preload"
      it "cluster mode, 2 workers, #{mode}, memory: one process runs the scheduler, the others say why not" do
        app, = web_app(:memory)
        app.start(workers: 2, preload: preload, worker_boot: preload ? "Kaal::Integration.after_fork" : nil)
        app.wait_for_fires(4)
        refusals = preload ? 2 : 1
        app.wait_until(web::FIRE_TIMEOUT, "#{refusals} processes to log why they run no scheduler") do
          app.log.scan("use a shared backend").size == refusals
        end

        expect(app.fires.map(&:pid).uniq.size).to eq(1)
        expect(app.fires.first.pid).to eq(app.pid.to_s) if preload
        expect(app.duplicates).to eq([])
        expect(app.get("/").body).to eq("ok")
        expect(app.stop).to be_success
        expect(app.log.scan("scheduler started").size).to eq(1)
      end
    end
  end

  it "a broken scheduler file stops the boot with an error naming file, job and field" do
    app, = web_app(:memory, files: { "config/kaal-scheduler.yml" => web::BROKEN_SCHEDULER_YML })
    status = app.start_expecting_exit

    expect(status).not_to be_success
    expect(app.log).to include(File.join(app.dir, "config", "kaal-scheduler.yml"))
      .and include("spec:broken")
      .and include("cron")
    expect(app.log).to include("Kaal::ConfigurationError")
  end
end

# The configuration surface of a framework's kaal call, in the spec process
# (no server). The including group defines `configure_app`: a callable taking
# the app root and the options and calling the framework's kaal DSL for a
# fresh app whose root is that directory.
RSpec.shared_examples "a kaal configuration DSL" do
  web = Kaal::Spec::WebApp

  around do |example|
    Dir.mktmpdir("kaal-dsl-") do |dir|
      @root = dir
      FileUtils.mkdir_p(File.join(dir, "config"))
      File.write(File.join(dir, "config", "kaal.yml"), web::KAAL_YML)
      File.write(File.join(dir, "config", "kaal-scheduler.yml"), web::SCHEDULER_YML)
      example.run
    ensure
      Kaal.reset!
    end
  end

  it "reads config/kaal.yml and loads the scheduler file from the app's root" do
    config = configure_app.call(@root)

    expect(config).to equal(Kaal.configuration)
    expect(config.namespace).to eq("from-kaal-yml")
    expect(config.tick_interval).to eq(1)
    expect(config.scheduler_config_path).to eq(File.join(@root, "config", "kaal-scheduler.yml"))
    expect(Kaal.jobs.map { |j| j[:key] }).to eq([web::JOB_KEY])
    expect(Kaal.running?).to be(false)
  end

  it "lets the options win over config/kaal.yml" do
    config = configure_app.call(@root, namespace: "from-option", tick_interval: 2)

    expect([config.namespace, config.tick_interval]).to eq(["from-option", 2])
  end

  it "refuses an unknown option, naming it" do
    expect { configure_app.call(@root, namspace: "typo") }
      .to raise_error(Kaal::ConfigurationError, /namspace/)
  end

  it "refuses redis: and database: together" do
    expect { configure_app.call(@root, redis: Object.new, database: Object.new) }
      .to raise_error(Kaal::ConfigurationError, /redis:.*database:/)
  end

  it "refuses a scheduler_config_path that does not exist, naming it" do
    expect { configure_app.call(@root, scheduler_config_path: "config/missing.yml") }
      .to raise_error(Kaal::ConfigurationError, %r{#{Regexp.escape(File.join(@root, "config", "missing.yml"))}})
  end

  it "fails on a broken scheduler file, naming file, job and field" do
    File.write(File.join(@root, "config", "kaal-scheduler.yml"), web::BROKEN_SCHEDULER_YML)

    expect { configure_app.call(@root) }.to raise_error(Kaal::ConfigurationError) { |e|
      expect(e.message).to include(File.join(@root, "config", "kaal-scheduler.yml"), "spec:broken", "cron")
    }
  end

  context "with a Sequel::Database (PostgreSQL)" do
    before do
      reason = web.unavailable_reason(:postgres)
      raise reason if reason && ENV["KAAL_REQUIRE_SERVICES"] == "1"

      skip reason if reason
      require "sequel"
      @db = Sequel.connect(ENV.fetch("KAAL_TEST_POSTGRES_URL"))
    end

    after { @db&.disconnect }

    it "infers the backend from the database when adapter: is omitted" do
      expect(configure_app.call(@root, database: @db).backend).to eq("postgres")
      expect(configure_app.call(@root, database: @db, adapter: "postgres").backend).to eq("postgres")
    end

    it "refuses an adapter: that contradicts the database" do
      expect { configure_app.call(@root, database: @db, adapter: "mysql") }
        .to raise_error(Kaal::ConfigurationError, /adapter: "mysql" contradicts/)
    end
  end
end
