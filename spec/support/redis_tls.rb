# frozen_string_literal: true

require "fileutils"
require "open3"
require "openssl"
require "tmpdir"
require_relative "redis_server"
require_relative "../../test/chaos/tls_files"

module Kaal
  module Spec
    TlsFiles = Kaal::Chaos::TlsFiles

    # A redis-server that speaks only TLS (--port 0 --tls-port PORT) with the
    # certificates of a TlsFiles (files nil: plain TCP, as RedisServer).
    # Client certificates are optional unless `require_client_cert`.
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
        return super unless files

        ["--port", "0", "--tls-port", port.to_s, "--tls-cert-file", files.server_cert,
         "--tls-key-file", files.server_key, "--tls-ca-cert-file", files.ca,
         "--tls-auth-clients", @require_client_cert ? "yes" : "optional"]
      end

      def open_socket(&block)
        return super unless files

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
            block.call(ssl)
          ensure
            ssl.close
          end
        end
      end
    end
  end
end
