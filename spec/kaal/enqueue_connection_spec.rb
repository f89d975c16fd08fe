# frozen_string_literal: true

require "securerandom"
require "tmpdir"

# Kaal::Backend::Schema.enqueue_through writes a delayed job through the
# application's own connection (Active Record or Sequel), so the job exists
# exactly when the application's transaction commits. Runs on SQLite always
# and on PostgreSQL / MySQL when their test servers are configured.
RSpec.describe "Enqueue through the caller's connection" do
  schema = Kaal::Backend::Schema

  # [dialect, env var holding the server URL (nil: a temp SQLite file)]
  dialects = [["sqlite", nil], ["postgres", "KAAL_TEST_POSTGRES_URL"], ["mysql", "KAAL_TEST_MYSQL_URL"]]

  def self.ar_config(dialect, url, path, mysql_adapter = "mysql2")
    case dialect
    when "sqlite" then { adapter: "sqlite3", database: path }
    when "postgres" then { url: url.sub(%r{\Apostgres(ql)?://}, "postgresql://") }
    else { url: url.sub(%r{\A(mysql|mariadb)://}, "#{mysql_adapter}://") }
    end
  end

  def self.sequel_url(dialect, url, path)
    case dialect
    when "sqlite" then "sqlite://#{path}"
    when "postgres" then url.sub(%r{\Apostgresql://}, "postgres://")
    else url.sub(%r{\A(mysql|mariadb)://}, "mysql2://")
    end
  end

  dialects.each do |dialect, env|
    describe "on #{dialect}" do
      let(:namespace) { "kaal-enq-#{SecureRandom.hex(4)}" }
      let(:url) { env && ENV.fetch(env, nil) }
      let(:backend) do
        config = dialect == "sqlite" ? { path: @path } : { url: url }
        @backend = Kaal::Backend.build(dialect.to_sym, namespace: namespace, config: config)
      end
      let(:now_ms) { (Time.now.to_f * 1000).to_i }
      let(:due_ms) { now_ms - 1000 }
      let(:job) do
        { dialect: dialect, namespace: namespace, run_at_ms: due_ms, job_class: "ReceiptJob",
          queue: "mail", args_json: '[42,"x"]' }
      end

      temp_sqlite_file "kaal-enq", "app.sqlite3"

      before do
        skip "#{dialect} backend not built" unless Kaal::Native.backends.include?(dialect)
        if env && (url.nil? || url.empty?)
          raise "#{env} is not set (KAAL_REQUIRE_SERVICES=1)" if ENV["KAAL_REQUIRE_SERVICES"] == "1"

          skip "set #{env} (bin/services start #{dialect}) to run"
        end
        backend.migrate
      end

      after do
        @backend&.close
      end

      def pending_ids
        backend.delayed_list(limit: 100).map { |j| j[:job_id] }.sort
      end

      # The same through either library. The group defines conn (what
      # enqueue_through gets), in_transaction { ... } (a transaction on it) and
      # rollback (the exception that rolls one back quietly).
      shared_examples "enqueue through the application's connection" do |id|
        it "stores the job when the transaction commits, and kaal claims it once" do
          in_transaction { schema.enqueue_through(conn, job_id: "#{id}-1", **job) }

          expect(pending_ids).to eq(["#{id}-1"])
          claimed = backend.delayed_claim(now_ms: now_ms, limit: 10)
          expect(claimed.size).to eq(1)
          expect(claimed[0]).to include(job_id: "#{id}-1", job_class: "ReceiptJob",
                                        queue: "mail", args_json: '[42,"x"]', run_at_ms: due_ms)
          expect(backend.delayed_claim(now_ms: now_ms, limit: 10)).to be_empty
        end

        it "stores nothing when the transaction rolls back" do
          in_transaction do
            schema.enqueue_through(conn, job_id: "#{id}-2", **job)
            raise rollback
          end

          expect(pending_ids).to be_empty
          expect(backend.delayed_claim(now_ms: now_ms, limit: 10)).to be_empty
        end

        it "raises Kaal::DuplicateJobError for a pending job_id and keeps the transaction usable" do
          schema.enqueue_through(conn, job_id: "#{id}-3", **job)

          in_transaction do
            expect { schema.enqueue_through(conn, job_id: "#{id}-3", **job, run_at_ms: 1) }
              .to raise_error(Kaal::DuplicateJobError, /#{id}-3/)
            schema.enqueue_through(conn, job_id: "#{id}-4", **job)
          end

          expect(pending_ids).to eq(["#{id}-3", "#{id}-4"])
          expect(backend.delayed_list(limit: 10).find { |j| j[:job_id] == "#{id}-3" }[:run_at_ms])
            .to eq(due_ms)
        end

        it "accepts the id again once the job was claimed" do
          schema.enqueue_through(conn, job_id: "#{id}-5", **job)
          expect(backend.delayed_claim(now_ms: now_ms, limit: 10).size).to eq(1)

          schema.enqueue_through(conn, job_id: "#{id}-5", **job)
          expect(pending_ids).to eq(["#{id}-5"])
        end
      end

      (dialect == "mysql" ? %w[mysql2 trilogy] : [nil]).each do |mysql_adapter|
        describe "with Active Record#{" (#{mysql_adapter})" if mysql_adapter}" do
          let(:model) do
            require "active_record"
            klass = Class.new(ActiveRecord::Base) { self.abstract_class = true }
            # A named abstract class: Active Record keys connection pools by name.
            stub_const("KaalEnqueueSpecRecord#{SecureRandom.hex(4)}", klass)
            klass.establish_connection(self.class.ar_config(dialect, url, @path, *mysql_adapter))
            @model = klass
          end
          let(:conn) { model.lease_connection }
          let(:rollback) { ActiveRecord::Rollback }

          after { @model&.remove_connection }

          def in_transaction(&block) = model.transaction(&block)

          it_behaves_like "enqueue through the application's connection", "receipt"

          it "accepts the model class and sees a job enqueued through kaal as a duplicate" do
            backend.delayed_add(job_id: "from-kaal", run_at_ms: due_ms, job_class: "X", args_json: "[]")
            expect { schema.enqueue_through(model, job_id: "from-kaal", **job) }
              .to raise_error(Kaal::DuplicateJobError)
            schema.enqueue_through(model, job_id: "via-class", **job, queue: nil)
            expect(pending_ids).to eq(%w[from-kaal via-class])
          end
        end
      end

      describe "with Sequel" do
        let(:conn) do
          require "sequel"
          @db = Sequel.connect(self.class.sequel_url(dialect, url, @path))
        end
        let(:rollback) { Sequel::Rollback }

        after { @db&.disconnect }

        def in_transaction(&block) = conn.transaction(&block)

        it_behaves_like "enqueue through the application's connection", "s"
      end
    end
  end

  describe "Kaal.enqueue_at(connection:) on the sqlite backend" do
    temp_sqlite_file "kaal-enq-api", "app.sqlite3"
    after { Kaal.reset! }

    before do
      skip "sqlite backend not built" unless Kaal::Native.backends.include?("sqlite")
      require "active_record"
      stub_const("KaalEnqueueApiJob", Class.new { def self.perform(*args) = (@ran ||= []) << args })
      Kaal.configure do |c|
        c.backend = :sqlite
        c.backend_config = { path: @path }
        c.namespace = "kaal-enq-api-#{SecureRandom.hex(3)}"
        c.logger = Logger.new(File::NULL)
      end
      Kaal::Backend.build(:sqlite, namespace: "x", config: { path: @path }).migrate.close
      @model = stub_const("KaalEnqueueApiRecord", Class.new(ActiveRecord::Base) { self.abstract_class = true })
      @model.establish_connection(adapter: "sqlite3", database: @path)
    end

    after { @model&.remove_connection }

    it "runs a job committed with the caller's transaction, and never one rolled back" do
      @model.transaction do
        Kaal.enqueue_at(at: Time.now - 1, job_class: "KaalEnqueueApiJob", args: [7, "a"], job_id: "kept",
                        connection: @model.lease_connection)
      end
      @model.transaction do
        Kaal.enqueue_at(at: Time.now - 1, job_class: "KaalEnqueueApiJob", args: [8], job_id: "dropped",
                        connection: @model.lease_connection)
        raise ActiveRecord::Rollback
      end
      expect do
        Kaal.enqueue_at(at: Time.now + 60, job_class: "KaalEnqueueApiJob", job_id: "kept",
                        connection: @model.lease_connection)
      end.to raise_error(Kaal::DuplicateJobError)

      Kaal.tick!(now: Time.now)

      expect(KaalEnqueueApiJob.instance_variable_get(:@ran)).to eq([[7, "a"]])
    end
  end

  it "names the accepted dialects for an unknown one" do
    expect { schema.statements(:oracle) }.to raise_error(Kaal::ConfigurationError, /sqlite, postgres, mysql/)
  end

  it "refuses an object that is not a database connection" do
    expect do
      schema.enqueue_through(Object.new, dialect: :sqlite, namespace: "n", job_id: "j", run_at_ms: 1,
                                         job_class: "X", queue: nil, args_json: "[]")
    end.to raise_error(ArgumentError, /Active Record connection or a Sequel::Database/)
  end
end
