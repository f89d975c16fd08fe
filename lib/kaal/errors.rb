# frozen_string_literal: true

module Kaal
  # Root of every error kaal raises.
  class Error < StandardError; end

  # A configuration file, option or registration is wrong. The message names
  # the file, the job key and the field.
  class ConfigurationError < Error; end

  # The selected backend was not compiled into this build (its client library
  # was missing at install time). The message names the package to install.
  class BackendUnavailableError < ConfigurationError; end

  # A cron expression is invalid or can never fire. The message names the
  # field and the offending token.
  class CronSyntaxError < Error; end

  # The backend answered with an error.
  class BackendError < Error; end

  # The backend cannot be reached (or the connection was lost). kaal fails
  # closed: nothing is dispatched until it is back.
  class ConnectionError < BackendError; end

  # Kaal.enqueue_at with a job_id that is still pending.
  class DuplicateJobError < Error; end
end
