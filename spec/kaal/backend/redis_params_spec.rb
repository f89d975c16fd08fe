# frozen_string_literal: true

require "openssl"
require "redis"
require "redis-client"

# TLS and Sentinel settings of the Redis backend, read without a server.
RSpec.describe Kaal::Backend::RedisParams do
  def from(kind = :redis, env: {}, **config)
    Kaal::Backend::ConnectionParams.from(kind, config, env: env)
  end

  def error(**config)
    expect { from(**config) }.to raise_error(Kaal::ConfigurationError) { |e| return e.message }
  end

  let(:ca) { __FILE__ } # any readable file

  describe "TLS" do
    it "verifies the chain and the host name by default (rediss:// or ssl: true)" do
      expect(from(url: "rediss://h:6390/0")["sslmode"]).to eq("required") # the C side reads it as verify-full
      expect(from(url: "redis://h:6390/0", ssl: true)["sslmode"]).to eq("verify-full")
    end

    it "reads ssl_params as redis-rb names them" do
      params = from(url: "rediss://h/0", ssl_params: { ca_file: ca, hostname: "redis.internal" })
      expect(params).to include("ssl_ca" => ca, "ssl_hostname" => "redis.internal", "sslmode" => "verify-full")
      expect(from(url: "rediss://h/0", ssl_params: { verify_hostname: false })["sslmode"]).to eq("verify-ca")
      expect(from(url: "rediss://h/0", ssl_params: { verify_mode: OpenSSL::SSL::VERIFY_NONE })["sslmode"])
        .to eq("no-verify")
      expect(from(url: "rediss://h/0", ssl_params: { "verify_mode" => :none })["sslmode"]).to eq("no-verify")
    end

    it "turns OpenSSL certificate and key objects into PEM text" do
      key = OpenSSL::PKey::EC.generate("prime256v1")
      cert = OpenSSL::X509::Certificate.new
      cert.version = 2
      cert.serial = 1
      cert.subject = cert.issuer = OpenSSL::X509::Name.parse("/CN=kaal")
      cert.public_key = key
      cert.not_before = Time.now
      cert.not_after = Time.now + 60
      cert.sign(key, OpenSSL::Digest.new("SHA256"))
      params = from(url: "rediss://h/0", ssl_params: { cert: cert, key: key })
      expect(params["ssl_cert"]).to start_with("-----BEGIN CERTIFICATE-----")
      expect(params["ssl_key"]).to start_with("-----BEGIN PRIVATE KEY-----")
    end

    it "names the setting in every error" do
      expect(error(url: "rediss://h/0", ssl_params: { ca_file: "/nope" }))
        .to eq('backend_config.ssl_params.ca_file: no such file "/nope"')
      expect(error(url: "rediss://h/0", ssl_params: { ca_path: ca })).to match(/ssl_params\.ca_path: no such directory/)
      expect(error(url: "rediss://h/0", ssl_params: { verify_mode: 5 })).to match(/ssl_params\.verify_mode must be/)
      expect(error(url: "rediss://h/0", ssl_params: { verify_hostname: "no" }))
        .to match(/ssl_params\.verify_hostname must be true or false/)
      expect(error(url: "rediss://h/0", ssl_params: { hostname: "" })).to match(/ssl_params\.hostname must be/)
      expect(error(url: "rediss://h/0", ssl_params: "x")).to match(/ssl_params must be a Hash/)
      expect(error(url: "rediss://h/0", ssl: false)).to match(/ssl is false but the URL asks for TLS/)
      expect(error(url: "redis://h/0", ssl: "yes")).to match(/backend_config\.ssl must be true or false/)
      expect(error(url: "redis://h/0", ssl_params: { ca_file: ca })).to match(/ssl_params is given but TLS is off/)
      expect { from(:postgres, ssl_params: {}) }
        .to raise_error(Kaal::ConfigurationError, /ssl_params is a redis setting; the postgres backend/)
    end
  end

  describe "Sentinel" do
    it "takes sentinels and the master's name; the URL gives password and db" do
      params = from(url: "redis://:pw@/2", sentinels: ["10.0.0.1:26379", { host: "10.0.0.2" }, "[::1]:26380"],
                    name: "mymaster", sentinel_password: "sp", sentinel_username: "su")
      expect(params).to eq("password" => "pw", "database" => "2", "sentinel_master" => "mymaster",
                           "sentinels" => "10.0.0.1:26379,10.0.0.2:26379,[::1]:26380",
                           "sentinel_password" => "sp", "sentinel_username" => "su")
    end

    it "takes the master's name from the URL's host, as redis-client does" do
      expect(from(url: "redis://mymaster/0", sentinels: "a:1,b:2")).to include("sentinel_master" => "mymaster",
                                                                               "sentinels" => "a:1,b:2")
    end

    it "reads redis+sentinel:// and rediss+sentinel:// URLs" do
      params = from(url: "redis+sentinel://:pw@h1:26379,h2/mymaster/3?sentinel_password=sp&timeout=2")
      expect(params).to eq("password" => "pw", "database" => "3", "sentinels" => "h1:26379,h2:26379",
                           "sentinel_master" => "mymaster", "sentinel_password" => "sp", "command_timeout_ms" => 2000)
      expect(from(url: "rediss+sentinel://h1/m")["sslmode"]).to eq("required")
    end

    it "names the setting in every error" do
      expect(error(sentinels: ["a:1"])).to match(/backend_config\.name \(the master's name .*\) is needed/)
      expect(error(name: "m")).to eq("backend_config.name is a Sentinel setting: give sentinels too")
      expect(error(sentinel_password: "x")).to match(/sentinel_password is a Sentinel setting/)
      expect(error(sentinels: [], name: "m")).to match(/backend_config\.sentinels must be a non-empty Array/)
      expect(error(sentinels: ["a:0"], name: "m")).to match(/sentinels\[0\] port must be a port number/)
      expect(error(sentinels: [42], name: "m")).to match(/sentinels\[0\] must be "host:port"/)
      expect(error(sentinels: ["a:1"], name: "")).to match(/backend_config\.name must not be empty/)
      expect(error(url: "redis+sentinel://h1/")).to match(/names no master/)
    end

    it "reads wait_replicas and wait_timeout, and refuses bad values by name" do
      expect(from(url: "redis://h/0", wait_replicas: 1, wait_timeout: 0.25))
        .to include("wait_replicas" => 1, "wait_timeout_ms" => 250)
      expect(from(url: "redis://h/0", wait_replicas: 0)).not_to include("wait_replicas")
      expect(error(url: "redis://h/0", wait_replicas: -1)).to match(/backend_config\.wait_replicas must be an Integer/)
      expect(error(url: "redis://h/0", wait_replicas: "1")).to match(/wait_replicas must be an Integer/)
      expect(error(url: "redis://h/0", wait_timeout: 1)).to match(/wait_timeout needs wait_replicas/)
      expect(error(url: "redis://h/0", wait_replicas: 1, wait_timeout: "x")).to match(/wait_timeout must be a number/)
    end

    it "takes sentinels, master name and passwords from a redis-rb object without connecting" do
      redis = Redis.new(name: "mymaster", sentinels: [{ host: "127.0.0.1", port: 1 }, { host: "127.0.0.1", port: 2 }],
                        sentinel_password: "sp", password: "mp", db: 3)
      params = from(redis: redis)
      expect(params).to include("sentinels" => "127.0.0.1:1,127.0.0.1:2", "sentinel_master" => "mymaster",
                                "sentinel_password" => "sp", "password" => "mp", "database" => "3")
      expect(params).not_to include("host", "port")
    end

    it "reads RedisClient objects and configs too (RedisClient.new, RedisClient.sentinel)" do
      params = from(redis: RedisClient.new(url: "rediss://:pw@127.0.0.1:6390/2", ssl_params: { ca_file: ca }))
      expect(params).to include("host" => "127.0.0.1", "port" => 6390, "password" => "pw", "database" => "2",
                                "sslmode" => "verify-full", "ssl_ca" => ca)
      config = RedisClient.sentinel(name: "m", sentinels: [{ host: "127.0.0.1", port: 1 }], sentinel_password: "s")
      [config, config.new_client].each do |given|
        expect(from(redis: given)).to include("sentinels" => "127.0.0.1:1", "sentinel_master" => "m",
                                              "sentinel_password" => "s")
      end
    end

    it "redacts passwords of a redis+sentinel:// URL, the sentinel's included" do
      url = "redis+sentinel://:mpw@h1:26379/m/0?sentinel_password=spw&timeout=1"
      expect(Kaal.redact_url(url)).to eq("redis+sentinel://:[REDACTED]@h1:26379/m/0?sentinel_password=[REDACTED]&timeout=1")
      expect(Kaal.redact_text("failed: #{url}")).not_to include("mpw", "spw")
    end

    it "redacts the sentinel password and private keys in the configuration shown by kaal status" do
      config = Kaal::Configuration.new
      config.backend_config = { sentinels: [{ host: "a", password: "x" }], name: "m", sentinel_password: "s",
                                ssl_params: { key: "-----BEGIN PRIVATE KEY-----\n...", cert: "/etc/cert.pem" } }
      expect(config.to_h[:backend_config]).to eq(
        sentinels: [{ host: "a", password: "[REDACTED]" }], name: "m", sentinel_password: "[REDACTED]",
        ssl_params: { key: "[REDACTED]", cert: "/etc/cert.pem" }
      )
    end
  end
end
