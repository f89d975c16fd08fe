# frozen_string_literal: true

# Three real `kaal start` processes sharing one SQLite file, one of them
# SIGKILLed and restarted every few seconds: no (job key, fire time) may run
# twice, and nearly every second of every job must still run. A SIGKILL in
# the middle of a write transaction must neither corrupt the file nor leave
# a lock that stops the others (WAL recovery on the next open).
RSpec.describe "kaal start on SQLite with nodes killed at random", :integration do
  include Kaal::Spec::MultiProcess::Examples
  kaal_backend_for :sqlite
  temp_sqlite_file "kaal-mp-sqlite"

  it "runs every (key, fire time) at most once and keeps >= 90% coverage" do
    expect_random_kills_survived("sqlite", { "path" => @path }, min_kills: 3)

    # The file survived the kills intact.
    require "sqlite3"
    db = SQLite3::Database.new(@path)
    expect(db.get_first_value("PRAGMA integrity_check")).to eq("ok")
    expect(db.get_first_value("PRAGMA journal_mode")).to eq("wal")
  ensure
    db&.close
  end
end
