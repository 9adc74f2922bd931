"""What every Vigil service must agree on: wire contracts, the feature pipeline, and Dapr names."""
