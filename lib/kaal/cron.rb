# frozen_string_literal: true

module Kaal
  # Placeholder: replaced by the cron binding work.
  class Cron
  end
end
