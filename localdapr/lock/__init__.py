"""The distributed lock building block: lock stores (lock.in-memory, lock.redis) and their API."""
