"""Gateway: the single public entry; authenticates API keys, limits rates and routes to the services."""
