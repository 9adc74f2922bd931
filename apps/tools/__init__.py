"""Operator and developer tools (`vigil replay`, `vigil simulate`, `vigil demo`).

This package is NOT a service: it has no Dapr app id, no sidecar and no entry in `dapr.yaml`. It is a
client of the platform, talking to ingestion's public HTTP API exactly as a gateway would.

- `fleet`: builds fleets of machines from C-MAPSS trajectories and their readings (no I/O).
- `stream`: sends a fleet's readings to ingestion over HTTP, paced, with progress accounting.
- `cli`: the argparse wiring of the commands above; `demo`: the whole-platform demo.
"""
