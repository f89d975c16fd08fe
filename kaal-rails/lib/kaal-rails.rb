# frozen_string_literal: true

# `gem "kaal-rails"` in a Gemfile: Bundler.require loads this file.
require "kaal/rails"
