# frozen_string_literal: true

require "rack/test"
require "rack/builder"
require "kaal/web"

# The README's mounting examples (Dashboard section), run as written: the
# pages link under the mount path and actions post there.
RSpec.describe "Mounting Kaal::Web" do
  include Rack::Test::Methods

  before do
    Kaal.reset!
    Kaal.configure { |c| c.backend = :memory }
    Kaal.register(key: "report", cron: "@daily") { nil }
  end

  after { Kaal.reset! }

  def expect_dashboard_at(prefix)
    get "#{prefix}/"
    expect(last_response.status).to eq(200)
    expect(last_response.body).to include(%(href="#{prefix}/jobs/report"), %(action="#{prefix}/jobs/report/pause"))
    get "#{prefix}/jobs/report"
    expect(last_response.status).to eq(200)
  end

  context "with config.ru map and Rack::Auth::Basic" do
    let(:app) do
      Rack::Builder.new do
        map "/kaal" do
          use Rack::Auth::Basic, "kaal" do |user, password|
            Rack::Utils.secure_compare(user, "ops") & Rack::Utils.secure_compare(password, "s3cret")
          end
          run Kaal::Web
        end
        run ->(_env) { [200, { "content-type" => "text/plain" }, ["the app"]] }
      end.to_app
    end

    it "asks for credentials, then serves the dashboard under /kaal" do
      get "/kaal/"
      expect(last_response.status).to eq(401)
      basic_authorize "ops", "s3cret"
      expect_dashboard_at("/kaal")
      get "/"
      expect(last_response.body).to eq("the app")
    end
  end

  context "in Rails routes (mount with a constraint)" do
    let(:app) do
      require "rails"
      require "action_dispatch"
      routes = ActionDispatch::Routing::RouteSet.new
      routes.draw do
        constraints ->(request) { request.get_header("HTTP_X_ADMIN") == "yes" } do
          mount Kaal::Web => "/kaal"
        end
      end
      routes
    end

    it "serves the dashboard under /kaal only when the constraint admits the request" do
      get "/kaal/"
      expect(last_response.status).to eq(404)
      header "X-Admin", "yes"
      expect_dashboard_at("/kaal")
    end
  end

  context "in a Roda app" do
    let(:app) do
      require "roda"
      Class.new(Roda) do
        route do |r|
          r.on("kaal") { r.run Kaal::Web }
          "the app"
        end
      end.freeze.app
    end

    it "serves the dashboard under /kaal" do
      expect_dashboard_at("/kaal")
    end
  end

  context "next to a Sinatra app in config.ru" do
    let(:app) do
      require "sinatra/base"
      sinatra = Class.new(Sinatra::Base) do
        set :host_authorization, { permitted_hosts: [] } # rack-test asks for example.org
        get("/") { "the app" }
      end
      Rack::Builder.new do
        map("/kaal") { run Kaal::Web.new(read_only: true) }
        run sinatra
      end.to_app
    end

    it "serves the read-only dashboard under /kaal and the app elsewhere" do
      get "/kaal/"
      expect(last_response.body).to include(%(href="/kaal/jobs/report"), "read-only")
      expect(last_response.body).not_to include("<form")
      get "/"
      expect(last_response.body).to eq("the app")
    end
  end
end
