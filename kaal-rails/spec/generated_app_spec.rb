# frozen_string_literal: true

require "spec_helper"
require "erb"
require "yaml"

# A real Rails app (rails new --minimal) with kaal-rails, against SQLite,
# PostgreSQL and MySQL (trilogy): the generator, db:migrate, `kaal start`,
# bin/rails runner, Puma in cluster mode. Servers come from bin/services
# (KAAL_TEST_POSTGRES_URL, KAAL_TEST_MYSQL_URL).
RSpec.describe "kaal-rails in a generated app" do
  app = GeneratedApp

  describe "bin/rails generate kaal:install" do
    it "writes config/kaal.yml without a backend, the scheduler file and one migration per schema step" do
      # The fixture's scheduler file stands in for the user's: keep it aside.
      scheduler = File.read(app.path("config/kaal-scheduler.yml"))
      File.delete(app.path("config/kaal-scheduler.yml"))
      result = app.run!("bin/rails", "generate", "kaal:install")
      expect(result.out).to include("create  config/kaal.yml", "create  config/kaal-scheduler.yml",
                                    "db/migrate/", "create_kaal_tables.rb", "kaal_schema_step_2.rb")
      config = File.read(app.path("config/kaal.yml"))
      expect(config).not_to match(/^\s*backend:/)
      expect(YAML.safe_load(File.read(app.path("config/kaal-scheduler.yml")))["defaults"]["jobs"]).to eq([])
      migrations = Dir[app.path("db/migrate/*_create_kaal_tables.rb")]
      expect(migrations.size).to eq(1)
      expect(File.read(migrations.first)).to include("Kaal::Backend::Schema.statements(connection.adapter_name)")
      step2 = Dir[app.path("db/migrate/*_kaal_schema_step_2.rb")]
      expect(step2.size).to eq(1)
      expect(File.read(step2.first)).to include("class KaalSchemaStep2 <",
                                                "Kaal::Backend::Schema.step(2, connection.adapter_name)")
      expect(File.basename(step2.first)).to be > File.basename(migrations.first) # runs after step 1

      # Again: nothing duplicated; a file the user changed is not overwritten.
      File.write(app.path("config/kaal-scheduler.yml"), scheduler)
      again = app.run("bin/rails", "generate", "kaal:install")
      expect(again.output).to include("identical  config/kaal.yml").and include("skip  config/kaal-scheduler.yml")
      expect(again.output).to match(/identical\s+db\/migrate\/\d+_create_kaal_tables\.rb/)
      expect(again.output).to match(/identical\s+db\/migrate\/\d+_kaal_schema_step_2\.rb/)
      expect(Dir[app.path("db/migrate/*_create_kaal_tables.rb")].size).to eq(1)
      expect(File.read(app.path("config/kaal-scheduler.yml"))).to eq(scheduler)

      # An app installed before schema steps existed (only create_kaal_tables):
      # run again after upgrading kaal, it adds only the missing step.
      File.delete(step2.first)
      upgrade = app.run!("bin/rails", "generate", "kaal:install")
      expect(upgrade.out).to match(/identical\s+db\/migrate\/\d+_create_kaal_tables\.rb/)
      expect(upgrade.out).to match(/create\s+db\/migrate\/\d+_kaal_schema_step_2\.rb/)
      expect(Dir[app.path("db/migrate/*_kaal_schema_step_2.rb")].size).to eq(1)
      expect(Dir[app.path("db/migrate/*_create_kaal_tables.rb")]).to eq(migrations)
    end

    it "--backend=redis writes a Redis config and no migration; --database names the database.yml entry" do
      saved = %w[config/kaal.yml config/kaal-scheduler.yml].to_h { |f| [f, File.read(app.path(f))] }
      migrations = Dir[app.path("db/migrate/*")].sort
      redis = app.run!("bin/rails", "generate", "kaal:install", "--backend=redis", "--force")
      config = YAML.safe_load(ERB.new(File.read(app.path("config/kaal.yml"))).result)["defaults"]
      expect(config).to include("backend" => "redis", "backend_config" => { "url" => "redis://127.0.0.1:6379/0" })
      expect(redis.out).not_to include("bin/rails db:migrate")
      expect(Dir[app.path("db/migrate/*")].sort).to eq(migrations)

      app.run!("bin/rails", "generate", "kaal:install", "--database=primary", "--force")
      config = YAML.safe_load(File.read(app.path("config/kaal.yml")))["defaults"]
      expect(config).to include("database" => "primary")
      expect(config).not_to include("backend")
      expect(Dir[app.path("db/migrate/*")].sort).to eq(migrations)
    ensure
      saved&.each { |f, text| File.write(app.path(f), text) }
    end

    it "refuses an unknown --backend" do
      result = app.run("bin/rails", "generate", "kaal:install", "--backend=oracle", "--pretend")
      expect(result.output).to include("--backend must be one of sqlite, postgres, mysql, redis, memory")
    end
  end

  describe "the Railtie" do
    before { app.install! }

    it "sets kaal up with Rails.logger, the app's time zone and database, and starts no scheduler in a runner" do
      script = <<~RUBY
        c = Kaal.configuration
        puts JSON.generate(backend: c.backend, database: c.backend_config.dig(:connection, :database),
                           time_zone: c.time_zone, rails_logger: c.logger.equal?(Rails.logger),
                           wrapper: !c.job_wrapper.nil?, handlers: c.error_handlers.size,
                           running: Kaal.running?, embedded: Kaal::Rails::Embedded.active?,
                           jobs: Kaal.jobs.map { |j| [j[:key], j[:time_zone]] })
      RUBY
      result = app.run!("bin/rails", "runner", script, env: { "APP_TIME_ZONE" => "Eastern Time (US & Canada)" })
      seen = JSON.parse(result.out.lines.last)
      expect(seen).to include("backend" => "sqlite", "database" => app.path("storage/development.sqlite3"),
                              "time_zone" => "America/New_York", "rails_logger" => true, "wrapper" => true,
                              "running" => false, "embedded" => false, "jobs" => [["tick", "America/New_York"]])
      expect(seen["handlers"]).to be >= 1
    end

    it "runs plain Ruby jobs inside the executor and reports their errors through Rails.error (bin/rails kaal:tick)" do
      boom_log = app.path("tmp", "boom-#{SecureRandom.hex(3)}.log")
      error_log = app.path("tmp", "errors-#{SecureRandom.hex(3)}.log")
      result = app.run("bin/rails", "kaal:tick",
                       env: { "KAAL_SCHEDULER_CONFIG_PATH" => "config/kaal-scheduler-boom.yml",
                              "BOOM_LOG" => boom_log, "ERROR_LOG" => error_log })
      expect(result.output).to include("boom @ ").and include("failed")
      app.wait_for("BoomJob's run in #{boom_log}", timeout: 15) { File.exist?(boom_log) && File.exist?(error_log) }
      expect(File.read(boom_log)).to eq("executor active: true\n")
      reports = File.readlines(error_log).map { |line| JSON.parse(line) }
      expect(reports.size).to eq(1) # kaal's report, not the executor's as well
      expect(reports.first).to include("message" => "boom from BoomJob", "handled" => false, "severity" => "error",
                                "source" => "kaal", "key" => "boom", "job_class" => "BoomJob")
    end

    it "bin/rails kaal:status shows the settings and jobs" do
      result = app.run!("bin/rails", "kaal:status")
      expect(result.out).to include("backend", "sqlite", "tick")
    end
  end

  %w[sqlite postgres mysql].each do |dialect|
    describe "on #{dialect}" do
      dbs = GeneratedApp::Databases.new(dialect)

      before do
        app.install!
        next if dbs.available?
        raise "#{dialect}: test server not configured (KAAL_REQUIRE_SERVICES=1)" if ENV["KAAL_REQUIRE_SERVICES"] == "1"

        skip "start the test servers (bin/services start; source tmp/services/env) to run"
      end

      let(:tick_log) { app.path("tmp", "ticks-#{dialect}-#{SecureRandom.hex(3)}.log") }

      def ticks(path)
        return [] unless File.exist?(path)

        File.readlines(path, chomp: true).map(&:split)
      end

      it "db:migrate creates exactly the tables of `kaal migrate`; db/schema.rb and db/structure.sql round-trip them" do
        app.run!("bin/rails", "db:create", "db:migrate", env: { "DATABASE_URL" => dbs.url("main") })
        expect(File.read(app.path("db/schema.rb"))).to include('create_table "kaal_dispatches"')

        app.run!("bin/rails", "db:create", env: { "DATABASE_URL" => dbs.url("kaal") })
        migrated = app.run!("bundle", "exec", "kaal", "migrate", env: { "DATABASE_URL" => dbs.url("kaal") })
        expect(migrated.out).to include("migrated: backend #{dialect}")

        check = app.run!("bin/rails", "runner", "script/kaal_schema_check.rb",
                         dbs.url("main"), dbs.url("kaal"), dbs.url("ruby"), dbs.url("sql"),
                         env: { "DATABASE_URL" => dbs.url("main") })
        snapshots = JSON.parse(check.out.lines.last)
        reference = snapshots.fetch("kaal_migrate")
        expect(reference.keys).to eq(%w[kaal_delayed_jobs kaal_dispatches kaal_job_states kaal_nodes
                                        kaal_schedule_versions kaal_schedules kaal_schema_steps])
        expect(reference["kaal_schedules"]["primary_key"]).to eq(%w[namespace job_key])
        expect(reference["kaal_schedules"]["indexes"])
          .to eq([["index_kaal_schedules_on_namespace_and_version", %w[namespace version], false]])
        expect(reference["kaal_dispatches"]["primary_key"]).to eq(%w[namespace job_key fire_time])
        expect(reference["kaal_dispatches"]["indexes"])
          .to eq([["index_kaal_dispatches_on_namespace_and_fire_time", %w[namespace fire_time], false]])
        expect(snapshots["migrated"]).to eq(reference)
        expect(snapshots["schema_rb"]).to eq(reference)
        expect(snapshots["structure_sql"]).to eq(reference)
        expect(snapshots["structure_sql_text"]).to include("kaal_delayed_jobs")
      end

      it "`bundle exec kaal start` fires an ActiveJob every second, recorded in kaal_dispatches, " \
         "and runs a delayed job enqueued from bin/rails runner" do
        log = app.path("log", "kaal-start-#{dialect}.log")
        env = { "DATABASE_URL" => dbs.url("main"), "TICK_LOG" => tick_log }
        pid = app.spawn("bundle", "exec", "kaal", "start", log: log, env: env)
        begin
          app.wait_for(-> { "3 ticks in #{tick_log}; kaal start said:\n#{File.read(log) if File.exist?(log)}" }) do
            ticks(tick_log).map { |t| t[1] }.uniq.size >= 3
          end
          job_id = "reminder-#{SecureRandom.hex(4)}"
          app.run!("bin/rails", "runner",
                   "ActiveRecord::Base.transaction { Kaal.enqueue_at(at: Time.now + 1, job_class: 'TickJob', " \
                   "args: ['delayed', 0], job_id: '#{job_id}', connection: ActiveRecord::Base.connection) }",
                   env: env)
          app.wait_for(-> { "the delayed job in #{tick_log}; kaal start said:\n#{File.read(log)}" }) do
            ticks(tick_log).any? { |t| t[0] == "delayed" }
          end
        ensure
          status = app.stop(pid)
        end
        expect(status&.exitstatus).to eq(0), File.read(log)

        runs = ticks(tick_log).select { |t| t[0] == "tick" }
        fires = runs.map { |t| Integer(t[1]) }
        expect(fires.uniq.size).to eq(fires.size) # each (key, fire time) once
        expect(fires.max - fires.min).to be < 3 * fires.size # every second, not every tick only
        expect(runs.map { |t| t[3..4] }.uniq).to eq([%w[ticks 7]]) # queue and priority from the entry
        expect(runs.first[5]).to eq(Kaal.idempotency_key("tick", fires.first, namespace: "app"))
        rows = dbs.query("main", "SELECT fire_time, status FROM kaal_dispatches WHERE job_key = 'tick'")
        dispatched = rows.select { |r| r[1] == "dispatched" }.map { |r| Integer(r[0]) }
        expect(dispatched).to include(*fires)
        expect(dbs.query("main", "SELECT COUNT(*) FROM kaal_delayed_jobs").flatten.map(&:to_i)).to eq([0])
      end

      # Puma with `plugin :kaal` until the tick log has +fires+ fire times
      # and +nodes+ live kaal nodes; returns [tick lines, node ids, master pid].
      def run_puma(app, dbs, dialect, tick_log, fires:, nodes:, env: {})
        log = app.path("log", "puma-#{dialect}-#{SecureRandom.hex(3)}.log")
        env = { "DATABASE_URL" => dbs.url("main"), "TICK_LOG" => tick_log,
                "PUMA_SOCKET" => app.path("tmp", "puma-#{dialect}.sock"),
                "PUMA_PIDFILE" => app.path("tmp", "puma-#{dialect}.pid") }.merge(env)
        started = Time.now.to_i
        live = -> { dbs.query("main", "SELECT node FROM kaal_nodes WHERE last_seen >= #{started}").flatten }
        pid = app.spawn("bundle", "exec", "puma", "-C", "config/puma_kaal.rb", log: log, env: env)
        begin
          app.wait_for(-> { "#{fires} ticks and #{nodes} kaal nodes; puma said:\n#{File.read(log) if File.exist?(log)}" },
                       timeout: 60) do
            ticks(tick_log).map { |t| t[1] }.uniq.size >= fires && live.call.size >= nodes
          end
        ensure
          status = app.stop(pid)
        end
        # Puma ends with SIGTERM re-raised after its graceful stop.
        expect(status && (status.success? || status.termsig == Signal.list["TERM"])).to be(true), File.read(log)
        [ticks(tick_log).select { |t| t[0] == "tick" }, live.call, File.read(log)[/PID: (\d+)/, 1].to_i]
      end

      it "the Puma plugin runs the scheduler in each of 2 cluster workers, firing each pair once" do
        runs, nodes, master = run_puma(app, dbs, dialect, tick_log, fires: 4, nodes: 2)
        pairs = runs.map { |t| t[0..1] }
        expect(pairs.uniq.size).to eq(pairs.size)
        expect(runs.map { |t| t[2].to_i }).not_to include(master) # the workers run the jobs
        expect(nodes.map { |n| n.split(":")[-2] }.uniq.size).to be >= 2
      end

      if dialect == "sqlite"
        it "the Puma plugin in cluster mode without preload_app!, and in single mode" do
          runs, nodes, = run_puma(app, dbs, dialect, tick_log, fires: 3, nodes: 2, env: { "PUMA_PRELOAD" => "0" })
          expect(runs.map { |t| t[0..1] }.uniq.size).to eq(runs.size)
          expect(nodes.map { |n| n.split(":")[-2] }.uniq.size).to be >= 2

          single_log = "#{tick_log}.single"
          runs, _, master = run_puma(app, dbs, dialect, single_log, fires: 3, nodes: 1, env: { "PUMA_WORKERS" => "0" })
          expect(runs.map { |t| t[2].to_i }.uniq).to eq([master])
        end
      end

      it "before db:migrate, enqueueing and dispatching fail with an error naming bin/rails db:migrate" do
        env = { "DATABASE_URL" => dbs.url("bare") }
        app.run!("bin/rails", "db:create", env: env)
        enqueue = app.run("bin/rails", "runner",
                          "Kaal.enqueue_at(at: Time.now + 60, job_class: 'TickJob', job_id: 'x', " \
                          "connection: ActiveRecord::Base.connection)", env: env)
        expect(enqueue.success?).to be(false)
        expect(enqueue.err).to include("run `bin/rails db:migrate` to create kaal's tables")
        next if dialect == "sqlite" # kaal's SQLite backend creates its tables itself on first use

        tick = app.run("bundle", "exec", "kaal", "tick", env: env.merge("TICK_LOG" => tick_log))
        expect(tick.success?).to be(false)
        expect(tick.output).to include("run `bin/rails db:migrate` to create kaal's tables")
        plain = app.run("bin/rails", "runner",
                        "Kaal.enqueue_at(at: Time.now + 60, job_class: 'TickJob', job_id: 'x')", env: env)
        expect(plain.success?).to be(false)
        expect(plain.err).to include("run `bin/rails db:migrate` to create kaal's tables")
      end
    end
  end
end
