# frozen_string_literal: true

require "kaal/hanami"
# The Puma harness and the examples every framework integration shares.
require_relative "../../spec/support/web_app_examples"

RSpec.configure do |config|
  config.disable_monkey_patching!
  config.order = :random
  Kernel.srand config.seed
end
