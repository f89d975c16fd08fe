# frozen_string_literal: true

require_relative "lib/kaal/version"

Gem::Specification.new do |spec|
  spec.name = "kaal"
  spec.version = Kaal::VERSION
  spec.authors = ["The kaal authors"]
  spec.summary = "Distributed cron scheduler for Ruby: at most one dispatch per job and fire time across nodes"
  spec.description = <<~DESC
    kaal runs recurring jobs declared in config/kaal-scheduler.yml on any number of
    processes against one shared backend (Redis, PostgreSQL, MySQL/MariaDB, SQLite or
    memory) and dispatches each (job key, fire time) at most once, with a deterministic
    idempotency key. A C core evaluates cron expressions with time zones and DST and
    performs the backend claims.
  DESC
  spec.license = "MIT"
  spec.required_ruby_version = ">= 3.1"

  spec.files = Dir["lib/**/*.rb", "ext/kaal/*.{c,h,rb}", "bin/kaal", "README.md", "CHANGELOG.md", "LICENSE"]
  spec.bindir = "bin"
  spec.executables = ["kaal"]
  spec.require_paths = ["lib"]
  spec.extensions = ["ext/kaal/extconf.rb"]
  spec.metadata["rubygems_mfa_required"] = "true"
end
