"""Benchmarks: ``python -m bench`` (``make bench``) measures the server against its limits."""
