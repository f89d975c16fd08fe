# frozen_string_literal: true

require "uri"
require_relative "redis_params"

module Kaal
  module Backend
    # Turns what a user configures (a URL, an Active Record style connection
    # hash, a redis-rb Redis object, a Sequel::Database, a file path) into the
    # flat, String-keyed parameter Hash the C backends take:
    #
    #   "host" "port" "socket" "database" "username" "password" "path"
    #   "sslmode" "connect_timeout_ms" "command_timeout_ms"
    #
    # Only keys with a value are present. For Redis, "database" is the db
    # number as text. Every mistake is a Kaal::ConfigurationError whose message
    # never contains a password.
    module ConnectionParams
      KINDS = {
        "memory" => :memory,
        "redis" => :redis,
        "sqlite" => :sqlite, "sqlite3" => :sqlite,
        "postgres" => :postgres, "postgresql" => :postgres, "postgis" => :postgres, "pg" => :postgres,
        "mysql" => :mysql, "mysql2" => :mysql, "trilogy" => :mysql, "mariadb" => :mysql
      }.freeze

      # URL scheme => backend kind.
      SCHEMES = {
        "redis" => :redis, "rediss" => :redis, "unix" => :redis, "redis+unix" => :redis,
        "redis+sentinel" => :redis, "rediss+sentinel" => :redis,
        "postgres" => :postgres, "postgresql" => :postgres, "postgis" => :postgres,
        "mysql" => :mysql, "mysql2" => :mysql, "trilogy" => :mysql, "mariadb" => :mysql,
        "sqlite" => :sqlite, "sqlite3" => :sqlite
      }.freeze

      # Active Record adapter names => backend kind.
      ADAPTERS = {
        "sqlite3" => :sqlite, "sqlite" => :sqlite,
        "postgresql" => :postgres, "postgis" => :postgres, "postgres" => :postgres,
        "mysql2" => :mysql, "trilogy" => :mysql, "mysql" => :mysql, "mariadb" => :mysql
      }.freeze

      CONFIG_KEYS = (%i[url connection redis database path connect_timeout command_timeout timeout] +
                     RedisParams::KEYS).freeze
      SECRET_KEY = /pass(word)?|secret|token|credential/i.freeze
      REDACTED = "[REDACTED]"

      module_function

      # The canonical kind Symbol for a name (:postgresql -> :postgres, ...).
      def normalize_kind(kind)
        name = kind.is_a?(Symbol) ? kind.to_s : kind
        found = KINDS[name.to_s.downcase] if name.is_a?(String)
        return found if found

        raise ConfigurationError,
              "unknown backend #{kind.inspect}: use memory, redis, sqlite, postgres or mysql"
      end

      # kind: :redis, :sqlite, :postgres, :mysql or :memory (aliases allowed).
      # config: Hash with Symbol or String keys: url, connection, redis,
      # database (a Sequel::Database), path, connect_timeout, command_timeout
      # (seconds), timeout (seconds, both timeouts unless given separately, as
      # in redis-rb). ENV["KAAL_BACKEND_URL"] wins over every other source.
      # The config may also be given as keywords: from(:redis, url: "...").
      def from(kind, config = nil, env: ENV, **options)
        kind = normalize_kind(kind)
        config = symbolize(config || {}, "backend_config").merge(options)
        unknown = config.keys - CONFIG_KEYS
        unless unknown.empty?
          raise ConfigurationError, "backend_config: unknown key(s) #{unknown.map(&:to_s).join(", ")} " \
                                    "(valid: #{CONFIG_KEYS.join(", ")})"
        end
        return {} if kind == :memory

        url = env["KAAL_BACKEND_URL"].to_s.strip
        url = nil if url.empty?
        params =
          if url then from_url(kind, url, "KAAL_BACKEND_URL")
          elsif present?(config[:url]) then from_url(kind, config[:url], "backend_config.url")
          elsif config[:connection] then from_connection(kind, config[:connection])
          elsif config[:redis] then from_redis(kind, config[:redis])
          elsif config[:database] then from_sequel(kind, config[:database])
          elsif present?(config[:path]) then from_url(kind, config[:path].to_s, "backend_config.path")
          else {}
          end
        add_timeout(params, "connect_timeout_ms", config[:timeout], "timeout")
        add_timeout(params, "command_timeout_ms", config[:timeout], "timeout")
        add_timeout(params, "connect_timeout_ms", config[:connect_timeout], "connect_timeout")
        add_timeout(params, "command_timeout_ms", config[:command_timeout], "command_timeout")
        RedisParams.apply(kind, params, config)
        check_sqlite(params) if kind == :sqlite
        params
      end

      # A URL or a plain path (SQLite).
      def from_url(kind, url, source = "url")
        unless url.is_a?(String)
          raise ConfigurationError, "#{source} must be a String, got #{url.class}"
        end

        scheme, rest = split_scheme(url)
        if scheme.nil?
          return { "path" => url } if kind == :sqlite
          # host=h1,h2 dbname=app sslmode=verify-full: a libpq keyword string, for libpq itself.
          return { "conninfo" => url } if kind == :postgres && url.match?(/\A\s*\w+\s*=/)

          raise ConfigurationError, "#{source}: #{redact(url).inspect} is not a URL " \
                                    "(expected #{example_url(kind)})"
        end
        found = SCHEMES[scheme]
        unless found
          raise ConfigurationError, "#{source}: unknown URL scheme #{scheme.inspect} in #{redact(url).inspect}"
        end
        check_kind(kind, found, "#{source} #{redact(url).inspect}")
        case found
        when :sqlite then sqlite_url(rest, source)
        when :redis
          scheme.end_with?("+sentinel") ? RedisParams.from_url(scheme, rest, source) : redis_url(scheme, rest, url, source)
        when :postgres then postgres_url(scheme, rest, url, source)
        else server_url(found, scheme, rest, source)
        end
      end

      # An Active Record style connection hash.
      def from_connection(kind, conn)
        conn = symbolize(conn, "backend_config.connection")
        adapter = conn[:adapter]&.to_s
        params = present?(conn[:url]) ? from_url(kind, conn[:url], "backend_config.connection.url") : {}
        if present?(adapter)
          found = ADAPTERS[adapter.downcase]
          unless found
            raise ConfigurationError, "backend_config.connection: unknown adapter #{adapter.inspect} " \
                                      "(valid: #{ADAPTERS.keys.join(", ")})"
          end
          check_kind(kind, found, "backend_config.connection adapter #{adapter.inspect}")
        end
        if kind == :sqlite
          path = conn[:database] || conn[:path]
          params.merge!(sqlite_url(path.to_s, "backend_config.connection.database")) if present?(path)
        else
          put(params, "host", conn[:host])
          put(params, "port", port_of(conn[:port], "backend_config.connection.port"))
          put(params, "socket", conn[:socket] || conn[:path])
          put(params, "database", conn[:database] || conn[:db] || conn[:dbname])
          put(params, "username", conn[:username] || conn[:user])
          put(params, "password", conn[:password])
          put(params, "sslmode", conn[:sslmode] || conn[:ssl_mode])
          put(params, "ssl_ca", conn[:sslca] || conn[:ssl_ca]) if kind == :mysql
          pg_connection_conninfo(params, conn) if kind == :postgres
        end
        add_timeout(params, "connect_timeout_ms", conn[:connect_timeout], "backend_config.connection.connect_timeout")
        add_timeout(params, "command_timeout_ms", conn[:read_timeout], "backend_config.connection.read_timeout")
        params
      end

      # libpq connection parameters an Active Record hash may carry besides
      # host, port, database, username, password and sslmode.
      LIBPQ_KEYS = %i[sslrootcert sslcert sslkey sslcrl sslpassword sslcompression sslsni ssl_min_protocol_version
                      target_session_attrs load_balance_hosts hostaddr application_name options keepalives_idle
                      keepalives_interval keepalives_count tcp_user_timeout gssencmode channel_binding
                      krbsrvname requirepeer service passfile].freeze

      # A PostgreSQL hash with a url: and/or libpq parameters becomes a
      # conninfo for libpq: the URL (or nothing) with the hash's settings
      # added, so none is dropped. A plain hash keeps the separate fields.
      def pg_connection_conninfo(params, conn)
        extras = LIBPQ_KEYS.select { |k| present?(conn[k]) }.to_h { |k| [k.to_s, conn[k].to_s] }
        return if params["conninfo"].nil? && extras.empty?

        given = { "host" => conn[:host] || conn[:socket] || conn[:path], "port" => conn[:port],
                  "dbname" => conn[:database] || conn[:db] || conn[:dbname], "user" => conn[:username] || conn[:user],
                  "password" => conn[:password], "sslmode" => conn[:sslmode] || conn[:ssl_mode] }
        pairs = given.reject { |_, v| !present?(v) }.transform_values(&:to_s).merge(extras)
        params["conninfo"] = pg_append(params["conninfo"].to_s, pairs)
      end

      # +conninfo+ (a URI, a keyword string or "") with +pairs+ added: as
      # query parameters to a URI, as quoted keyword=value pairs otherwise.
      def pg_append(conninfo, pairs)
        return conninfo if pairs.empty?

        if conninfo.match?(%r{\Apostgres(ql)?://}i)
          query = pairs.map { |k, v| "#{k}=#{URI.encode_www_form_component(v).gsub("+", "%20")}" }.join("&")
          "#{conninfo}#{conninfo.include?("?") ? "&" : "?"}#{query}"
        else
          words = pairs.map { |k, v| "#{k}='#{v.gsub(/[\\']/) { |c| "\\#{c}" }}'" }
          [conninfo, *words].reject(&:empty?).join(" ")
        end
      end

      # A redis-rb client (4.x or 5.x). Constructing one does not connect, and
      # neither does reading its settings here.
      def from_redis(kind, redis)
        check_kind(kind, :redis, "backend_config.redis")
        opts = redis_options(redis)
        params = {}
        put(params, "host", opts[:host]) unless present?(opts[:path])
        put(params, "port", port_of(opts[:port], "redis port")) unless present?(opts[:path])
        put(params, "socket", opts[:path])
        put(params, "database", opts[:db]&.to_s)
        put(params, "username", opts[:username])
        put(params, "password", opts[:password])
        params["sslmode"] = "required" if opts[:ssl]
        add_timeout(params, "connect_timeout_ms", opts[:connect_timeout], "redis connect_timeout")
        add_timeout(params, "command_timeout_ms", opts[:read_timeout], "redis read_timeout")
        RedisParams.add_ssl(params, nil, opts[:ssl_params], "backend_config.redis") if opts[:ssl]
        RedisParams.add_sentinels(params, opts, "backend_config.redis") if opts[:sentinels]
        params
      end

      # A Sequel::Database: its own options (no connection is made).
      def from_sequel(kind, db)
        unless db.respond_to?(:opts)
          raise ConfigurationError, "backend_config.database must be a Sequel::Database, got #{db.class}"
        end

        opts = db.opts
        adapter = (opts[:adapter] || (db.respond_to?(:adapter_scheme) && db.adapter_scheme)).to_s
        found = ADAPTERS[adapter.downcase]
        unless found
          raise ConfigurationError, "backend_config.database: Sequel adapter #{adapter.inspect} is not " \
                                    "supported (postgres, mysql2, trilogy, sqlite)"
        end
        check_kind(kind, found, "backend_config.database (Sequel #{adapter})")
        conn = {
          adapter: adapter, host: opts[:host], port: opts[:port], socket: opts[:socket],
          database: opts[:database], username: opts[:user] || opts[:username],
          password: opts[:password], sslmode: opts[:sslmode], connect_timeout: opts[:connect_timeout]
        }
        from_connection(kind, conn)
      end

      # A copy of a URL String or a (nested) Hash with every password replaced
      # by "[REDACTED]"; anything else is returned as is. Use it before
      # printing configuration (status, logs, errors).
      def redact(value)
        case value
        when String then redact_url(value)
        when Hash
          value.each_with_object({}) do |(k, v), out|
            out[k] = k.to_s.match?(SECRET_KEY) && !v.nil? ? REDACTED : redact(v)
          end
        when Array then value.map { |v| redact(v) }
        else value
        end
      end

      def redact_url(url)
        return url unless url.include?("://") || url.include?("?")

        # The userinfo runs to the last "@" of the authority, so a password
        # with a raw "#", "/" or "?" is hidden whole, never in part.
        if (m = url.match(%r{\A([a-z][a-z0-9+.-]*://)(.*)@(?=[^@]*\z)}im)) && !m[2].match?(%r{\A[^:]*[/?#]})
          url = "#{m[1]}#{without_password_text(m[2])}@#{m.post_match}"
        end
        out = url.sub(%r{\A([a-z][a-z0-9+.-]*://)([^@/?#]*)@}i) { without_password(Regexp.last_match) }
        out.gsub(/([?&](?:[a-z]+_)?(?:password|pass|secret|token)=)[^&#]*/i) { "#{Regexp.last_match(1)}#{REDACTED}" }
      end

      # Every password of a URL or a key=value setting anywhere in free
      # text (an error message, a log line), replaced with [REDACTED].
      def redact_text(text)
        return text unless text.include?("://") || text.include?("=")

        out = text.gsub(%r{([a-z][a-z0-9+.-]*://)([^@/?#\s]*)@}i) { without_password(Regexp.last_match) }
        out.gsub(/((?:\A|[?&\s;,(])(?:[a-z]+_)?(?:password|passwd|pass|pwd|secret|token)=)("[^"]*"|'[^']*'|[^&#\s;,)]*)/i) do
          value = Regexp.last_match(2)
          quote = value.start_with?('"', "'") ? value[0] : ""
          "#{Regexp.last_match(1)}#{quote}#{REDACTED}#{quote}"
        end
      end

      # ---- helpers ------------------------------------------------------

      # "scheme://user:[REDACTED]@" for a match of (scheme://)(userinfo)@.
      def without_password(match)
        "#{match[1]}#{without_password_text(match[2])}@"
      end

      def without_password_text(userinfo)
        user, sep, = userinfo.partition(":")
        sep.empty? ? userinfo : "#{user}:#{REDACTED}"
      end

      def symbolize(hash, what)
        unless hash.is_a?(Hash)
          raise ConfigurationError, "#{what} must be a Hash, got #{hash.class}"
        end

        hash.each_with_object({}) { |(k, v), out| out[k.to_sym] = v }
      end

      def present?(value)
        !value.nil? && !(value.respond_to?(:empty?) && value.empty?)
      end

      def put(params, key, value)
        return if value.nil?

        value = value.to_s if value.is_a?(Symbol)
        return if value.is_a?(String) && value.empty?

        params[key] = value
      end

      def check_kind(kind, found, what)
        return if kind == found

        raise ConfigurationError, "backend #{kind} cannot use #{what}: that is a #{found} connection"
      end

      def example_url(kind)
        { redis: "redis://host:6379/0", postgres: "postgres://user@host:5432/db",
          mysql: "mysql2://user@host:3306/db", sqlite: "a file path or sqlite3:path" }.fetch(kind)
      end

      def split_scheme(url)
        m = url.match(/\A([a-z][a-z0-9+.-]*):(.*)\z/im)
        return [nil, url] unless m
        # A single letter before ":" is a Windows drive, not a scheme.
        return [nil, url] if m[1].length == 1

        [m[1].downcase, m[2]]
      end

      def decode(str)
        return nil if str.nil?

        str.gsub(/%(\h\h)/) { Regexp.last_match(1).hex.chr }.force_encoding(Encoding::UTF_8)
      end

      def parse_query(query, source)
        return {} if query.nil? || query.empty?

        query.split("&").each_with_object({}) do |pair, out|
          next if pair.empty?

          k, v = pair.split("=", 2)
          raise ConfigurationError, "#{source}: bad query parameter #{k.inspect}" if k.nil? || k.empty?

          out[decode(k)] = decode((v || "").tr("+", " "))
        end
      end

      # //userinfo@host:port/path?query -> parts (all decoded except path),
      # read with the standard library's URI. Error messages never show any
      # part of the userinfo.
      def parse_authority(scheme, rest, source)
        url = "#{scheme}:#{rest}"
        check_reserved!(rest, source)
        uri = begin
          URI.parse(url)
        rescue URI::Error
          raise ConfigurationError, "#{source}: #{safe_url(url)} is not a valid URL#{RESERVED_HINT}"
        end
        raise ConfigurationError, "#{source}: expected scheme://host in the URL" unless rest.start_with?("//")

        {
          user: present?(uri.user) ? decode(uri.user) : nil,
          password: uri.password.nil? ? nil : decode(uri.password),
          host: present?(uri.hostname) ? decode(uri.hostname) : nil,
          port: uri.port ? port_of(uri.port, "#{source} port") : nil,
          path: uri.path.empty? ? nil : uri.path.delete_prefix("/"),
          query: parse_query(uri.query, source)
        }
      end

      RESERVED_HINT = " (percent-encode reserved characters in the user name and password: # as %23, " \
                      "@ as %40, / as %2F, ? as %3F, : as %3A, % as %25)"

      # A raw "#" (a URL fragment) or a second "@" in the authority is a
      # password that was not percent-encoded: say so without echoing it.
      def check_reserved!(rest, source)
        if rest.include?("#")
          raise ConfigurationError, "#{source}: the URL contains a raw \"#\"#{RESERVED_HINT}"
        end
        return unless rest.delete_prefix("//").partition("?").first.count("@") > 1

        raise ConfigurationError, "#{source}: the URL has more than one \"@\" before its host#{RESERVED_HINT}"
      end

      # The URL for a message: scheme and what follows the userinfo only.
      def safe_url(url)
        scheme, _, rest = url.partition("://")
        return "the URL" if rest.empty?

        tail = rest.include?("@") ? rest[(rest.rindex("@") + 1)..] : rest
        "\"#{scheme}://#{rest.include?("@") ? "[userinfo]@" : ""}#{tail.sub(/[?#].*\z/m, "")}\""
      end

      def port_of(value, what)
        return nil if value.nil? || value == ""

        port = Integer(value.to_s, 10)
        raise ArgumentError unless port.between?(1, 65_535)

        port
      rescue ArgumentError
        raise ConfigurationError, "#{what} must be a port number (1-65535), got #{value.inspect}"
      end

      def timeout_ms(value, what)
        seconds = Float(value)
        raise ArgumentError if seconds.negative? || seconds.nan? || seconds.infinite?

        (seconds * 1000).ceil.clamp(1, 2_147_483_647)
      rescue ArgumentError, TypeError
        raise ConfigurationError, "#{what} must be a number of seconds, got #{value.inspect}"
      end

      def add_timeout(params, key, seconds, what)
        return if seconds.nil? || seconds == ""

        params[key] = timeout_ms(seconds, what)
      end

      def sqlite_url(rest, source)
        path = rest.sub(/\?.*\z/m, "")
        path = path[2..] if path.start_with?("//") # sqlite3:///abs -> /abs, sqlite://rel -> rel
        path = decode(path)
        check_sqlite({ "path" => path }, source)
      end

      def check_sqlite(params, source = "sqlite path")
        path = params["path"]
        if path.nil? || path.strip.empty? || path == ":memory:" || path.start_with?("file::memory:")
          raise ConfigurationError,
                "#{source}: the sqlite backend needs a database file (an in-memory database " \
                "cannot be shared between threads, processes or nodes); set backend_config.path " \
                "or url to a file such as db/kaal.sqlite3"
        end
        params
      end

      def redis_url(scheme, rest, url, source)
        if scheme == "unix" || scheme == "redis+unix"
          path, _, query = rest.sub(%r{\A//}, "").partition("?")
          q = parse_query(query, source)
          params = {}
          put(params, "socket", decode(path))
          put(params, "database", q["db"])
          put(params, "password", q["password"])
          put(params, "username", q["username"] || q["user"])
          raise ConfigurationError, "#{source}: #{redact(url).inspect} has no socket path" unless params["socket"]
        else
          parts = parse_authority(scheme, rest, source)
          params = {}
          put(params, "host", parts[:host])
          put(params, "port", parts[:port])
          put(params, "username", parts[:user])
          put(params, "password", parts[:password])
          db = parts[:path].to_s.delete_suffix("/")
          db = parts[:query]["db"] if parts[:query]["db"]
          if present?(db)
            unless db.match?(/\A\d+\z/)
              raise ConfigurationError, "#{source}: redis database must be a number, got #{db.inspect}"
            end

            params["database"] = db
          end
          params["sslmode"] = "required" if scheme == "rediss"
          q = parts[:query]
        end
        add_timeout(params, "connect_timeout_ms", q["connect_timeout"], "#{source} connect_timeout") if q
        add_timeout(params, "command_timeout_ms", q["timeout"] || q["read_timeout"], "#{source} timeout") if q
        params
      end

      # A PostgreSQL URL goes to libpq intact ("conninfo": multi-host,
      # sslrootcert, target_session_attrs and every other libpq parameter),
      # with kaal's own parameters (read_timeout, command_timeout) taken out
      # and an alias scheme (postgis://) written as postgresql://. host, port,
      # database and username are read for display when the URL is a plain
      # single-host one.
      def postgres_url(scheme, rest, url, source)
        check_reserved!(rest, source)
        base, _, query = rest.partition("?")
        pairs = query.split("&")
        q = parse_query(query, source)
        own = pairs.select { |kv| %w[read_timeout command_timeout].include?(decode(kv.split("=", 2)[0])) }
        kept = pairs - own
        conninfo = "#{%w[postgres postgresql].include?(scheme) ? scheme : "postgresql"}:#{base}"
        conninfo += "?#{kept.join("&")}" unless kept.empty?
        params = { "conninfo" => conninfo }
        display = begin
          base.include?(",") ? nil : parse_authority(scheme, base, source)
        rescue ConfigurationError
          nil
        end
        if display
          put(params, "host", display[:host] || (q["host"] unless q["host"]&.start_with?("/")))
          put(params, "port", display[:port])
          put(params, "socket", q["host"]) if q["host"]&.start_with?("/")
          put(params, "database", decode(display[:path].to_s.delete_suffix("/")))
          put(params, "username", display[:user] || q["user"])
        else
          put(params, "host", base.delete_prefix("//").split("@").last.to_s.split("/").first)
        end
        put(params, "sslmode", q["sslmode"])
        add_timeout(params, "connect_timeout_ms", q["connect_timeout"], "#{source} connect_timeout")
        add_timeout(params, "command_timeout_ms", q["read_timeout"] || q["command_timeout"], "#{source} read_timeout")
        params
      end

      # MySQL query parameters kaal reads; Active Record's own ones are accepted and ignored.
      MYSQL_QUERY = %w[socket sslmode ssl_mode ssl-mode ssl ssl-ca ssl_ca sslca connect_timeout read_timeout
                       user username password host port].freeze
      MYSQL_IGNORED = %w[encoding charset collation pool reconnect prepared_statements checkout_timeout
                         idle_timeout reaping_frequency variables flags].freeze

      def server_url(kind, scheme, rest, source)
        parts = parse_authority(scheme, rest, source)
        q = parts[:query]
        unknown = q.keys - MYSQL_QUERY - MYSQL_IGNORED
        unless unknown.empty?
          raise ConfigurationError, "#{source}: unknown URL parameter #{unknown.first.inspect} " \
                                    "(kaal reads: #{MYSQL_QUERY.join(", ")})"
        end
        params = {}
        host = parts[:host]
        # postgres://user@/db?host=/var/run/postgresql (a socket directory)
        qhost = q["host"]
        host ||= qhost unless qhost&.start_with?("/")
        put(params, "host", host)
        put(params, "port", parts[:port] || port_of(q["port"], "#{source} port"))
        socket = q["socket"] || (qhost if qhost&.start_with?("/"))
        put(params, "socket", socket)
        put(params, "database", decode(parts[:path].to_s.delete_suffix("/")))
        put(params, "username", parts[:user] || q["user"] || q["username"])
        put(params, "password", parts[:password] || q["password"])
        sslmode = q["sslmode"] || q["ssl_mode"] || q["ssl-mode"]
        sslmode ||= "required" if kind == :mysql && %w[true 1].include?(q["ssl"])
        put(params, "sslmode", sslmode)
        put(params, "ssl_ca", q["ssl-ca"] || q["ssl_ca"] || q["sslca"])
        add_timeout(params, "connect_timeout_ms", q["connect_timeout"], "#{source} connect_timeout")
        add_timeout(params, "command_timeout_ms", q["read_timeout"], "#{source} read_timeout")
        params
      end

      # host/port/path/db/username/password/ssl of a redis-rb object, read
      # without connecting: redis-rb 5 and RedisClient (#config),
      # redis-rb 4 (Redis::Client#options), then #connection as a last resort.
      def redis_options(redis)
        # A Redis (redis-rb), a RedisClient, or a RedisClient config
        # (RedisClient.config / RedisClient.sentinel).
        client = redis.respond_to?(:_client) ? redis._client : redis
        config = client.config if client.respond_to?(:config)
        config ||= redis if redis.respond_to?(:new_client)
        if config
          return RedisParams.from_client_config(config) if safe(config, :sentinel?)

          return {
            host: safe(config, :host), port: safe(config, :port), path: safe(config, :path),
            db: safe(config, :db), username: safe(config, :username), password: safe(config, :password),
            ssl: safe(config, :ssl), ssl_params: safe(config, :ssl_params),
            connect_timeout: safe(config, :connect_timeout),
            read_timeout: safe(config, :read_timeout)
          }
        end
        if client.respond_to?(:options)
          opts = client.options
          opts = opts.slice(:host, :port, :path, :db, :username, :password, :ssl, :ssl_params, :connect_timeout,
                            :read_timeout, :sentinels, :name, :sentinel_username, :sentinel_password)
          # redis-rb 4 with sentinels: the URL's host is the master's name.
          opts[:name] ||= opts[:host] if opts[:sentinels]
          return opts
        end
        opts = redis.instance_variable_get(:@options) if redis.instance_variable_defined?(:@options)
        return symbolize(opts, "redis options") if opts.is_a?(Hash)

        if redis.respond_to?(:connection)
          conn = redis.connection
          return { host: conn[:host], port: conn[:port], db: conn[:db] } if conn.is_a?(Hash)
        end
        raise ConfigurationError, "backend_config.redis: cannot read the settings of #{redis.class}; " \
                                  "give backend_config.url instead"
      end

      def safe(obj, name)
        obj.respond_to?(name) ? obj.public_send(name) : nil
      rescue StandardError
        nil
      end
    end
  end
end
