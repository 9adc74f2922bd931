"""The configuration building block: configuration stores (configuration.redis) and their API."""
