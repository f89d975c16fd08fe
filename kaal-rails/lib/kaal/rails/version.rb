# frozen_string_literal: true

module Kaal
  module Rails
    # Released together with kaal: always the same version.
    VERSION = "0.1.0"
  end
end
