# frozen_string_literal: true

require "fileutils"
require "open3"
require "tmpdir"

module Kaal
  module Chaos
    # Certificates for TLS runs (bin/chaos --tls) and specs, made with the openssl command line in a
    # fresh directory: a CA, a server certificate it signed (for 127.0.0.1 and
    # localhost), a client certificate it signed, and a second, unrelated CA
    # (the wrong one). EC P-256 keys: quick to make.
    #
    #   files = Kaal::Chaos::TlsFiles.new          # or .new(dir)
    #   files.ca          # path of ca.crt
    #   files.other_ca    # a CA that signed nothing here
    #   files.cleanup
    class TlsFiles
      attr_reader :dir

      def self.available?
        system("command -v openssl >/dev/null 2>&1")
      end

      def initialize(dir = nil)
        @dir = dir || Dir.mktmpdir("kaal-tls-")
        FileUtils.mkdir_p(@dir)
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
  end
end
