"""Pub/sub brokers (pubsub.in-memory, pubsub.redis) and delivery of CloudEvents to apps."""
