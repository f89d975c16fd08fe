# frozen_string_literal: true

module Kaal
  class CLI
    # The operational surface of `kaal start` (--http: GET /health and GET
    # /metrics; sd_notify under systemd) and the health verdict of
    # `kaal status`. Included into Kaal::CLI.
    module Observability
      private

      # Subscribes health, metrics and systemd to the event stream and binds
      # the listener (before the scheduler starts, so a taken port fails the
      # start). Returns what stop_observability undoes.
      def start_observability(opts)
        bind = opts[:http] || Kaal.configuration.http_bind
        if opts[:http] && Configuration.split_bind(opts[:http]).nil?
          raise UsageError, "--http: must be HOST:PORT (127.0.0.1:9394, [::1]:9394), got #{opts[:http].inspect}"
        end

        parts = { systemd: Systemd.from_env&.install }
        return parts unless bind

        parts[:health] = Health.new.install
        parts[:metrics] = Metrics.new(delayed_pending: delayed_pending_reader).install
        parts[:server] = HttpServer.new(bind: bind, health: parts[:health], metrics: parts[:metrics]).start
        parts
      rescue StandardError
        stop_observability(parts)
        raise
      end

      def announce_observability(parts)
        server = parts && parts[:server]
        return unless server

        Kaal.log_plain(:info, "http: listening on http://#{server.address} (GET /health, GET /metrics)")
      end

      def stop_observability(parts)
        return unless parts

        parts[:server]&.stop
        parts.each_value { |p| p.uninstall if p.respond_to?(:uninstall) }
        @pending_backend&.close
        @pending_backend = nil
      rescue StandardError
        nil
      end

      # kaal_delayed_pending is read by the scrape: on the memory backend
      # from the scheduler's own store, elsewhere on a connection of its own
      # (a slow or down backend never holds the tick's connection).
      def delayed_pending_reader
        config = Kaal.configuration
        return -> { Kaal.backend.delayed_count } if config.backend == "memory"

        lambda do
          @pending_backend ||= Backend.build(config.backend, namespace: config.namespace, config: config.backend_options,
                                                            log_retention: config.dispatch_log_retention)
          @pending_backend.delayed_count
        end
      end

      # The health verdict from what `kaal status` can see (Health.evaluate,
      # as GET /health): the backend answers, and the freshest live node's
      # heartbeat (written by each successful tick) is recent.
      def status_health(backend_report, config)
        unless backend_report[:reachable]
          return Health.evaluate(tick_interval: config.tick_interval, last_tick_age: nil,
                                 backend_error: backend_report[:error])
        end

        freshest = backend_report[:nodes].max_by { |n| n[:last_seen].to_s }
        unless freshest
          return Health.evaluate(tick_interval: config.tick_interval, last_tick_age: nil, alive: false,
                                 not_alive: "no live node (none has ticked within heartbeat_ttl)").merge(node: nil)
        end

        interval = freshest[:info]["tick_interval"] || config.tick_interval
        age = [Clock.now - Time.iso8601(freshest[:last_seen]).to_f, 0].max
        Health.evaluate(tick_interval: interval, last_tick_age: age).merge(node: freshest[:node])
      end
    end
  end
end
