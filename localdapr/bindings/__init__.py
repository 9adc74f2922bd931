"""Bindings (bindings.cron, bindings.localstorage, bindings.http) and delivery of input events to apps."""
