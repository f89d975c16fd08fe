# frozen_string_literal: true

require "fileutils"
require "open3"
require "openssl"
require "tmpdir"
require_relative "redis_server"

module Kaal
  module Spec
    # Certificates for TLS specs, made with the openssl command line in a
    # fresh directory: a CA, a server certificate it signed (for 127.0.0.1 and
    # localhost), a client certificate it signed, and a second, unrelated CA
    # (the wrong one). EC P-256 keys: quick to make.
    #
    #   files = Kaal::Spec::TlsFiles.new
    #   files.ca          # path of ca.crt
    #   files.other_ca    # a CA that signed nothing here
    #   files.cleanup
    class TlsFiles
      attr_reader :dir

      def self.available?
        system("command -v openssl >/dev/null 2>&1")
      end

      def initialize
        @dir = Dir.mktmpdir("kaal-tls-")
        make_ca("ca", "kaal test CA")
        make_ca("other-ca", "kaal unrelated CA")
        signed("server", "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost")
        signed("client", "kaal-client", "extendedKeyUsage=clientAuth")
      end

      def ca = file("ca.crt")
      def other_ca = file("other-ca.crt")
      def server_cert = file("server.crt")
      def server_key = file("server.key")
      def client_cert = file("client.crt")
      def client_key = file("client.key")

      def cleanup
        FileUtils.rm_rf(@dir)
      end

      private

      def file(name) = File.join(@dir, name)

      def make_ca(name, cn)
        openssl("req", "-x509", *new_key(name), "-out", file("#{name}.crt"), "-days", "2", "-subj", "/CN=#{cn}")
      end

      def signed(name, cn, extension)
        File.write(file("#{name}.ext"), "#{extension}\n")
        openssl("req", *new_key(name), "-out", file("#{name}.csr"), "-subj", "/CN=#{cn}")
        openssl("x509", "-req", "-in", file("#{name}.csr"), "-CA", ca, "-CAkey", file("ca.key"), "-CAcreateserial",
                "-out", file("#{name}.crt"), "-days", "2", "-extfile", file("#{name}.ext"))
      end

      def new_key(name)
        ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", file("#{name}.key")]
      end

      def openssl(*args)
        out, status = Open3.capture2e("openssl", *args)
        raise "openssl #{args.first} failed:\n#{out}" unless status.success?
      end
    end

    # A redis-server that speaks only TLS (--port 0 --tls-port PORT) with the
    # certificates of a TlsFiles. Client certificates are optional unless
    # `require_client_cert`.
    class RedisTlsServer < RedisServer
      attr_reader :files

      def self.start(files, *extra, require_client_cert: false)
        new(files, *extra, require_client_cert: require_client_cert).tap(&:start)
      end

      def initialize(files, *extra, require_client_cert: false)
        @files = files
        @require_client_cert = require_client_cert
        super(*extra)
      end

      def url(db = 0)
        "rediss://127.0.0.1:#{port}/#{db}"
      end

      private

      def listen_args
        ["--port", "0", "--tls-port", port.to_s, "--tls-cert-file", files.server_cert,
         "--tls-key-file", files.server_key, "--tls-ca-cert-file", files.ca,
         "--tls-auth-clients", @require_client_cert ? "yes" : "optional"]
      end

      def open_socket
        ctx = OpenSSL::SSL::SSLContext.new
        ctx.set_params(ca_file: files.ca, cert: OpenSSL::X509::Certificate.new(File.read(files.client_cert)),
                       key: OpenSSL::PKey.read(File.read(files.client_key)))
        TCPSocket.open("127.0.0.1", port) do |tcp|
          ssl = OpenSSL::SSL::SSLSocket.new(tcp, ctx)
          ssl.sync_close = true
          ssl.hostname = "localhost"
          begin
            ssl.connect
          rescue OpenSSL::SSL::SSLError => e
            raise Errno::ECONNREFUSED, e.message
          end
          begin
            yield ssl
          ensure
            ssl.close
          end
        end
      end
    end
  end
end
