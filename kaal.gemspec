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
  # The repository's public address (to be confirmed when the repository is published).
  repository = "https://github.com/kaal-rb/kaal"
  spec.homepage = repository
  spec.metadata["homepage_uri"] = repository
  spec.metadata["source_code_uri"] = repository
  spec.metadata["changelog_uri"] = "#{repository}/blob/main/CHANGELOG.md"
  spec.metadata["bug_tracker_uri"] = "#{repository}/issues"
  spec.metadata["documentation_uri"] = "#{repository}/blob/main/README.md"
  spec.required_ruby_version = ">= 3.1"

  spec.files = Dir["lib/**/*.rb", "ext/kaal/*.{c,h,rb}", "bin/kaal", "README.md", "CHANGELOG.md", "LICENSE"]
  spec.bindir = "bin"
  spec.executables = ["kaal"]
  spec.require_paths = ["lib"]
  spec.extensions = ["ext/kaal/extconf.rb"]
  # logger leaves the default gems in newer Rubies (a bundled gem from 3.5).
  spec.add_dependency "logger", "~> 1.4"
  spec.metadata["rubygems_mfa_required"] = "true"
end
