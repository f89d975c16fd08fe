# frozen_string_literal: true

# One app class for the whole process (Hanami keeps the first named app as
# Hanami.app), defined with HANAMI_ENV=staging so that its config.env differs
# from what RACK_ENV and friends say.
module KaalHanamiSpec
  saved = ENV.fetch("HANAMI_ENV", nil)
  ENV["HANAMI_ENV"] = "staging"
  class App < Hanami::App; end
ensure
  ENV["HANAMI_ENV"] = saved
end

RSpec.describe Kaal::Hanami do
  let(:app) { KaalHanamiSpec::App }
  let(:configure_app) do
    lambda do |root, **options|
      app.config.root = root
      described_class.configure!(app, **options)
    end
  end

  it_behaves_like "a kaal configuration DSL"

  context "with the app's conventions" do
    around do |example|
      Dir.mktmpdir("kaal-hanami-") do |root|
        @root = root
        FileUtils.mkdir_p(File.join(root, "config"))
        example.run
      ensure
        Kaal.reset!
      end
    end

    it "reads the section of config/kaal.yml named by the app's config.env" do
      File.write(File.join(@root, "config", "kaal.yml"), "defaults:\n  namespace: base\nstaging:\n  namespace: staged\n")

      expect(app.config.env).to eq(:staging)
      expect(configure_app.call(@root).namespace).to eq("staged")
    end

    it "logs through the app's configured logger unless logger: is given" do
      expect(configure_app.call(@root).logger).to be_a(Dry::Logger::Dispatcher)

      mine = Logger.new(File::NULL)
      expect(configure_app.call(@root, logger: mine).logger).to equal(mine)
    end
  end

  it "refuses anything but the app class" do
    expect { described_class.configure!(Object.new) }.to raise_error(ArgumentError, /pass the app class/)
  end
end
