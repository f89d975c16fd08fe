# frozen_string_literal: true

require "socket"

module Kaal
  # sd_notify for `kaal start` under systemd (Type=notify, WatchdogSec=):
  # READY=1 after the first successful tick, WATCHDOG=1 after each tick
  # attempt (the loop is alive, even while the backend is down; /health
  # reports the outage), STOPPING=1 when the scheduler begins to stop. Active
  # only when NOTIFY_SOCKET is set (a path, or "@name" for an abstract
  # socket). A message that cannot be sent is logged once and dropped.
  class Systemd
    include Events::Subscriber

    EVENTS = %i[tick scheduler_stopping].freeze

    # The Systemd notifier for this environment, or nil without NOTIFY_SOCKET.
    def self.from_env(env = ENV, events: Kaal.events)
      path = env["NOTIFY_SOCKET"]
      path.nil? || path.empty? ? nil : new(path, events: events)
    end

    attr_reader :path

    def initialize(path, events: Kaal.events)
      @path = path
      @events = events
      @ready = false
      @warned = false
      @subscription = nil
    end

    def call(event)
      case event.name
      when "tick"
        if event.payload[:ok] && !@ready
          @ready = true
          notify("READY=1\nSTATUS=ticking every #{Kaal.configuration.tick_interval}s\nMAINPID=#{Process.pid}")
        end
        notify("WATCHDOG=1")
      when "scheduler_stopping" then notify("STOPPING=1")
      end
    end

    # Sends one datagram to the notify socket. Returns true when sent.
    def notify(message)
      address = @path.start_with?("@") ? "\0#{@path[1..]}" : @path
      Socket.open(:UNIX, :DGRAM) do |s|
        s.connect(Socket.pack_sockaddr_un(address))
        s.sendmsg(message)
      end
      true
    rescue SystemCallError, SocketError, ArgumentError => e
      unless @warned
        @warned = true
        Kaal.log_plain(:warn, "NOTIFY_SOCKET #{@path}: cannot notify systemd (#{e.class}: #{e.message})")
      end
      false
    end
  end
end
