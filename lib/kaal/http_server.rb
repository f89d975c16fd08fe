# frozen_string_literal: true

require "json"
require "socket"
require "io/wait"

module Kaal
  # The small HTTP/1.x listener of `kaal start --http HOST:PORT`: GET (and
  # HEAD) /health and /metrics, 404 for other paths, 405 for other methods.
  # One request per connection (Connection: close), a request head of at
  # most 8 KiB read within read_timeout seconds, at most max_clients
  # connections served at once (each in its own short-lived thread). It runs
  # on threads of its own, never on the tick thread.
  #
  #   server = Kaal::HttpServer.new(bind: "127.0.0.1:9394", health: health, metrics: metrics).start
  #   server.port   # the bound port (useful with port 0)
  #   server.stop
  class HttpServer
    MAX_HEAD = 8192
    REASONS = { 200 => "OK", 400 => "Bad Request", 404 => "Not Found", 405 => "Method Not Allowed",
                408 => "Request Timeout", 431 => "Request Header Fields Too Large", 500 => "Internal Server Error",
                503 => "Service Unavailable" }.freeze

    attr_reader :host

    # bind: "HOST:PORT"; health: a Kaal::Health (or anything with #check);
    # metrics: a Kaal::Metrics (or anything with #render).
    def initialize(bind:, health:, metrics:, read_timeout: 5, max_clients: 8)
      @host, @port = Configuration.split_bind(bind.to_s)
      raise ConfigurationError, "http_bind: must be HOST:PORT (127.0.0.1:9394, [::1]:9394), got #{bind.inspect}" unless @host

      @health = health
      @metrics = metrics
      @read_timeout = read_timeout
      @max_clients = max_clients
      @clients = 0
      @lock = Mutex.new
      @server = nil
      @thread = nil
    end

    # Binds and starts the accept thread. Raises Kaal::Error when the
    # address cannot be bound (in use, not an address of this machine).
    def start
      @server = TCPServer.new(@host, @port)
      @thread = Thread.new { accept_loop }
      @thread.name = "kaal-http"
      @thread.report_on_exception = false
      self
    rescue SocketError, SystemCallError => e
      raise Error, "http_bind #{address}: cannot listen (#{e.message})"
    end

    def port
      @server ? @server.addr[1] : @port
    end

    def address
      "#{@host.include?(":") ? "[#{@host}]" : @host}:#{port}"
    end

    def stop
      server = @server
      @server = nil
      server&.close
      @thread&.join(2)
      @thread = nil
    rescue IOError
      nil
    end

    private

    def accept_loop
      loop do
        client = begin
          @server&.accept
        rescue IOError, SystemCallError
          nil
        end
        break if client.nil? && @server.nil?
        next if client.nil?

        if @lock.synchronize { @clients >= @max_clients ? false : (@clients += 1) }
          worker = Thread.new(client) do |c|
            serve(c)
          ensure
            @lock.synchronize { @clients -= 1 }
          end
          worker.report_on_exception = false
        else
          respond(client, 503, "text/plain", "busy\n", head: false)
          client.close
        end
      end
    end

    def serve(client)
      head = read_head(client)
      return respond(client, 408, "text/plain", "request timeout\n", head: false) if head == :timeout
      return respond(client, 431, "text/plain", "request head too large\n", head: false) if head == :too_large

      method, target, version = head.lines.first.to_s.split(" ", 3)
      unless method && target && version&.start_with?("HTTP/1.")
        return respond(client, 400, "text/plain", "bad request\n", head: false)
      end

      begin
        route(client, method, target.split("?", 2).first)
      rescue StandardError => e
        Kaal.log_plain(:error, "http: #{method} #{target} failed: #{e.class}: #{e.message}")
        respond(client, 500, "text/plain", "internal error\n", head: false)
      end
    rescue IOError, SystemCallError
      nil
    ensure
      client.close unless client.closed?
    end

    def route(client, method, path)
      head_only = method == "HEAD"
      unless %w[/health /metrics].include?(path)
        return respond(client, 404, "text/plain", "not found: GET /health or GET /metrics\n", head: head_only)
      end
      unless %w[GET HEAD].include?(method)
        return respond(client, 405, "text/plain", "method not allowed: use GET\n", head: false,
                                                                                 extra: { "Allow" => "GET, HEAD" })
      end

      if path == "/health"
        verdict = @health.check
        respond(client, verdict[:healthy] ? 200 : 503, "application/json", "#{JSON.generate(verdict)}\n", head: head_only)
      else
        respond(client, 200, Metrics::CONTENT_TYPE, @metrics.render, head: head_only)
      end
    end

    # The request head (up to the blank line), :timeout or :too_large.
    def read_head(client)
      deadline = Clock.monotonic + @read_timeout
      data = +""
      until data.include?("\r\n\r\n") || data.include?("\n\n")
        return :too_large if data.bytesize > MAX_HEAD

        left = deadline - Clock.monotonic
        return :timeout if left <= 0

        chunk = client.read_nonblock(4096, exception: false)
        case chunk
        when :wait_readable then return :timeout unless client.wait_readable(left)
        when nil then return data.empty? ? :timeout : data
        else data << chunk
        end
      end
      data.bytesize > MAX_HEAD ? :too_large : data
    end

    def respond(client, status, type, body, head:, extra: {})
      headers = { "Content-Type" => type, "Content-Length" => body.bytesize.to_s, "Connection" => "close",
                  "Cache-Control" => "no-store" }.merge(extra)
      text = +"HTTP/1.1 #{status} #{REASONS.fetch(status)}\r\n"
      headers.each { |k, v| text << "#{k}: #{v}\r\n" }
      text << "\r\n"
      text << body unless head
      write_all(client, text)
    end

    def write_all(client, text)
      deadline = Clock.monotonic + @read_timeout
      until text.empty?
        n = client.write_nonblock(text, exception: false)
        if n == :wait_writable
          left = deadline - Clock.monotonic
          return if left <= 0 || !client.wait_writable(left)
        else
          text = text.byteslice(n..)
        end
      end
    end
  end
end
