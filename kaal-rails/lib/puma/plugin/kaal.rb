# frozen_string_literal: true

require "puma/plugin"
require "kaal/rails/embedded"

# `plugin :kaal` in config/puma.rb: run kaal's scheduler inside Puma, in the
# single process or in each cluster worker (see Kaal::Rails::Embedded). A
# dedicated `bundle exec kaal start` process is the default deployment; this
# is the explicit choice to co-locate it with the web server.
Puma::Plugin.create do
  def start(launcher)
    Kaal::Rails::Embedded.puma!(clustered: launcher.options[:workers].to_i.positive?)
  end
end
