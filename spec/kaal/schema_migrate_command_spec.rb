# frozen_string_literal: true

require "securerandom"
require "tmpdir"
require "active_record"

# The command that creates kaal's tables is named by every "table missing"
# error; an application (kaal-rails) can name its own.
RSpec.describe "Kaal::Backend::Schema.migrate_command" do
  schema = Kaal::Backend::Schema

  after do
    schema.migrate_command = schema::DEFAULT_MIGRATE_COMMAND
    schema.upgrade_command = nil
  end

  it "names the command in a node's refusal of an older schema (the upgrade command when one is set)" do
    message = ->(version) { schema.outdated_error("postgres", version).message }
    expect(message.call(1)).to eq("postgres: kaal's tables are at schema step 1 of #{schema::VERSION} " \
                                  "(this kaal #{Kaal::VERSION} needs step #{schema::VERSION}): run `kaal migrate` " \
                                  "to upgrade them, then start again")
    schema.migrate_command = "bin/rails db:migrate"
    expect(message.call(0)).to include("run `bin/rails db:migrate` to upgrade them")
    schema.upgrade_command = "bin/rails generate kaal:install && bin/rails db:migrate"
    expect(message.call(1)).to include("run `bin/rails generate kaal:install && bin/rails db:migrate` to upgrade them")
    expect { schema.upgrade_command = " " }.to raise_error(ArgumentError, /non-empty String/)
  end

  it "lists kaal's tables from the same DDL as the statements" do
    dialect = Kaal::Native.backends.find { |b| %w[sqlite postgres mysql].include?(b) }
    skip "no SQL backend built" unless dialect
    expect(schema.tables(dialect, step: 1)).to eq(%w[kaal_dispatches kaal_delayed_jobs kaal_job_states kaal_nodes])
    expect(schema.tables(dialect, step: 2)).to eq(%w[kaal_schema_steps kaal_schedules kaal_schedule_versions])
    expect(schema.tables(dialect)).to eq(schema.tables(dialect, step: 1) + schema.tables(dialect, step: 2))
  end

  it "refuses an empty command" do
    expect { schema.migrate_command = " " }.to raise_error(ArgumentError, /non-empty String/)
  end

  it "names the command when enqueueing through an Active Record connection to a database without the tables" do
    Dir.mktmpdir("kaal-hint") do |dir|
      ActiveRecord::Base.establish_connection(adapter: "sqlite3", database: File.join(dir, "app.sqlite3"))
      job = { dialect: "sqlite", namespace: "kaal", job_id: "j1", run_at_ms: 1, job_class: "X", queue: nil,
              args_json: "[]" }
      expect { schema.enqueue_through(ActiveRecord::Base.connection, **job) }
        .to raise_error(Kaal::BackendError, /kaal_delayed_jobs does not exist.*run `kaal migrate`/)
      schema.migrate_command = "bin/rails db:migrate"
      expect { schema.enqueue_through(ActiveRecord::Base.connection, **job) }
        .to raise_error(Kaal::BackendError, /run `bin\/rails db:migrate` to create kaal's tables/)
    ensure
      ActiveRecord::Base.remove_connection
    end
  end

  it "names the command in the backend's errors on a server database without the tables" do
    url = ENV.fetch("KAAL_TEST_POSTGRES_URL", "")
    skip "set KAAL_TEST_POSTGRES_URL (bin/services start) to run" if url.empty? && ENV["KAAL_REQUIRE_SERVICES"] != "1"
    skip "postgres backend not built" unless Kaal::Native.backends.include?("postgres")

    name = "kaal_hint_#{SecureRandom.hex(4)}"
    # A fresh database (no kaal tables), through the C backend's own session.
    require "pg"
    pg = PG.connect(url.sub(%r{\Apostgres(ql)?://}, "postgresql://"))
    pg.exec("CREATE DATABASE #{name}")
    fresh = Kaal::Backend.build(:postgres, namespace: "kaal", config: { url: url.sub(%r{/[^/]*\z}, "/#{name}") })
    expect { fresh.delayed_count }.to raise_error(Kaal::BackendError, /run `kaal migrate`/)
    schema.migrate_command = "bin/rails db:migrate"
    expect { fresh.delayed_count }.to raise_error(Kaal::BackendError, %r{run `bin/rails db:migrate`})
    expect { fresh.claim([["k", 1]], lease_ms: 1000, node: "n", now: 2) }
      .to raise_error(Kaal::BackendError, %r{kaal_dispatches.*run `bin/rails db:migrate`})
  ensure
    fresh&.close
    pg&.exec("DROP DATABASE IF EXISTS #{name}") if name
    pg&.close
  end
end
