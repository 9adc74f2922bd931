"""Archiver service: batches the accepted readings into the reading archive, at least once."""
