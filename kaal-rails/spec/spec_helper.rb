# frozen_string_literal: true

$LOAD_PATH.unshift File.expand_path("../lib", __dir__)
$LOAD_PATH.unshift File.expand_path("../../lib", __dir__)
require "kaal"

Dir[File.join(__dir__, "support", "**", "*.rb")].sort.each { |f| require f }

RSpec.configure do |config|
  config.disable_monkey_patching!
  config.example_status_persistence_file_path = File.expand_path("../../tmp/.rspec_status_kaal_rails", __dir__)
  config.filter_run_when_matching :focus
  # The generated-app examples of one database build on each other (migrate,
  # then run): they run in the order written.
  config.order = :defined
end
