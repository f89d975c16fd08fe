# frozen_string_literal: true

RSpec.describe "kaal-roda in an app served by Puma" do
  let(:app_files) do
    lambda do |requires, kaal_args|
      {
        "config.ru" => "require_relative \"app\"\nrun App.freeze.app\n",
        "app.rb" => <<~RUBY
          require "roda"
          #{requires}require "kaal/roda"
          require_relative "jobs"

          class App < Roda
            plugin :kaal

            kaal #{kaal_args}

            route do |r|
              r.root { "ok" }
              r.get("kaal") { KaalStatus.line }
            end
          end
        RUBY
      }
    end
  end

  it_behaves_like "kaal in a Puma-served app"
end
