# frozen_string_literal: true

module Kaal
  module Backend
    # The Redis settings beyond host, port and password: TLS (ssl:,
    # ssl_params:) and Sentinel (sentinels:, name:, sentinel_username:,
    # sentinel_password:), named as redis-rb names them, read from
    # backend_config, a redis+sentinel:// URL or a redis-rb / RedisClient
    # object. They become these connection parameters of the C backend:
    #
    #   "sslmode"        verify-full (the default with TLS), verify-ca, no-verify
    #   "ssl_ca" "ssl_ca_path" "ssl_cert" "ssl_key" "ssl_hostname"
    #   "sentinels"      "host:port,host:port"
    #   "sentinel_master" "sentinel_username" "sentinel_password"
    #   "wait_replicas" "wait_timeout_ms"  WAIT after each write
    #
    # Every mistake is a Kaal::ConfigurationError naming the setting.
    module RedisParams
      KEYS = %i[ssl ssl_params sentinels name sentinel_username sentinel_password wait_replicas wait_timeout].freeze
      SSL_KEYS = %i[ca_file ca_path cert key verify_mode verify_hostname hostname].freeze
      SENTINEL_PORT = 26_379
      # OpenSSL::SSL::VERIFY_NONE and VERIFY_PEER, without loading openssl.
      VERIFY_NONE = 0
      VERIFY_PEER = 1

      module_function

      # Adds what backend_config says (TLS, sentinels) to params. kind: the
      # backend kind; these keys are refused for any other than :redis.
      def apply(kind, params, config, source = "backend_config")
        given = KEYS.reject { |k| config[k].nil? }
        return params if given.empty?
        unless kind == :redis
          raise ConfigurationError, "#{source}.#{given.first} is a redis setting; the #{kind} backend does not take it"
        end

        add_ssl(params, config[:ssl], config[:ssl_params], source)
        add_sentinels(params, config, source)
        add_wait(params, config[:wait_replicas], config[:wait_timeout], source)
        params
      end

      # wait_replicas: N (WAIT for N replicas after each write; 0: off),
      # wait_timeout: seconds (default 1).
      def add_wait(params, replicas, timeout, source)
        unless replicas.nil? || (replicas.is_a?(Integer) && replicas.between?(0, 1000))
          raise ConfigurationError, "#{source}.wait_replicas must be an Integer from 0 to 1000, got #{replicas.inspect}"
        end
        if timeout && !replicas&.positive?
          raise ConfigurationError, "#{source}.wait_timeout needs wait_replicas (a number of replicas > 0)"
        end

        params["wait_replicas"] = replicas if replicas&.positive?
        ConnectionParams.add_timeout(params, "wait_timeout_ms", timeout, "#{source}.wait_timeout")
      end

      # ssl: true / false, ssl_params: a Hash (see SSL_KEYS).
      def add_ssl(params, ssl, ssl_params, source)
        unless ssl.nil? || ssl == true || ssl == false
          raise ConfigurationError, "#{source}.ssl must be true or false, got #{ssl.inspect}"
        end
        if ssl == false && params["sslmode"]
          raise ConfigurationError, "#{source}.ssl is false but the URL asks for TLS (rediss://)"
        end

        params["sslmode"] ||= "verify-full" if ssl
        return if ssl_params.nil?

        unless ssl_params.is_a?(Hash)
          raise ConfigurationError, "#{source}.ssl_params must be a Hash, got #{ssl_params.class}"
        end
        unless params["sslmode"]
          raise ConfigurationError, "#{source}.ssl_params is given but TLS is off: use a rediss:// URL or ssl: true"
        end

        opts = ssl_params.to_h { |k, v| [k.to_sym, v] }
        unknown = opts.keys - SSL_KEYS
        unless unknown.empty?
          raise ConfigurationError, "#{source}.ssl_params: unknown key(s) #{unknown.join(", ")} " \
                                    "(valid: #{SSL_KEYS.join(", ")})"
        end
        read_ssl_params(params, opts, "#{source}.ssl_params")
      end

      def read_ssl_params(params, opts, source)
        put(params, "ssl_ca", path(opts[:ca_file], "#{source}.ca_file", :file))
        put(params, "ssl_ca_path", path(opts[:ca_path], "#{source}.ca_path", :directory))
        put(params, "ssl_cert", pem_or_path(opts[:cert], "#{source}.cert", :to_pem))
        put(params, "ssl_key", pem_or_path(opts[:key], "#{source}.key", :private_to_pem, :to_pem))
        if params["ssl_cert"].nil? != params["ssl_key"].nil?
          missing = params["ssl_cert"] ? "key" : "cert"
          raise ConfigurationError, "#{source}: a client certificate needs both cert and key; #{missing} is missing"
        end
        hostname = opts[:hostname]
        unless hostname.nil? || (hostname.is_a?(String) && !hostname.empty?)
          raise ConfigurationError, "#{source}.hostname must be a non-empty String, got #{hostname.inspect}"
        end

        put(params, "ssl_hostname", hostname)
        params["sslmode"] = sslmode(opts[:verify_mode], opts[:verify_hostname], source)
      end

      def sslmode(verify_mode, verify_hostname, source)
        mode =
          case verify_mode
          when nil, VERIFY_PEER, :peer, "peer" then "verify-full"
          when VERIFY_NONE, :none, "none" then "no-verify"
          else
            raise ConfigurationError, "#{source}.verify_mode must be OpenSSL::SSL::VERIFY_PEER or VERIFY_NONE " \
                                      "(or :peer, :none), got #{verify_mode.inspect}"
          end
        unless [nil, true, false].include?(verify_hostname)
          raise ConfigurationError, "#{source}.verify_hostname must be true or false, got #{verify_hostname.inspect}"
        end

        mode == "verify-full" && verify_hostname == false ? "verify-ca" : mode
      end

      def path(value, what, kind)
        return nil if value.nil?
        unless value.is_a?(String) && !value.empty?
          raise ConfigurationError, "#{what} must be a path (a String), got #{value.class}"
        end

        ok = kind == :file ? File.file?(value) && File.readable?(value) : File.directory?(value)
        raise ConfigurationError, "#{what}: no such #{kind} #{value.inspect}" unless ok

        value
      end

      # A file path, or an OpenSSL object (as redis-rb takes them) written
      # out as PEM text with the first of `writers` it has.
      def pem_or_path(value, what, *writers)
        return nil if value.nil?
        return path(value, what, :file) if value.is_a?(String) && !value.start_with?("-----BEGIN")
        return value if value.is_a?(String)

        writer = writers.find { |w| value.respond_to?(w) }
        raise ConfigurationError, "#{what} must be a file path or an OpenSSL object, got #{value.class}" unless writer

        value.public_send(writer)
      end

      # sentinels: [Hash / "host:port" / "redis://host:port", ...] or
      # "host:port,host:port"; name: the master's name; sentinel_username,
      # sentinel_password: AUTH with the sentinels.
      def add_sentinels(params, config, source)
        sentinels = config[:sentinels]
        name = config[:name]
        if sentinels.nil?
          %i[name sentinel_username sentinel_password].each do |k|
            next if config[k].nil?

            raise ConfigurationError, "#{source}.#{k} is a Sentinel setting: give sentinels too"
          end
          return
        end

        list, password = sentinel_list(sentinels, "#{source}.sentinels")
        # As redis-client: without name:, the URL's host is the master's name.
        name = params["host"] if name.nil? && config[:url]
        unless name.is_a?(String) || name.is_a?(Symbol)
          raise ConfigurationError, "#{source}.name (the master's name the sentinels watch, such as " \
                                    "\"mymaster\") is needed with sentinels"
        end
        raise ConfigurationError, "#{source}.name must not be empty" if name.to_s.empty?

        set_sentinels(params, list, name.to_s, config[:sentinel_username], config[:sentinel_password] || password,
                      source)
      end

      def set_sentinels(params, list, name, username, password, source)
        %w[host port socket].each { |k| params.delete(k) }
        params["sentinels"] = list.join(",")
        params["sentinel_master"] = name
        { "sentinel_username" => username, "sentinel_password" => password }.each do |k, v|
          next if v.nil?
          unless v.is_a?(String)
            raise ConfigurationError, "#{source}.#{k} must be a String, got #{v.class}"
          end

          put(params, k, v)
        end
        params
      end

      # ["host:port", ...] and the first password an entry carries.
      def sentinel_list(sentinels, what)
        entries = sentinels.is_a?(String) ? sentinels.split(",").map(&:strip) : sentinels
        unless entries.is_a?(Array) && !entries.empty?
          raise ConfigurationError, "#{what} must be a non-empty Array of host:port (or {host:, port:}), " \
                                    "got #{sentinels.inspect}"
        end

        password = nil
        list = entries.each_with_index.map do |entry, i|
          host, port, pw = sentinel_entry(entry, "#{what}[#{i}]")
          password ||= pw
          host.include?(":") ? "[#{host}]:#{port}" : "#{host}:#{port}"
        end
        [list, password]
      end

      def sentinel_entry(entry, what)
        case entry
        when Hash
          e = entry.to_h { |k, v| [k.to_sym, v] }
          host, port, pw = e[:host], e[:port], e[:password]
        when String
          m = entry.sub(%r{\Aredis://}i, "").match(/\A(?:\[([^\]]+)\]|([^:\[\]]+))(?::(\d+))?\z/)
          raise ConfigurationError, "#{what}: #{entry.inspect} is not host:port" unless m

          host, port = m[1] || m[2], m[3]
        else
          raise ConfigurationError, "#{what} must be \"host:port\" or {host:, port:}, got #{entry.class}"
        end
        raise ConfigurationError, "#{what} has no host" unless host.is_a?(String) && !host.empty?

        [host, ConnectionParams.port_of(port || SENTINEL_PORT, "#{what} port"), pw]
      end

      # redis+sentinel://[user:password@]host:port[,host:port...]/master[/db]
      # (rediss+sentinel:// for TLS); query: sentinel_password,
      # sentinel_username, connect_timeout, timeout.
      def from_url(scheme, rest, source)
        unless rest.start_with?("//")
          raise ConfigurationError, "#{source}: expected #{scheme}://host:port,host:port/master_name"
        end

        ConnectionParams.check_reserved!(rest, source)
        authority, _, tail = rest.delete_prefix("//").partition("/")
        path, _, query = tail.partition("?")
        userinfo, _, hosts = authority.rpartition("@")
        q = ConnectionParams.parse_query(query, source)
        name, db = path.split("/", 2).map { |s| ConnectionParams.decode(s) }
        raise ConfigurationError, "#{source}: the URL names no master (#{scheme}://hosts/master_name)" if name.to_s.empty?

        params = {}
        user, sep, password = userinfo.partition(":")
        put(params, "username", ConnectionParams.decode(user))
        put(params, "password", ConnectionParams.decode(password)) unless sep.empty?
        db = db.to_s.delete_suffix("/")
        unless db.empty?
          raise ConfigurationError, "#{source}: redis database must be a number, got #{db.inspect}" unless db.match?(/\A\d+\z/)

          params["database"] = db
        end
        params["sslmode"] = "required" if scheme == "rediss+sentinel"
        list, = sentinel_list(hosts, "#{source} sentinels")
        set_sentinels(params, list, name, q["sentinel_username"], q["sentinel_password"], source)
        ConnectionParams.add_timeout(params, "connect_timeout_ms", q["connect_timeout"], "#{source} connect_timeout")
        ConnectionParams.add_timeout(params, "command_timeout_ms", q["timeout"], "#{source} timeout")
        params
      end

      # TLS and Sentinel settings of a redis-rb 5 / RedisClient config, read
      # without connecting (a Sentinel config's host would ask the sentinels).
      def from_client_config(config)
        out = { ssl: safe(config, :ssl?) || safe(config, :ssl), ssl_params: safe(config, :ssl_params) }
        return out unless safe(config, :sentinel?)

        sentinels = Array(safe(config, :sentinels))
        first = sentinels.first
        password = first && safe(first, :password)
        password = password.call(nil) if password.respond_to?(:call)
        username = first && safe(first, :username)
        out.merge(sentinels: sentinels.map { |s| { host: safe(s, :host), port: safe(s, :port) } },
                  name: safe(config, :name), sentinel_password: password,
                  sentinel_username: (username unless username == "default"),
                  username: safe(config, :username), password: safe(config, :password), db: safe(config, :db),
                  connect_timeout: safe(config, :connect_timeout), read_timeout: safe(config, :read_timeout))
      end

      def safe(obj, name)
        ConnectionParams.safe(obj, name)
      end

      def put(params, key, value)
        ConnectionParams.put(params, key, value)
      end
    end
  end
end
