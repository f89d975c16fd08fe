# frozen_string_literal: true

require "spec_helper"
require "active_record"
require "kaal/rails/database"

# The backend a Rails app gets when config/kaal.yml names none.
RSpec.describe Kaal::Rails::Database do
  def with_databases(configs)
    saved = ActiveRecord::Base.configurations
    ActiveRecord::Base.configurations = configs
    yield
  ensure
    ActiveRecord::Base.configurations = saved
  end

  def defaults(settings = {}, env: "development")
    described_class.defaults(settings, root: "/srv/app", env: env)
  end

  around do |example|
    saved = ENV.to_h.slice("KAAL_BACKEND", "KAAL_BACKEND_URL", "KAAL_BACKEND_CONFIG")
    %w[KAAL_BACKEND KAAL_BACKEND_URL KAAL_BACKEND_CONFIG].each { |k| ENV.delete(k) }
    example.run
  ensure
    ENV.update(saved)
  end

  {
    "sqlite3" => "sqlite", "postgresql" => "postgres", "postgis" => "postgres",
    "mysql2" => "mysql", "trilogy" => "mysql"
  }.each do |adapter, backend|
    it "maps the #{adapter} adapter to the #{backend} backend with the app's connection settings" do
      with_databases("development" => { "adapter" => adapter, "database" => "app_dev", "host" => "db.internal",
                                        "port" => 5433, "username" => "app", "password" => "secret",
                                        "pool" => 5, "encoding" => "unicode" }) do
        found = defaults
        expect(found[:backend]).to eq(backend)
        connection = found[:backend_config][:connection]
        expect(connection).to include(adapter: adapter, username: "app", password: "secret")
        expect(connection).not_to include(:pool, :encoding)
        # What the core makes of it: the parameters its C backend connects with.
        params = Kaal::Backend::ConnectionParams.from(backend, found[:backend_config], env: {})
        if backend == "sqlite"
          expect(params).to eq("path" => "/srv/app/app_dev")
        else
          expect(params).to include("host" => "db.internal", "port" => 5433, "database" => "app_dev",
                                    "username" => "app", "password" => "secret")
        end
      end
    end
  end

  it "resolves a relative SQLite path against the app root, as Active Record does" do
    with_databases("development" => { "adapter" => "sqlite3", "database" => "storage/development.sqlite3" }) do
      expect(defaults[:backend_config][:connection][:database]).to eq("/srv/app/storage/development.sqlite3")
    end
  end

  it "reads the entry of the current environment, and `database:` picks one of several" do
    with_databases(
      "development" => { "primary" => { "adapter" => "sqlite3", "database" => "dev.sqlite3" },
                         "queue" => { "adapter" => "postgresql", "database" => "queue_dev" } },
      "production" => { "primary" => { "adapter" => "trilogy", "database" => "app" } }
    ) do
      expect(defaults[:backend]).to eq("sqlite")
      expect(defaults({ "database" => "queue" })[:backend]).to eq("postgres")
      expect(defaults(env: "production")[:backend]).to eq("mysql")
      expect { defaults({ "database" => "cache" }) }
        .to raise_error(Kaal::ConfigurationError,
                        /database: config\/database.yml has no database "cache" for environment "development" \(it has: primary, queue\)/)
    end
  end

  it "refuses an adapter it cannot follow, saying what to set" do
    with_databases("development" => { "adapter" => "sqlserver", "database" => "app" }) do
      expect { defaults }.to raise_error(
        Kaal::ConfigurationError,
        /the "sqlserver" database adapter of config\/database.yml \(development, primary\) has no kaal backend.*set backend \(redis, postgres, mysql, sqlite or memory\) and backend_config.url in config\/kaal.yml/
      )
      expect(defaults({ "backend" => "redis" })).to eq({})
    end
  end

  it "gives nothing when the settings name a backend with its own connection, or another backend" do
    with_databases("development" => { "adapter" => "postgresql", "database" => "app" }) do
      expect(defaults({ "backend" => "redis" })).to eq({})
      expect(defaults({ "backend" => "memory" })).to eq({})
      expect(defaults({ "backend" => "mysql" })).to eq({})
      expect(defaults({ "backend" => "postgres", "backend_config" => { "url" => "postgres://other/db" } })).to eq({})
      expect(defaults({ "backend" => "postgres" })[:backend_config][:connection][:database]).to eq("app")
      ENV["KAAL_BACKEND"] = "redis"
      expect(defaults).to eq({})
    end
  end

  it "says so when the environment has no database at all" do
    with_databases("production" => { "adapter" => "postgresql", "database" => "app" }) do
      expect { defaults }.to raise_error(Kaal::ConfigurationError, /no database for environment "development"/)
    end
  end

  it "has the version of kaal" do
    expect(Kaal::Rails::VERSION).to eq(Kaal::VERSION)
  end
end
