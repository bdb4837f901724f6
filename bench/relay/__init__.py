"""Relay benchmark: the hub against a bare python-socketio relay, plus block append cost.

Run `uv run python -m bench.relay` (see docs/performance.md for the figures).
"""
