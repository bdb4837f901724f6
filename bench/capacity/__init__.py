"""Capacity benchmark: drone + IDE pairs on one hub process (python -m bench.capacity)."""
