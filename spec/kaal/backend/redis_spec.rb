# frozen_string_literal: true

RSpec.describe "Kaal redis backend" do
  kaal_backend_for :redis
  it_behaves_like "a kaal backend"
  it_behaves_like "stored schedules"
end
