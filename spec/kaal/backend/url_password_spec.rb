# frozen_string_literal: true

require "uri"

# A password holding every character that means something in a URL, given
# percent-encoded in backend_config.url, logs in to the real servers; a wrong
# one is refused (so the server really checks it), and no error shows any
# part of it.
RSpec.describe "connection URLs against the real servers: passwords with URL-special characters, libpq URLs intact" do
  password = %q(p@ss:w/o?r#d%&=+ $;,[]!'"\~{}|^`<>.)
  encoded = URI.encode_www_form_component(password).gsub("+", "%20")
  let(:user) { "kaal_pw_#{Process.pid}_#{rand(1_000_000)}" }
  let(:ns) { "pw-#{Process.pid}-#{rand(1_000_000)}" }

  def url_with(base, user, encoded)
    u = URI.parse(base)
    "#{u.scheme}://#{user}:#{encoded}@#{u.host}:#{u.port}#{u.path}"
  end

  def expect_login(kind, url, wrong_url)
    backend = Kaal::Backend.build(kind, namespace: ns, config: { url: url })
    key = "job-#{rand(1_000_000_000)}"
    expect(backend.claim([[key, 1_800_000_000]], lease_ms: 1000, node: "n", now: 1_800_000_000)).to eq([true])
    backend.close
    bad = Kaal::Backend.build(kind, namespace: ns, config: { url: wrong_url })
    expect { bad.ping }.to raise_error(Kaal::ConnectionError) { |e|
      expect(e.message).not_to include("w/o", "r#d", "ss:w", "wrong")
    }
    bad.close
  end

  describe "redis" do
    kaal_backend_for :redis

    it "logs in as an ACL user" do
      require "redis"
      admin = Redis.new(url: kaal_backend_url)
      admin.call("ACL", "SETUSER", user, "on", ">#{password}", "~*", "&*", "+@all")
      expect_login(:redis, url_with(kaal_backend_url, user, encoded), url_with(kaal_backend_url, user, "wrong%23pw"))
    ensure
      admin&.call("ACL", "DELUSER", user)
      admin&.close
    end
  end

  describe "postgres" do
    kaal_backend_for :postgres

    it "logs in with a SCRAM password, the URL handed to libpq intact" do
      require "pg"
      admin = PG.connect(kaal_backend_url)
      Kaal::Backend.build(:postgres, namespace: ns, config: { url: kaal_backend_url }).migrate.close
      admin.exec("CREATE ROLE #{user} LOGIN PASSWORD #{admin.escape_literal(password)} IN ROLE kaal_password_auth")
      admin.exec("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO #{user}")
      expect_login(:postgres, url_with(kaal_backend_url, user, encoded), url_with(kaal_backend_url, user, "wrong%23pw"))

      # libpq reads the URL itself: a second host is tried when the first is down,
      # target_session_attrs is understood, and a keyword string works too.
      u = URI.parse(kaal_backend_url)
      multi = "postgresql://#{user}:#{encoded}@127.0.0.1:1,#{u.host}:#{u.port}#{u.path}?target_session_attrs=read-write"
      expect_login(:postgres, multi, multi.sub(encoded, "wrong"))
      words = "host=127.0.0.1 port=#{u.port} dbname=#{u.path.delete_prefix("/")} user=#{user} " \
              "password='#{password.gsub(/[\\']/) { |c| "\\#{c}" }}'"
      expect_login(:postgres, words, words.sub(/password='.*'\z/, "password=wrong"))
    ensure
      if admin
        admin.exec("DROP OWNED BY #{user}") rescue nil # rubocop:disable Style/RescueModifier
        admin.exec("DROP ROLE IF EXISTS #{user}")
        admin.close
      end
    end
  end

  describe "mysql" do
    kaal_backend_for :mysql

    it "logs in as a user with that password" do
      require "mysql2"
      u = URI.parse(kaal_backend_url)
      admin = Mysql2::Client.new(host: u.host, port: u.port, username: u.user || "root", database: u.path.delete_prefix("/"))
      Kaal::Backend.build(:mysql, namespace: ns, config: { url: kaal_backend_url }).migrate.close
      admin.query("CREATE USER '#{user}'@'%' IDENTIFIED BY '#{admin.escape(password)}'")
      admin.query("GRANT ALL ON #{u.path.delete_prefix("/")}.* TO '#{user}'@'%'")
      expect_login(:mysql, url_with(kaal_backend_url, user, encoded), url_with(kaal_backend_url, user, "wrong%23pw"))

      # ssl-mode and ssl-ca reach the client library, and TLS asked for is TLS
      # used: this test server has none, so the connection is refused.
      %w[ssl-mode=REQUIRED ssl-ca=/nonexistent-ca.pem].each do |query|
        tls = Kaal::Backend.build(:mysql, namespace: ns, config: { url: "#{url_with(kaal_backend_url, user, encoded)}?#{query}" })
        expect { tls.ping }.to raise_error(Kaal::ConnectionError) { |e| expect(e.message).not_to include("w/o") }
        tls.close
      end
    ensure
      admin&.query("DROP USER IF EXISTS '#{user}'@'%'")
      admin&.close
    end
  end
end
