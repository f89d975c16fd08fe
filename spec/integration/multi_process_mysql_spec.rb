# frozen_string_literal: true

# Several real `kaal start` processes on one MySQL/MariaDB database, one of them
# SIGKILLed and restarted every few seconds: no (job key, fire time) may run
# twice, and nearly every second of every job must still run. The record is
# written by the jobs themselves (see spec/support/multi_process.rb).
RSpec.describe "kaal start on MySQL/MariaDB with nodes killed at random", :integration do
  let(:url) { ENV.fetch("KAAL_TEST_MYSQL_URL", "") }
  let(:duration) { Float(ENV.fetch("KAAL_MP_SECONDS", "30")) }

  def explain(result)
    ([result.summary] + result.crashes + result.node_logs.map { |n, log| "#{n}:\n#{log}" }).join("\n---\n")
  end

  before do
    reason =
      if !Kaal::Native.backends.include?("mysql") then "the mysql backend is not compiled into this build"
      elsif url.empty? then "KAAL_TEST_MYSQL_URL is not set (bin/services start mysql)"
      end
    if reason
      raise "#{reason} (KAAL_REQUIRE_SERVICES=1)" if ENV["KAAL_REQUIRE_SERVICES"] == "1"

      skip reason
    end
    # the tables exist before the nodes start (as after `kaal migrate`)
    handle = Kaal::Backend.build(:mysql, namespace: "migrate", config: { url: url })
    handle.migrate
    handle.close
  end

  it "runs every (key, fire time) at most once and keeps >= 90% coverage" do
    result = Kaal::Spec::MultiProcess.run(backend: "mysql", backend_config: { "url" => url },
                                          nodes: 3, jobs: 5, duration: duration)
    puts "\n  #{result.summary}"

    expect(result.crashes).to be_empty, -> { explain(result) }
    expect(result.kills).to be >= [(duration / 8).floor, 1].max
    expect(result.dispatches).to be > 0, -> { explain(result) }
    expect(result.duplicates).to be_empty, -> { explain(result) }
    expect(result.coverage).to be >= 90.0, -> { explain(result) }
  end

  # The database becomes unreachable for a few seconds under running nodes:
  # their account is locked and every connection of it killed. The nodes must
  # survive, run nothing while they cannot claim (fail closed), catch the
  # missed seconds up from the lookback window once they can log in again,
  # and still run no pair twice.
  it "fails closed while the database is unreachable and catches up without duplicates" do
    require "mysql2"
    require "uri"
    u = URI.parse(url)
    admin = Mysql2::Client.new(host: u.host, port: u.port, username: u.user, password: u.password,
                               database: u.path.delete_prefix("/"))
    user = "kaal_outage_#{Process.pid}"
    admin.query("CREATE USER IF NOT EXISTS '#{user}'@'%'")
    admin.query("GRANT SELECT, INSERT, UPDATE, DELETE ON `#{admin.escape(u.path.delete_prefix("/"))}`.* TO '#{user}'@'%'")
    node_url = url.sub(%r{//[^@/]*@}, "//#{user}@")
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
    result = Kaal::Spec::MultiProcess.run(
      backend: "mysql", backend_config: { "url" => node_url }, nodes: 2, jobs: 3, duration: 20,
      kill_every: nil, events: [[7, "database cut", cut],
                                [11, "database back", -> { admin.query("ALTER USER '#{user}'@'%' ACCOUNT UNLOCK") }]]
    )
    down = result.events.to_h
    puts "\n  outage: #{result.summary}"

    expect(result.crashes).to be_empty, -> { explain(result) }
    expect(result.duplicates).to be_empty, -> { explain(result) }
    ran_while_down = result.records.select do |*, ran_at|
      ran_at > down.fetch("database cut").to_f + 1.0 && ran_at < down.fetch("database back").to_f
    end
    expect(ran_while_down).to be_empty, -> { explain(result) }
    missed = result.records.select { |_, fire, *| fire.between?(down["database cut"].to_i + 1, down["database back"].to_i - 1) }
    expect(missed).not_to be_empty, -> { explain(result) } # the outage's seconds were caught up ...
    expect(missed.map(&:last).min).to be >= down["database back"].to_f # ... after it came back
    expect(result.coverage).to be >= 90.0, -> { explain(result) }
  ensure
    if admin
      kill_all&.call
      admin.query("DROP USER IF EXISTS '#{user}'@'%'")
      admin.close
    end
  end
end
