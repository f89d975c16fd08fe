# frozen_string_literal: true

require "tmpdir"

# Three real `kaal start` processes sharing one SQLite file, one of them
# SIGKILLed and restarted every few seconds: no (job key, fire time) may run
# twice, and nearly every second of every job must still run. A SIGKILL in
# the middle of a write transaction must neither corrupt the file nor leave
# a lock that stops the others (WAL recovery on the next open).
RSpec.describe "kaal start on SQLite with nodes killed at random", :integration do
  before do
    skip "sqlite backend not built" unless Kaal::Native.backends.include?("sqlite")
  end

  around do |example|
    Dir.mktmpdir("kaal-mp-sqlite") do |dir|
      @path = File.join(dir, "kaal.sqlite3")
      example.run
    end
  end

  it "runs every (key, fire time) at most once and keeps >= 90% coverage" do
    result = Kaal::Spec::MultiProcess.run(
      backend: "sqlite", backend_config: { "path" => @path },
      nodes: 3, jobs: 5, duration: Float(ENV.fetch("KAAL_MP_SECONDS", "30"))
    )
    puts "\n  #{result.summary}"

    expect(result.crashes).to be_empty, -> { result.crashes.join("\n---\n") }
    expect(result.kills).to be >= 3
    expect(result.duplicates).to be_empty
    expect(result.dispatches).to be > 0, -> { result.node_logs.map { |n, l| "#{n}:\n#{l}" }.join("\n") }
    expect(result.coverage).to be >= 90.0

    # The file survived the kills intact.
    require "sqlite3"
    db = SQLite3::Database.new(@path)
    expect(db.get_first_value("PRAGMA integrity_check")).to eq("ok")
    expect(db.get_first_value("PRAGMA journal_mode")).to eq("wal")
  ensure
    db&.close
  end
end
