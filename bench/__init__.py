"""Benchmarks: each prints a table (medians and ratios), none is a test."""
