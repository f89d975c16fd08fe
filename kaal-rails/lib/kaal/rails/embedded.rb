# frozen_string_literal: true

module Kaal
  module Rails
    # The scheduler inside Puma (`plugin :kaal` in config/puma.rb). Puma's
    # master calls Embedded.puma!(clustered:) when it starts; after that:
    #
    # - single mode: the scheduler starts once the app has initialized;
    # - cluster mode: each worker runs a node (the backend is shared, so the
    #   workers split the claims; with the memory backend Kaal::Integration
    #   lets one process run it). With preload_app! the app initializes in
    #   the master, which runs no scheduler itself: each forked worker starts
    #   one. Without it, each worker starts one when its app has initialized.
    #
    # Nothing here runs unless the plugin is loaded: web, console and runner
    # processes never start a scheduler on their own.
    module Embedded
      @master_pid = nil
      @clustered = false
      @fork_hook = false

      class << self
        def puma!(clustered:)
          @master_pid = Process.pid
          @clustered = clustered
        end

        def active?
          !@master_pid.nil?
        end

        # Called by the Railtie once the app has initialized (and kaal is
        # configured).
        def app_initialized
          return unless active?

          if !@clustered
            Kaal::Integration.start_scheduler!
          elsif Process.pid == @master_pid
            watch_forks # preload_app!: the workers are forked from here
          else
            Kaal::Integration.start_scheduler!
          end
        end

        private

        def watch_forks
          return if @fork_hook

          @fork_hook = true
          master = @master_pid
          ::ActiveSupport::ForkTracker.after_fork do
            # Puma's workers only, not processes a worker forks in turn.
            if Process.ppid == master
              Kaal::Integration.after_fork # starts this worker's node
            end
          end
        end
      end
    end
  end
end
