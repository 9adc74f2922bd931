"""Operator and developer tools (`vigil replay`, `simulate`, `demo`, `import`, `reset`, `alerts`).

This package is NOT a service: it has no Dapr app id, no sidecar and no entry in `dapr.yaml`. It is a
client of the platform, talking to ingestion's public HTTP API exactly as a gateway would.

- `fleet`: builds fleets of machines from C-MAPSS trajectories and their readings (no I/O).
- `stream`: sends a fleet's readings to ingestion over HTTP, paced, with progress accounting.
- `cli`: the argparse wiring of the commands above; `demo`: the whole-platform demo.
- `reset`: deletes the embedded profile's state; `alerts_cli`: lists and acknowledges alerts over HTTP.
- `command`: how a printed hint names `vigil` (plain on PATH, else `.venv/bin/vigil`).
"""
