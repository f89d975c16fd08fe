# frozen_string_literal: true

RSpec.describe Kaal::Roda do
  def new_app(root, **plugin_options)
    Class.new(Roda) do
      opts[:root] = root
      plugin :kaal, **plugin_options
    end
  end

  let(:configure_app) { ->(root, **options) { new_app(root).kaal(**options) } }

  it_behaves_like "a kaal configuration DSL"

  it "takes the options of the kaal call as plugin options too" do
    Dir.mktmpdir do |root|
      new_app(root, namespace: "from-plugin")

      expect(Kaal.configuration.namespace).to eq("from-plugin")
    ensure
      Kaal.reset!
    end
  end

  it "is loaded by `plugin :kaal` alone, through roda/plugins/kaal" do
    expect(Roda::RodaPlugins.load_plugin(:kaal)).to equal(described_class)
  end
end
