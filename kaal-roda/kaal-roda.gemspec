# frozen_string_literal: true

require_relative "../lib/kaal/version"

Gem::Specification.new do |spec|
  spec.name = "kaal-roda"
  spec.version = Kaal::VERSION
  spec.authors = ["The kaal authors"]
  spec.summary = "kaal for Roda: configure the distributed cron scheduler from the app class"
  spec.description = <<~DESC
    A thin Roda adapter for kaal: it passes the app's root and environment
    and your options (redis:, database:, namespace:, scheduler_config_path:,
    start_scheduler:, ...) to Kaal::Integration.setup, which reads
    config/kaal.yml, loads the scheduler file at boot and can run the
    scheduler inside the web process.
  DESC
  spec.license = "MIT"
  spec.required_ruby_version = ">= 3.1"

  spec.files = Dir["lib/**/*.rb", "README.md", "CHANGELOG.md"]
  spec.require_paths = ["lib"]
  spec.add_dependency "kaal", Kaal::VERSION
  spec.add_dependency "roda", ">= 3.0", "< 4"
  spec.metadata["rubygems_mfa_required"] = "true"
end
