# frozen_string_literal: true

RSpec.describe "kaal-sinatra in an app served by Puma" do
  context "modular style (class App < Sinatra::Base)" do
    let(:app_files) do
      lambda do |requires, kaal_args|
        {
          "config.ru" => "require_relative \"app\"\nrun App\n",
          "app.rb" => <<~RUBY
            require "sinatra/base"
            #{requires}require "kaal/sinatra"
            require_relative "jobs"

            class App < Sinatra::Base
              register Kaal::Sinatra::Extension

              kaal #{kaal_args}

              get("/") { "ok" }
              get("/kaal") { KaalStatus.line }
            end
          RUBY
        }
      end
    end

    it_behaves_like "kaal in a Puma-served app"
  end

  context "classic style (top-level register and kaal)" do
    let(:app_files) do
      lambda do |requires, kaal_args|
        {
          "config.ru" => "require_relative \"app\"\nrun Sinatra::Application\n",
          "app.rb" => <<~RUBY
            require "sinatra"
            #{requires}require "kaal/sinatra"
            require_relative "jobs"

            register Kaal::Sinatra::Extension

            kaal #{kaal_args}

            get("/") { "ok" }
            get("/kaal") { KaalStatus.line }
          RUBY
        }
      end
    end

    it_behaves_like "kaal in a Puma-served app", cluster: false
  end
end
