"""Benchmarks of Gadget Code (run each as `uv run python -m bench.<name>`)."""
