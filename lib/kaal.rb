# frozen_string_literal: true

require_relative "kaal/version"
require_relative "kaal/errors"
require_relative "kaal/kaal_ext"
require_relative "kaal/cron"
require_relative "kaal/backend"
