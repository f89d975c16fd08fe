# frozen_string_literal: true

require "rails/railtie"

module Kaal
  module Rails
    # Hooks kaal into the app's boot: config/kaal.yml is read for Rails.env
    # once the app has initialized (so every initializer and the database
    # configuration are in place), then the scheduler file is loaded.
    class Railtie < ::Rails::Railtie
      config.kaal = ActiveSupport::OrderedOptions.new

      rake_tasks do
        load File.expand_path("../../tasks/kaal.rake", __dir__)
      end

      # Before `bin/rails generate kaal:install` (no config/kaal.yml, no
      # config.kaal options) kaal is not set up, so the generator runs
      # whatever the database adapter is.
      config.after_initialize do |app|
        if Kaal::Rails.installed?(app)
          Kaal::Rails.setup(app)
          Kaal::Rails::Embedded.app_initialized
        end
      end
    end
  end
end
