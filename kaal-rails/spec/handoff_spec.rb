# frozen_string_literal: true

require "spec_helper"

# The exactly-once hand-off to a SQL job queue (docs/guarantee.md) in the
# generated app: `kaal start` claims each run and enqueues its job in one
# transaction on the queue's Active Record connection; the queue's own worker
# (bin/rails solid_queue:start, good_job start) runs the jobs. A node SIGKILLed
# mid-run leaves no pair claimed without its job.
RSpec.describe "exactly-once hand-off in a generated app" do
  app = GeneratedApp

  solid_queue = { table: "solid_queue_jobs", class_column: "class_name", worker: %w[bin/rails solid_queue:start] }
  [
    ["solid_queue", solid_queue.merge(dialect: "sqlite")],
    # INSERT IGNORE instead of ON CONFLICT DO NOTHING: the transaction example only (bin/test's time)
    ["solid_queue", solid_queue.merge(dialect: "mysql", only: :transaction)],
    ["good_job", { dialect: "postgres", table: "good_jobs", class_column: "job_class",
                   worker: %w[bundle exec good_job start] }]
  ].each do |adapter, setup|
    describe "#{adapter} on #{setup[:dialect]}" do
      dbs = GeneratedApp::Databases.new(setup[:dialect])

      before do
        app.install!
        next if dbs.available?
        raise "#{setup[:dialect]}: test server not configured (KAAL_REQUIRE_SERVICES=1)" if ENV["KAAL_REQUIRE_SERVICES"] == "1"

        skip "start the test servers (bin/services start; source tmp/services/env) to run"
      end

      let(:handoff_log) { app.path("tmp", "handoff-#{adapter}-#{setup[:dialect]}-#{SecureRandom.hex(3)}.log") }
      let(:db) { "handoff_#{SecureRandom.hex(3)}" } # a database per example: its queue holds only its jobs
      let(:env) do
        { "DATABASE_URL" => dbs.url(db), "APP_QUEUE_ADAPTER" => adapter, "HANDOFF_LOG" => handoff_log,
          "KAAL_SCHEDULER_CONFIG_PATH" => "config/kaal-scheduler-handoff.yml", "GOOD_JOB_EXECUTION_MODE" => "external",
          "KAAL_NAMESPACE" => "handoff-#{SecureRandom.hex(3)}" }
      end

      def runs(path)
        File.exist?(path) ? File.readlines(path, chomp: true).map(&:split) : []
      end

      def rows(dbs, db, env)
        dbs.query(db, "SELECT fire_time, status, node FROM kaal_dispatches WHERE namespace = '#{env["KAAL_NAMESPACE"]}'")
      end

      unless setup[:only]
        it "claims and enqueues each run in one transaction; the #{adapter} worker runs each once, also across a SIGKILL" do
          app.run!("bin/rails", "db:create", "db:migrate", env: env)
          app.run!("bin/rails", "runner", "script/handoff_queue_schema.rb", env: env)
          log = app.path("log", "kaal-handoff-#{adapter}-#{setup[:dialect]}.log")
          dispatched = ->(n) { rows(dbs, db, env).count { |r| r[1] == "dispatched" } >= n }

          pid = app.spawn("bundle", "exec", "kaal", "start", log: log, env: env)
          app.wait_for(-> { "3 handed-off runs; kaal start said:\n#{File.read(log)}" }, timeout: 60) { dispatched.(3) }
          Process.kill("KILL", -pid) # the node dies between two ticks, or in one
          app.wait_pid(pid, 10)
          before = rows(dbs, db, env).size
          pid = app.spawn("bundle", "exec", "kaal", "start", log: log, env: env)
          begin
            app.wait_for(-> { "more runs after the restart; kaal start said:\n#{File.read(log)}" }, timeout: 60) do
              dispatched.(before + 3)
            end
          ensure
            status = app.stop(pid)
          end
          expect(status&.exitstatus).to eq(0), File.read(log)

          logged = rows(dbs, db, env)
          expect(logged.map { |r| r[1] }.uniq).to eq(["dispatched"]) # never "claimed": claim and job are one step
          fires = logged.map { |r| Integer(r[0]) }.sort
          expect(fires).to eq(fires.uniq)
          queued = dbs.query(db, "SELECT COUNT(*) FROM #{setup[:table]} WHERE #{setup[:class_column]} = 'HandoffJob'")
          expect(queued.flatten.map(&:to_i)).to eq([fires.size]) # one job row per claim row, no more, no less

          worker_log = app.path("log", "#{adapter}-#{setup[:dialect]}-worker.log")
          worker = app.spawn(*setup[:worker], log: worker_log, env: env)
          begin
            app.wait_for(-> { "the #{adapter} worker to run #{fires.size} jobs:\n#{File.read(worker_log)}" }, timeout: 90) do
              runs(handoff_log).size >= fires.size
            end
          ensure
            app.stop(worker)
          end
          ran = runs(handoff_log)
          # one job per pair; the queue itself may run a job twice (solid_queue
          # on SQLite: a worker that dies of "database is locked" after the
          # job ran has its claim released and the job run again, same job id)
          by_fire = ran.group_by { |r| Integer(r[1]) }
          expect(by_fire.keys.sort).to eq(fires)
          expect(by_fire.transform_values { |rs| rs.map { |r| r[3] }.uniq.size }.values.uniq).to eq([1]), ran.inspect
          expect(ran.map { |r| r[0] }.uniq).to eq(["handoff"])
          ran.each { |r| expect(r[4]).to eq(Kaal.idempotency_key("handoff", Integer(r[1]), namespace: env["KAAL_NAMESPACE"])) }
          expect(ran.map { |r| r[2] }.uniq).not_to include(pid.to_s) # run by the worker, not by kaal
        end
      end

      it "writes the job row inside the transaction that writes the claim row (#{adapter})" do
        app.run!("bin/rails", "db:create", "db:migrate", env: env)
        app.run!("bin/rails", "runner", "script/handoff_queue_schema.rb", env: env)
        result = app.run!("bin/rails", "runner", "script/handoff_tick.rb", env: env)
        seen = JSON.parse(result.out.lines.last)
        expect(seen).to include("statuses" => ["dispatched"], "handoff" => "atomic")
        statements = seen["statements"]
        kaal = statements.index("kaal")
        job = statements.index("job")
        expect(kaal).not_to be_nil, statements.inspect
        expect(job).not_to be_nil, statements.inspect
        opened = statements[0...kaal].rindex { |k| %w[begin savepoint].include?(k) }
        closed = statements.each_index.find { |i| i > job && %w[commit release].include?(statements[i]) }
        expect(opened).not_to be_nil, statements.inspect
        expect(kaal).to be < job
        expect(closed).not_to be_nil, statements.inspect
        # nothing closes the transaction between the claim row and the job row
        expect(statements[kaal..job]).not_to include("commit", "release", "rollback"), statements.inspect
      end

      unless setup[:only]
        it "hands a tick's runs off in one transaction, a failed enqueue rolling back its own run only (#{adapter})" do
          batch = env.merge("KAAL_SCHEDULER_CONFIG_PATH" => "config/kaal-scheduler-handoff-batch.yml")
          app.run!("bin/rails", "db:create", "db:migrate", env: batch)
          app.run!("bin/rails", "runner", "script/handoff_queue_schema.rb", env: batch)
          result = app.run!("bin/rails", "runner", "script/handoff_tick.rb", env: batch)
          seen = JSON.parse(result.out.lines.last)
          expect(seen["statuses"].sort).to eq(%w[dispatched dispatched failed]), seen.inspect
          statements = seen["statements"]
          # one transaction holds the three claims; only the broken run's
          # savepoint (the second run's: Active Record leaves out the first
          # run's savepoint and would restart the whole transaction) is
          # rolled back
          first = statements.index("begin")
          last = statements.index("commit")
          expect(first).not_to be_nil, statements.inspect
          expect(last).not_to be_nil, statements.inspect
          chunk = statements[first..last]
          expect(chunk.count("kaal")).to eq(3), statements.inspect
          expect(chunk.count("rollback_to")).to eq(1), statements.inspect
          expect(chunk).not_to include("rollback"), statements.inspect

          logged = dbs.query(db, "SELECT job_key, status FROM kaal_dispatches WHERE namespace = '#{env["KAAL_NAMESPACE"]}'")
          expect(logged.map { |k, st| [k, st] }.sort).to eq([%w[handoff dispatched], %w[handoff-broken failed],
                                                             %w[handoff-z dispatched]])
          queued = dbs.query(db, "SELECT COUNT(*) FROM #{setup[:table]} WHERE #{setup[:class_column]} = 'HandoffJob'")
          expect(queued.flatten.map(&:to_i)).to eq([2])
        end

        it "refuses to start when kaal's backend is another database than the #{adapter} queue's" do
          other = setup[:dialect] == "sqlite" ? "sqlite3:#{app.path("storage", "other-#{SecureRandom.hex(3)}.sqlite3")}" : dbs.url("other")
          app.run!("bin/rails", "db:create", "db:migrate", env: env.merge("DATABASE_URL" => other)) # kaal's tables there
          app.run!("bin/rails", "db:create", "db:migrate", env: env)
          result = app.run("bundle", "exec", "kaal", "start", env: env.merge("KAAL_BACKEND_URL" => other), timeout: 60)
          expect(result.status.exitstatus).to eq(2), result.output
          expect(result.output).to include('job "handoff"', "handoff: atomic is not possible: HandoffJob is queued by #{adapter}",
                                           "claim and job must be in one database")
        end
      end
    end
  end
end
