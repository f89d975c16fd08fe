# frozen_string_literal: true

module Kaal
  # Placeholder: replaced by the backend binding work.
  module Backend
  end
end
