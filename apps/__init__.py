"""Vigil application services: one package per Dapr app, plus `common` for what they share."""
