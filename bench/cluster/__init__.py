"""Several hub nodes: one node against two (`python -m bench.cluster`)."""
