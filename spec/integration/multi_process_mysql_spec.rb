# frozen_string_literal: true

# Several real `kaal start` processes on one MySQL/MariaDB database, one of them
# SIGKILLed and restarted every few seconds: no (job key, fire time) may run
# twice, and nearly every second of every job must still run. The record is
# written by the jobs themselves (see spec/support/multi_process.rb).
RSpec.describe "kaal start on MySQL/MariaDB with nodes killed at random", :integration do
  include Kaal::Spec::MultiProcess::Examples
  kaal_backend_for :mysql

  before { backend_factory.call("migrate") } # the tables exist before the nodes start (as after `kaal migrate`)

  it "runs every (key, fire time) at most once and keeps >= 90% coverage" do
    expect_random_kills_survived("mysql", { "url" => kaal_backend_url })
  end

  # The database becomes unreachable for a few seconds under running nodes:
  # their account is locked and every connection of it killed.
  it "fails closed while the database is unreachable and catches up without duplicates" do
    require "mysql2"
    require "uri"
    u = URI.parse(kaal_backend_url)
    admin = Mysql2::Client.new(host: u.host, port: u.port, username: u.user, password: u.password,
                               database: u.path.delete_prefix("/"))
    user = "kaal_outage_#{Process.pid}"
    admin.query("CREATE USER IF NOT EXISTS '#{user}'@'%'")
    admin.query("GRANT SELECT, INSERT, UPDATE, DELETE ON `#{admin.escape(u.path.delete_prefix("/"))}`.* TO '#{user}'@'%'")
    kill_all = lambda do
      admin.query("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '#{user}'").each do |r|
        admin.query("KILL #{Integer(r["ID"])}")
      rescue Mysql2::Error
        nil # already gone
      end
    end
    cut = lambda do
      admin.query("ALTER USER '#{user}'@'%' ACCOUNT LOCK")
      kill_all.call
    end
    expect_outage_survived("mysql", { "url" => kaal_backend_url.sub(%r{//[^@/]*@}, "//#{user}@") },
                           down: ["database cut", cut],
                           up: ["database back", -> { admin.query("ALTER USER '#{user}'@'%' ACCOUNT UNLOCK") }])
  ensure
    if admin
      kill_all&.call
      admin.query("DROP USER IF EXISTS '#{user}'@'%'")
      admin.close
    end
  end
end
