# frozen_string_literal: true

require "redis"
require "sequel"

RSpec.describe Kaal::Backend::ConnectionParams do
  def from(kind, config = nil, env: {}, **options)
    described_class.from(kind, config || options, env: env)
  end

  describe "redis URLs" do
    it "reads host, port, db, user and percent-decoded password" do
      expect(from(:redis, url: "redis://alice:p%40ss%3Aw0rd@cache.local:6380/3")).to eq(
        "host" => "cache.local", "port" => 6380, "database" => "3", "username" => "alice",
        "password" => "p@ss:w0rd"
      )
    end

    it "takes a password without a user, and no db" do
      expect(from(:redis, url: "redis://:secret@127.0.0.1:6379")).to eq(
        "host" => "127.0.0.1", "port" => 6379, "password" => "secret"
      )
    end

    it "sets sslmode for rediss://" do
      expect(from(:redis, url: "rediss://h:6390/0")).to include("sslmode" => "required", "database" => "0")
    end

    it "reads a unix socket with ?db=" do
      expect(from(:redis, url: "unix:///run/redis/redis.sock?db=4")).to eq(
        "socket" => "/run/redis/redis.sock", "database" => "4"
      )
    end

    it "reads an IPv6 host" do
      expect(from(:redis, url: "redis://[::1]:7000/1")).to include("host" => "::1", "port" => 7000)
    end

    it "refuses a bad port or db" do
      expect { from(:redis, url: "redis://h:99999/0") }.to raise_error(Kaal::ConfigurationError, /port/)
      expect { from(:redis, url: "redis://h:6379/x") }.to raise_error(Kaal::ConfigurationError, /database/)
    end
  end

  describe "postgres URLs" do
    it "reads every part and the sslmode and connect_timeout query parameters" do
      url = "postgresql://app:s%2Fcret@db.internal:5433/kaal_prod?sslmode=verify-full&connect_timeout=7"
      expect(from(:postgres, url: url)).to eq(
        "conninfo" => url, # handed to libpq intact
        "host" => "db.internal", "port" => 5433, "database" => "kaal_prod", "username" => "app",
        "sslmode" => "verify-full", "connect_timeout_ms" => 7000
      )
    end

    it "accepts postgres:// and a socket directory in ?host=" do
      expect(from(:postgres, url: "postgres://app@/kaal?host=/var/run/postgresql")).to eq(
        "conninfo" => "postgres://app@/kaal?host=/var/run/postgresql",
        "socket" => "/var/run/postgresql", "database" => "kaal", "username" => "app"
      )
    end

    it "hands libpq the URL intact: multi-host, TLS files, target_session_attrs; kaal's own timeouts taken out" do
      url = "postgresql://app:p%23w@h1:5432,h2:5433/app?sslmode=verify-full&sslrootcert=/etc/ca.pem" \
            "&target_session_attrs=read-write&read_timeout=4"
      params = from(:postgres, url: url)
      expect(params["conninfo"]).to eq(url.delete_suffix("&read_timeout=4"))
      expect(params).to include("command_timeout_ms" => 4000, "host" => "h1:5432,h2:5433")
      expect(params).not_to have_key("password")
      expect(from(:postgres, url: "postgis://u@h/d")["conninfo"]).to eq("postgresql://u@h/d")
      expect(from(:postgres, url: "host=h1,h2 dbname=app sslmode=require")).to eq("conninfo" => "host=h1,h2 dbname=app sslmode=require")
    end

    it "passes an Active Record hash's libpq parameters on, quoted" do
      conn = { adapter: "postgresql", host: "h", password: "it's \\ x", sslrootcert: "/ca.pem", target_session_attrs: "any" }
      expect(from(:postgres, connection: conn)["conninfo"])
        .to eq("host='h' password='it\\'s \\\\ x' sslrootcert='/ca.pem' target_session_attrs='any'")
    end

    it "accepts the postgres aliases as kind" do
      expect(from(:postgresql, url: "postgres://h/d")).to eq("conninfo" => "postgres://h/d", "host" => "h", "database" => "d")
    end
  end

  describe "mysql URLs" do
    %w[mysql mysql2 trilogy].each do |scheme|
      it "reads #{scheme}://" do
        expect(from(:mysql, url: "#{scheme}://root:pw@10.0.0.5:3307/app")).to eq(
          "host" => "10.0.0.5", "port" => 3307, "database" => "app", "username" => "root", "password" => "pw"
        )
      end
    end

    it "reads a socket and ssl-mode from the query" do
      expect(from(:mysql, url: "mysql2://u@localhost/app?socket=/tmp/my.sock&ssl_mode=REQUIRED"))
        .to include("socket" => "/tmp/my.sock", "sslmode" => "REQUIRED")
    end

    it "reads ssl-mode and ssl-ca, ignores Active Record's own parameters, refuses unknown ones" do
      expect(from(:mysql, url: "mysql2://u:p@h/app?ssl-mode=VERIFY_IDENTITY&ssl-ca=/etc/ca.pem&encoding=utf8mb4&pool=5"))
        .to include("sslmode" => "VERIFY_IDENTITY", "ssl_ca" => "/etc/ca.pem")
      expect(from(:mysql, connection: { adapter: "mysql2", host: "h", sslca: "/ca.pem" })).to include("ssl_ca" => "/ca.pem")
      expect { from(:mysql, url: "mysql2://u:secret@h/app?sslkey=/k.pem") }
        .to raise_error(Kaal::ConfigurationError, /unknown URL parameter "sslkey"/) { |e| expect(e.message).not_to include("secret") }
    end
  end

  describe "sqlite" do
    it "reads sqlite3:relative, sqlite3:///absolute, sqlite:// and a plain path" do
      expect(from(:sqlite, url: "sqlite3:db/kaal.sqlite3")).to eq("path" => "db/kaal.sqlite3")
      expect(from(:sqlite, url: "sqlite3:///var/lib/kaal.db")).to eq("path" => "/var/lib/kaal.db")
      expect(from(:sqlite, url: "sqlite://kaal.db")).to eq("path" => "kaal.db")
      expect(from(:sqlite, url: "sqlite:///tmp/kaal%20x.db")).to eq("path" => "/tmp/kaal x.db")
      expect(from(:sqlite, url: "/srv/kaal.sqlite3")).to eq("path" => "/srv/kaal.sqlite3")
      expect(from(:sqlite, path: "tmp/k.db")).to eq("path" => "tmp/k.db")
    end

    it "refuses an in-memory or empty database: it cannot be shared" do
      [{ url: "sqlite3::memory:" }, { path: ":memory:" }, { url: "sqlite3:" },
       { connection: { adapter: "sqlite3", database: ":memory:" } }, {}].each do |config|
        expect { from(:sqlite, config) }.to raise_error(Kaal::ConfigurationError, /in-memory database cannot be shared/)
      end
    end
  end

  describe "Active Record connection hashes" do
    it "reads a postgresql hash with String keys" do
      conn = { "adapter" => "postgresql", "host" => "pg", "port" => "5432", "database" => "app",
               "username" => "u", "password" => "pw", "sslmode" => "require" }
      expect(from(:postgres, "connection" => conn)).to eq(
        "host" => "pg", "port" => 5432, "database" => "app", "username" => "u", "password" => "pw",
        "sslmode" => "require"
      )
    end

    it "reads postgis, mysql2 and trilogy adapters" do
      expect(from(:postgres, connection: { adapter: "postgis", database: "geo" })).to eq("database" => "geo")
      expect(from(:mysql, connection: { adapter: "mysql2", socket: "/tmp/m.sock", database: "d", username: "r" }))
        .to eq("socket" => "/tmp/m.sock", "database" => "d", "username" => "r")
      expect(from(:mysql, connection: { adapter: "trilogy", host: "h", port: 3306, database: "d" }))
        .to eq("host" => "h", "port" => 3306, "database" => "d")
    end

    it "reads a sqlite3 hash (database is the file)" do
      expect(from(:sqlite, connection: { adapter: "sqlite3", database: "db/production.sqlite3" }))
        .to eq("path" => "db/production.sqlite3")
    end

    it "merges a url inside the hash with the other keys" do
      expect(from(:postgres, connection: { url: "postgres://h:5999/d", password: "x" }))
        .to eq("conninfo" => "postgres://h:5999/d?password=x", "host" => "h", "port" => 5999, "database" => "d",
               "password" => "x")
    end

    it "refuses an adapter of another kind or an unknown adapter" do
      expect { from(:postgres, connection: { adapter: "mysql2" }) }
        .to raise_error(Kaal::ConfigurationError, /backend postgres cannot use .*mysql/)
      expect { from(:mysql, connection: { adapter: "oracle_enhanced" }) }
        .to raise_error(Kaal::ConfigurationError, /unknown adapter "oracle_enhanced"/)
    end
  end

  describe "a redis-rb Redis object" do
    it "reads host, port, db, username and password without connecting" do
      redis = Redis.new(host: "127.0.0.1", port: 1, db: 5, username: "bob", password: "hunter2")
      expect(from(:redis, redis: redis)).to include(
        "host" => "127.0.0.1", "port" => 1, "database" => "5", "username" => "bob", "password" => "hunter2"
      )
    end

    it "reads a url-built client and a unix socket client" do
      expect(from(:redis, redis: Redis.new(url: "redis://:pw@10.1.1.1:6390/2")))
        .to include("host" => "10.1.1.1", "port" => 6390, "database" => "2", "password" => "pw")
      expect(from(:redis, redis: Redis.new(path: "/run/r.sock", db: 1)))
        .to include("socket" => "/run/r.sock", "database" => "1")
    end

    it "is refused for a SQL backend" do
      expect { from(:postgres, redis: Redis.new) }.to raise_error(Kaal::ConfigurationError, /postgres cannot use/)
    end
  end

  describe "a Sequel::Database" do
    it "reads a postgres database's options (no connection made)" do
      db = Sequel.connect("postgres://app:p%40w@db:5432/kaal?sslmode=require", test: false)
      expect(from(:postgres, database: db)).to eq(
        "host" => "db", "port" => 5432, "database" => "kaal", "username" => "app", "password" => "p@w",
        "sslmode" => "require"
      )
    ensure
      db&.disconnect
    end

    it "reads a mysql2 database's options" do
      db = Sequel.connect("mysql2://root:pw@127.0.0.1:3307/app", test: false)
      expect(from(:mysql, database: db)).to include("host" => "127.0.0.1", "port" => 3307, "database" => "app",
                                                    "username" => "root", "password" => "pw")
    ensure
      db&.disconnect
    end

    it "reads a real sqlite database's file" do
      Dir.mktmpdir do |dir|
        path = File.join(dir, "app.db")
        db = Sequel.connect("sqlite://#{path}")
        expect(from(:sqlite, database: db)).to eq("path" => path)
        db.disconnect
      end
    end

    it "refuses a database of another kind" do
      db = Sequel.connect("mysql2://h/app", test: false)
      expect { from(:postgres, database: db) }.to raise_error(Kaal::ConfigurationError, /mysql/)
    ensure
      db&.disconnect
    end
  end

  describe "KAAL_BACKEND_URL" do
    it "overrides the configured url and hash" do
      env = { "KAAL_BACKEND_URL" => "redis://override:6400/9" }
      expect(from(:redis, { url: "redis://config:6379/0" }, env: env))
        .to eq("host" => "override", "port" => 6400, "database" => "9")
      expect(from(:postgres, { connection: { host: "x" } }, env: { "KAAL_BACKEND_URL" => "postgres://env/db" }))
        .to eq("conninfo" => "postgres://env/db", "host" => "env", "database" => "db")
    end

    it "is read from ENV by default and by Kaal::Backend.build" do
      old = ENV.fetch("KAAL_BACKEND_URL", nil)
      ENV["KAAL_BACKEND_URL"] = "redis://:topsecret@envhost:6401/0"
      expect(described_class.from(:redis, url: "redis://config/0")).to include("host" => "envhost")
      if Kaal::Native.backends.include?("redis")
        backend = Kaal::Backend.build(:redis, namespace: "n", config: { url: "redis://config/0" })
        expect(backend.inspect).to include("envhost").and include("6401")
        expect(backend.inspect).not_to include("topsecret")
      end
    ensure
      ENV["KAAL_BACKEND_URL"] = old
    end

    it "is ignored when empty, and by the memory backend" do
      expect(from(:redis, { url: "redis://c/0" }, env: { "KAAL_BACKEND_URL" => "" })).to include("host" => "c")
      expect(from(:memory, {}, env: { "KAAL_BACKEND_URL" => "redis://x/0" })).to eq({})
    end
  end

  describe "mismatches and mistakes" do
    it "never shows any part of a password that was not percent-encoded" do
      ["redis://:zq#xv@h:6379/0", "postgres://u:zq#xv@h/db", "mysql2://u:zq#xv@h/db",
       "redis://:zq@xv@h:6379/0", "mysql2://u:zq@xv@h/db", "redis://:zq/xv@h:x/0"].each do |url|
        kind = url.start_with?("redis") ? :redis : url.start_with?("postgres") ? :postgres : :mysql
        expect { from(kind, url: url) }.to raise_error(Kaal::ConfigurationError, /percent-encode/) { |e|
          expect(e.message).not_to include("zq", "xv")
        }
      end
      expect(Kaal.redact_url("postgres://u:pa#ss@h/db")).to eq("postgres://u:[REDACTED]@h/db")
      expect(Kaal.redact_url("redis://:pa/s?s@h:1/0")).to eq("redis://:[REDACTED]@h:1/0")
    end

    it "refuses a URL of another kind without showing its password" do
      expect { from(:redis, url: "postgres://u:hunter2@h/d") }.to raise_error(Kaal::ConfigurationError) { |e|
        expect(e.message).to match(/backend redis cannot use .*postgres/)
        expect(e.message).not_to include("hunter2")
      }
      expect { from(:mysql, url: "redis://h/0") }.to raise_error(Kaal::ConfigurationError, /mysql cannot use/)
    end

    it "refuses unknown schemes, kinds and config keys" do
      expect { from(:redis, url: "http://h/") }.to raise_error(Kaal::ConfigurationError, /unknown URL scheme "http"/)
      expect { from(:mongo, {}) }.to raise_error(Kaal::ConfigurationError, /unknown backend :mongo/)
      expect { from(:redis, urll: "x") }.to raise_error(Kaal::ConfigurationError, /unknown key.*urll.*valid: url/)
      expect { from(:postgres, url: "not a url") }.to raise_error(Kaal::ConfigurationError, /not a URL/)
    end

    it "converts timeouts in seconds to milliseconds and refuses nonsense" do
      expect(from(:redis, url: "redis://h/0", connect_timeout: 1.5, command_timeout: "2"))
        .to include("connect_timeout_ms" => 1500, "command_timeout_ms" => 2000)
      expect(from(:redis, url: "redis://h/0", timeout: 3, connect_timeout: 1))
        .to include("connect_timeout_ms" => 1000, "command_timeout_ms" => 3000)
      expect { from(:redis, connect_timeout: "soon") }.to raise_error(Kaal::ConfigurationError, /connect_timeout/)
      expect { from(:redis, command_timeout: -1) }.to raise_error(Kaal::ConfigurationError, /command_timeout/)
    end
  end

  describe ".redact" do
    it "hides the password of a URL and keeps the rest" do
      expect(described_class.redact("redis://bob:hunter2@h:6379/0")).to eq("redis://bob:[REDACTED]@h:6379/0")
      expect(described_class.redact("redis://:hunter2@h")).to eq("redis://:[REDACTED]@h")
      expect(described_class.redact("postgres://u@h/d?password=hunter2&sslmode=require"))
        .to eq("postgres://u@h/d?password=[REDACTED]&sslmode=require")
      expect(described_class.redact("redis://h:6379/0")).to eq("redis://h:6379/0")
      expect(described_class.redact("db/kaal.sqlite3")).to eq("db/kaal.sqlite3")
    end

    it "hides passwords anywhere in free text (redact_text), quoted or not" do
      text = "PG::ConnectionBad: postgres://app:hunter2@db/x and redis://:hunter2@cache:6379 " \
             "(host=db password=hunter2 sslmode=require) pwd='hunter 2', TOKEN=hunter2;next=1"
      expect(described_class.redact_text(text)).to eq(
        "PG::ConnectionBad: postgres://app:[REDACTED]@db/x and redis://:[REDACTED]@cache:6379 " \
        "(host=db password=[REDACTED] sslmode=require) pwd='[REDACTED]', TOKEN=[REDACTED];next=1"
      )
      expect(described_class.redact_text("mail bob@example.com, a=b, https://example.com/x"))
        .to eq("mail bob@example.com, a=b, https://example.com/x")
    end

    it "hides passwords anywhere in a nested hash, with Symbol or String keys" do
      config = { url: "mysql2://r:hunter2@h/d", "connection" => { "password" => "hunter2", "host" => "h" },
                 list: [{ secret_token: "x" }] }
      redacted = described_class.redact(config)
      expect(redacted.inspect).not_to include("hunter2")
      expect(redacted["connection"]).to eq("password" => "[REDACTED]", "host" => "h")
      expect(redacted[:list]).to eq([{ secret_token: "[REDACTED]" }])
      expect(config["connection"]["password"]).to eq("hunter2") # the original is untouched
    end
  end

  describe "Kaal::Backend.build" do
    it "builds a handle whose inspect never shows the password" do
      skip "postgres backend not built" unless Kaal::Native.backends.include?("postgres")

      backend = Kaal::Backend.build(:postgresql, namespace: "app",
                                                 config: { url: "postgres://u:hunter2@db.example:5432/kaal" })
      expect(backend.kind).to eq(:postgres)
      expect(backend.inspect).to include("db.example").and include("kaal").and include("namespace=\"app\"")
      expect(backend.inspect).not_to include("hunter2")
      expect(backend.connected?).to be(false)
    end

    it "raises ConnectionError when the server cannot be reached" do
      skip "redis backend not built" unless Kaal::Native.backends.include?("redis")

      port = TCPServer.open("127.0.0.1", 0) { |s| s.addr[1] } # a port nobody listens on
      backend = Kaal::Backend.build(:redis, namespace: "app",
                                            config: { url: "redis://:hunter2@127.0.0.1:#{port}/0", connect_timeout: 1 })
      expect { backend.ping }.to raise_error(Kaal::ConnectionError) { |e| expect(e.message).not_to include("hunter2") }
      expect(backend.connected?).to be(false)
    end
  end
end
