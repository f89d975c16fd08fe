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

    it "started with `ruby app.rb` (Sinatra runs its server from an exit hook): the scheduler runs while " \
       "the server does and stops after it" do
      namespace = "spec-#{SecureRandom.hex(4)}"
      app = Kaal::Spec::WebApp.new(app_files.call("", Kaal::Spec::WebApp.kaal_args(:memory, namespace: namespace)))
      app.start(command: ->(port) { [RbConfig.ruby, "app.rb", "-p", port.to_s, "-o", "127.0.0.1"] })
      app.wait_for_fires(3)

      expect(app.get("/").body).to eq("ok")
      expect(app.get("/kaal").body).to eq("memory #{namespace} tick=1 running")
      expect(app.stop(signal: "INT")).to be_success # Ctrl-C
      expect(app.log).to match(/has ended his set.*scheduler stopped/m)
    rescue StandardError
      warn app&.log_tail(80)
      raise
    ensure
      app&.cleanup
    end
  end
end
