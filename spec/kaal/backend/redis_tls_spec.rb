# frozen_string_literal: true

require "openssl"
require "redis"
require "securerandom"
require "socket"
require "timeout"

# rediss://: a redis-server that speaks only TLS, with certificates made for
# the run (spec/support/redis_tls.rb).
RSpec.describe "Redis backend over TLS" do
  before(:all) do
    skip_unavailable(Kaal::Spec::RedisServer.unavailable_reason(tls: true))
    @secret = "pw-#{SecureRandom.hex(8)}"
    @files = Kaal::Spec::TlsFiles.new
    @server = Kaal::Spec::RedisTlsServer.start(@files, "--requirepass", @secret)
  end

  after(:all) do
    @server&.stop
    @files&.cleanup
  end

  let(:secret) { @secret }
  let(:files) { @files }
  let(:server) { @server }
  let(:now) { 1_767_225_600 }
  let(:handles) { [] }

  after { handles.each(&:close) }

  def build(**config)
    Kaal::Backend.build(:redis, namespace: "kaal-tls-#{SecureRandom.hex(4)}", config: config).tap { |b| handles << b }
  end

  def url = "rediss://:#{secret}@127.0.0.1:#{server.port}/0"

  it "claims over rediss:// with ssl_params ca_file, the certificate and its IP address verified" do
    b = build(url: url, ssl_params: { ca_file: files.ca })
    expect(b.claim([["job", now]], lease_ms: 60_000, node: "n", now: now)).to eq([true])
    expect(b.claim([["job", now]], lease_ms: 60_000, node: "n", now: now)).to eq([false])
    expect(b.dispatches(limit: 5).map { |r| r[:key] }).to eq(["job"])
  end

  it "raises a clear ConnectionError for a certificate signed by another CA, without the password" do
    b = build(url: url, ssl_params: { ca_file: files.other_ca })
    expect { b.ping }.to raise_error(Kaal::ConnectionError,
                                     /TLS with 127\.0\.0\.1:#{server.port} failed: certificate verify failed/) { |e|
      expect(e.message).not_to include(secret)
    }
    expect(b.connected?).to be(false)
  end

  it "verifies by default: the system's CAs do not know the test CA" do
    expect { build(url: url).ping }.to raise_error(Kaal::ConnectionError, /certificate verify failed/)
  end

  it "checks the server name: hostname: localhost passes, a name the certificate lacks fails" do
    expect(build(url: url, ssl_params: { ca_file: files.ca, hostname: "localhost" }).ping).to be(true)
    expect { build(url: url, ssl_params: { ca_file: files.ca, hostname: "redis.example" }).ping }
      .to raise_error(Kaal::ConnectionError, /certificate verify failed: hostname mismatch/)
    # verify_hostname: false keeps the chain check only
    expect(build(url: url, ssl_params: { ca_file: files.ca, hostname: "redis.example", verify_hostname: false }).ping)
      .to be(true)
  end

  it "connects without verification only when asked: verify_mode VERIFY_NONE" do
    b = build(url: url, ssl_params: { verify_mode: OpenSSL::SSL::VERIFY_NONE })
    expect(b.claim([["job", now]], lease_ms: 1000, node: "n", now: now)).to eq([true])
  end

  it "refuses unusable TLS settings by name when the configuration is read" do
    expect { build(url: url, ssl_params: { ca_file: "/nonexistent/ca.pem" }) }
      .to raise_error(Kaal::ConfigurationError, %r{backend_config\.ssl_params\.ca_file: no such file "/nonexistent/ca\.pem"})
    expect { build(url: url, ssl_params: { ca_file: files.ca, ciphers: "x" }) }
      .to raise_error(Kaal::ConfigurationError, /ssl_params: unknown key\(s\) ciphers/)
    expect { build(url: url, ssl_params: { cert: files.client_cert }) }
      .to raise_error(Kaal::ConfigurationError, /needs both cert and key; key is missing/)
    expect { build(url: "redis://127.0.0.1:#{server.port}/0", ssl_params: { ca_file: files.ca }) }
      .to raise_error(Kaal::ConfigurationError, /ssl_params is given but TLS is off/)
  end

  it "after fork the child opens its own TLS session and leaves the parent's untouched" do
    b = build(url: url, ssl_params: { ca_file: files.ca })
    expect(b.ping).to be(true)
    pid = fork do
      ok = b.claim([["child", now]], lease_ms: 60_000, node: "c", now: now) == [true]
      b.close
      exit!(ok ? 0 : 1)
    end
    _, status = Process.wait2(pid)
    expect(status.exitstatus).to eq(0)
    expect(b.connected?).to be(true)
    expect(b.claim([["parent", now]], lease_ms: 60_000, node: "p", now: now)).to eq([true]) # same session
  end

  it "ends a TLS read at once on an interrupt (server stopped with SIGSTOP)" do
    b = build(url: url, ssl_params: { ca_file: files.ca }, command_timeout: 10)
    expect(b.ping).to be(true)
    Process.kill("STOP", server.pid)
    begin
      t0 = mono
      expect { Timeout.timeout(0.3) { b.claim([["job", now]], lease_ms: 1000, node: "n", now: now) } }
        .to raise_error(Timeout::Error)
      expect(mono - t0).to be < 1.0
    ensure
      Process.kill("CONT", server.pid)
    end
    expect(b.claim([["job2", now]], lease_ms: 1000, node: "n", now: now)).to eq([true]) # reconnected
  end

  it "ends a TLS handshake at once on an interrupt (a listener that never answers)" do
    silent = TCPServer.new("127.0.0.1", 0)
    b = build(url: "rediss://127.0.0.1:#{silent.addr[1]}/0", ssl_params: { ca_file: files.ca }, connect_timeout: 10)
    t0 = mono
    expect { Timeout.timeout(0.3) { b.ping } }.to raise_error(Timeout::Error)
    expect(mono - t0).to be < 1.0
  ensure
    silent&.close
  end

  describe "client certificates (the server requires one)" do
    before(:all) do
      @mutual = Kaal::Spec::RedisTlsServer.start(@files, require_client_cert: true)
    end

    after(:all) { @mutual&.stop }

    let(:mutual_url) { "rediss://127.0.0.1:#{@mutual.port}/0" }

    it "connects with cert and key files, and fails with a ConnectionError without them" do
      b = build(url: mutual_url, ssl_params: { ca_file: files.ca, cert: files.client_cert, key: files.client_key })
      expect(b.claim([["job", now]], lease_ms: 1000, node: "n", now: now)).to eq([true])
      expect { build(url: mutual_url, ssl_params: { ca_file: files.ca }).ping }.to raise_error(Kaal::ConnectionError)
    end

    it "takes TLS settings, OpenSSL objects included, from a redis-rb object passed as redis:" do
      redis = Redis.new(url: mutual_url, ssl_params: {
                          ca_file: files.ca, cert: OpenSSL::X509::Certificate.new(File.read(files.client_cert)),
                          key: OpenSSL::PKey.read(File.read(files.client_key))
                        })
      b = build(redis: redis)
      expect(b.claim([["job", now]], lease_ms: 1000, node: "n", now: now)).to eq([true])
      expect(redis.call("PING")).to eq("PONG") # the same settings work for redis-rb itself
      redis.close
    end
  end
end
