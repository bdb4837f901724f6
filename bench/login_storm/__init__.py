"""Stream latency on the hub with and without a storm of concurrent logins.

`uv run python -m bench.login_storm` (see docs/performance.md, "Logins and the stream").
"""
