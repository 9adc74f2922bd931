"""The `vigil` command line: the platform's client, not a service.

Nothing here has a Dapr app id or an entry in `dapr.yaml`. The commands talk to the services' public
HTTP APIs as any client would; a few (`up`, `train`, `keys`, `import`) start localdapr sidecars of
their own, which is why this package lives outside `apps/` (services never import localdapr).

- `cli`: the `vigil` entry point and its sub-commands.
- `fleet`: builds fleets of machines from C-MAPSS trajectories and their readings (no I/O).
- `stream`: sends a fleet's readings to ingestion over HTTP, paced, with progress accounting.
- `replay`: `vigil replay` and `vigil simulate`; `demo`: the whole-platform demo.
- `train`: `vigil train`; `keys`: the gateway's API keys; `importing` and `history`: `vigil import`.
- `reset`: deletes the embedded profile's state; `alerts`: lists and acknowledges alerts over HTTP.
- `command`: how a printed hint names `vigil` (plain on PATH, else `.venv/bin/vigil`).
"""
