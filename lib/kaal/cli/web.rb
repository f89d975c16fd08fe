# frozen_string_literal: true

module Kaal
  class CLI
    # `kaal web`: the dashboard (Kaal::Web) on its own, served by Puma (the
    # puma gem must be installed; it is not a dependency of kaal). It reads
    # the configured backend like `kaal status`, so it shows what the
    # scheduler nodes share; over the memory backend it sees only its own
    # process. It has no authentication: bind it to 127.0.0.1 (the default)
    # or put it behind one.
    module Web
      DEFAULT_BIND = "127.0.0.1:9395"

      private

      def cmd_web(args, opts)
        no_arguments(args, "web")
        bind = opts[:bind] || DEFAULT_BIND
        host, port = Kaal::Configuration.split_bind(bind)
        raise UsageError, "--bind must be HOST:PORT (127.0.0.1:9395, [::1]:9395), got #{bind.inspect}" unless host

        boot(opts, load_jobs: :required, quiet: true)
        require "kaal/web"
        begin
          require "puma"
          require "puma/server"
        rescue LoadError
          raise Kaal::ConfigurationError, "kaal web needs the puma gem: add `gem \"puma\"` to your Gemfile (or gem install puma)"
        end
        app = Kaal::Web.new(read_only: opts[:read_only] ? true : nil) # nil: the read_only option
        server = ::Puma::Server.new(app, nil, min_threads: 0, max_threads: 4)
        begin
          server.add_tcp_listener(host, port.to_i)
        rescue SystemCallError, SocketError => e
          raise Kaal::Error, "--bind #{bind}: cannot listen (#{e.message})"
        end
        url = "http://#{host.include?(":") ? "[#{host}]" : host}:#{server.connected_ports.first}/"
        @out.puts "kaal web: dashboard of #{Kaal.configuration.backend} namespace #{Kaal.configuration.namespace.inspect} " \
                  "on #{url}#{app.read_only ? " (read-only)" : ""}; Ctrl-C stops it"
        @out.flush
        stop = Queue.new
        %w[INT TERM].each { |sig| trap(sig) { stop << sig } }
        thread = server.run
        stop.pop
        server.stop(true)
        thread.join(10)
        0
      end
    end
  end
end
