# frozen_string_literal: true

# The SQLite backend against a real database file in a temp directory; each
# factory call opens another handle on the same file (another node).
RSpec.describe "Kaal sqlite backend" do
  kaal_backend_for :sqlite
  it_behaves_like "a kaal backend"
  it_behaves_like "stored schedules"
end
