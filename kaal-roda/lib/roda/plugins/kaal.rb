# frozen_string_literal: true

# Lets `plugin :kaal` load the plugin without a `require "kaal/roda"` first.
require "kaal/roda"
