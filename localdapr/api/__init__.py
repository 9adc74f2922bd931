"""The sidecar's two public faces: the Dapr HTTP API and the Dapr gRPC API."""
