# frozen_string_literal: true

RSpec.describe "kaal-hanami in an app served by Puma" do
  let(:app_files) do
    lambda do |requires, kaal_args|
      {
        "config.ru" => "require \"hanami/boot\"\n\nrun Hanami.app\n",
        "config/app.rb" => <<~RUBY,
          require "hanami"
          #{requires}require "kaal/hanami"
          require_relative "../jobs"

          module SpecApp
            class App < Hanami::App
              Kaal::Hanami.configure!(self, #{kaal_args})
            end
          end
        RUBY
        "config/routes.rb" => <<~RUBY
          module SpecApp
            class Routes < Hanami::Routes
              root to: ->(_env) { [200, { "content-type" => "text/plain" }, ["ok"]] }
              get "/kaal", to: ->(_env) { [200, { "content-type" => "text/plain" }, [KaalStatus.line]] }
            end
          end
        RUBY
      }
    end
  end

  it_behaves_like "kaal in a Puma-served app"
end
