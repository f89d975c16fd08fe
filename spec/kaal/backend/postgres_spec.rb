# frozen_string_literal: true

RSpec.describe "Kaal postgres backend" do
  kaal_backend_for :postgres
  it_behaves_like "a kaal backend"
  it_behaves_like "stored schedules"
end
