# frozen_string_literal: true

require "spec_helper"
require "tmpdir"
require "open3"
require "rbconfig"

RSpec.describe "packaging" do
  root = File.expand_path("..", __dir__)

  it "declares logger as a runtime dependency and the project's URIs in the gemspec" do
    spec = Dir.chdir(root) { Gem::Specification.load("kaal.gemspec") }
    expect(spec.runtime_dependencies.map(&:name)).to include("logger")
    expect(spec.homepage).to match(%r{\Ahttps://})
    expect(spec.metadata).to include("homepage_uri", "source_code_uri", "changelog_uri", "bug_tracker_uri")
    expect(spec.metadata["changelog_uri"]).to end_with("CHANGELOG.md")
  end

  it "extconf honours --with-hiredis-dir=PREFIX, as ruby-pg and mysql2 honour theirs" do
    hiredis_h = "/usr/include/hiredis"
    lib = Dir["/usr/lib/*/libhiredis.so", "/usr/lib/libhiredis.so"].first
    skip "the hiredis development files are not installed" unless File.directory?(hiredis_h) && lib

    Dir.mktmpdir("kaal-extconf") do |dir|
      prefix = File.join(dir, "hiredis-prefix")
      FileUtils.mkdir_p(["#{prefix}/include", "#{prefix}/lib", "#{dir}/build"])
      File.symlink(hiredis_h, "#{prefix}/include/hiredis")
      File.symlink(lib, "#{prefix}/lib/libhiredis.so") # no .pc file: pkg-config cannot find it
      out, status = Open3.capture2e({ "PKG_CONFIG_LIBDIR" => dir, "PKG_CONFIG_PATH" => nil }, RbConfig.ruby,
                                    File.join(root, "ext/kaal/extconf.rb"), "--with-hiredis-dir=#{prefix}",
                                    chdir: "#{dir}/build")
      expect(status).to be_success, out
      expect(out).to match(/kaal: backends built: memory redis/)
      makefile = File.read("#{dir}/build/Makefile")
      expect(makefile).to include("-I#{prefix}/include").and include("-L#{prefix}/lib")
      expect(makefile).to include("-DKAAL_HAVE_REDIS")
    end
  end
end
