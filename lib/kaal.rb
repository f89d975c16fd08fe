# frozen_string_literal: true

require_relative "kaal/version"
require_relative "kaal/errors"
require_relative "kaal/stored_text"
# The PostgreSQL backend links the system's libpq, and the precompiled pg gem
# carries a copy of its own. Extensions share one symbol scope, so whichever
# copy loads first serves the calls of both: pg's copy calling into the
# system's crashes the process (PG::Connection#cancel, used by Active Record
# after a lost connection). Loading pg first, when it is installed, lets its
# copy serve kaal as well (libpq's interface is stable across versions). See
# docs/architecture.md, "Native libraries".
begin
  require "pg"
rescue LoadError
  nil # no pg in this bundle: nothing can load another libpq later
end
require_relative "kaal/kaal_ext"
require_relative "kaal/cron"
require_relative "kaal/backend"

require "monitor"
require "time"
require_relative "kaal/configuration"
require_relative "kaal/config_file"
require_relative "kaal/placeholders"
require_relative "kaal/job"
require_relative "kaal/scheduler_file"
require_relative "kaal/registry"
require_relative "kaal/job_queue"
require_relative "kaal/worker_pool"
require_relative "kaal/node_id"
require_relative "kaal/clock"
require_relative "kaal/log"
require_relative "kaal/events"
require_relative "kaal/metrics"
require_relative "kaal/health"
require_relative "kaal/systemd"
require_relative "kaal/http_server"
require_relative "kaal/dispatcher"
require_relative "kaal/handoff"
require_relative "kaal/delayed"
require_relative "kaal/schedules"
require_relative "kaal/schedule_feed"
require_relative "kaal/scheduler"
require_relative "kaal/runtime"
require_relative "kaal/integration"
