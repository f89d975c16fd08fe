# frozen_string_literal: true

RSpec.describe "Kaal mysql backend" do
  kaal_backend_for :mysql
  it_behaves_like "a kaal backend"
  it_behaves_like "stored schedules"
end
