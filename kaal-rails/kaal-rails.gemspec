# frozen_string_literal: true

require_relative "lib/kaal/rails/version"

Gem::Specification.new do |spec|
  spec.name = "kaal-rails"
  spec.version = Kaal::Rails::VERSION
  spec.authors = ["The kaal authors"]
  spec.summary = "Rails integration of kaal: generator, migrations, backend from database.yml, Puma plugin"
  spec.description = <<~DESC
    kaal-rails runs kaal, the distributed cron scheduler, inside a Rails app:
    `bin/rails generate kaal:install` writes config/kaal.yml, an example
    config/kaal-scheduler.yml and the Active Record migrations of kaal's tables;
    the backend follows the app's database when none is configured; jobs run
    through ActiveJob or inside the Rails executor, errors go to Rails.error.
  DESC
  spec.license = "MIT"
  spec.required_ruby_version = ">= 3.1"

  spec.files = Dir["lib/**/*.{rb,rake,tt,yml}", "README.md", "CHANGELOG.md"]
  spec.require_paths = ["lib"]

  spec.add_dependency "kaal", Kaal::Rails::VERSION
  spec.add_dependency "activerecord", ">= 7.1", "< 9"
  spec.add_dependency "railties", ">= 7.1", "< 9"
  spec.metadata["rubygems_mfa_required"] = "true"
end
