"""The operators' live web UI: fleet, machines, alerts and models, read only through Dapr."""
