"""localdapr: a local Dapr-compatible sidecar and multi-app launcher.

It speaks the same HTTP and gRPC APIs as daprd to apps written with the official Dapr Python SDK,
reads the same component YAML files, and calls apps over the same app channel, so application code
is byte-for-byte the same under localdapr, `dapr run` and Kubernetes. See docs/localdapr.md.
"""

__version__ = "0.1.0"
