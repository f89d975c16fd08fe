# frozen_string_literal: true

RSpec.describe Kaal::Sinatra::Extension do
  def new_app(root)
    Class.new(Sinatra::Base) do
      set :root, root
      register Kaal::Sinatra::Extension
    end
  end

  let(:configure_app) { ->(root, **options) { new_app(root).kaal(**options) } }

  it_behaves_like "a kaal configuration DSL"

  it "reads the section of config/kaal.yml named by the app's environment setting" do
    Dir.mktmpdir do |root|
      FileUtils.mkdir_p(File.join(root, "config"))
      File.write(File.join(root, "config", "kaal.yml"), "defaults:\n  namespace: base\nstaging:\n  namespace: staged\n")
      app = new_app(root)
      app.set :environment, :staging

      expect(app.kaal.namespace).to eq("staged")
    ensure
      Kaal.reset!
    end
  end
end
