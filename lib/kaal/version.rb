# frozen_string_literal: true

module Kaal
  VERSION = "0.1.0"
end
