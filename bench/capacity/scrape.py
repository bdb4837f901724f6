"""The hub's own figures from its `GET /metrics`, and their change between two scrapes."""

from __future__ import annotations

import math
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, str], float]  # (name, le or "") → value


class Scrape:
    """Scrapes of one hub; the first is kept for differences."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.first: Samples = {}

    async def take(self) -> Samples:
        """One scrape (each resets the hub's `gadget_loop_lag_max_seconds`)."""
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as http:
            r = await http.get("/metrics")
        if r.status_code == 404:  # a hub from before /metrics (comparing with main)
            return {}
        r.raise_for_status()
        samples: Samples = {}
        for family in text_string_to_metric_families(r.text):
            for s in family.samples:
                if s.name.startswith("gadget_events"):
                    continue
                if s.labels.get("generation", "2") != "2":  # the collector: full passes only
                    continue
                samples[(s.name, s.labels.get("le", ""))] = s.value
        if not self.first:
            self.first = samples
        return samples


def _bucket_quantile(a: Samples, b: Samples, name: str, q: float) -> float:
    """The upper bound of the bucket holding quantile `q` of what was observed between."""
    bounds = sorted(
        (float(le), b[(n, le)] - a.get((n, le), 0.0))
        for (n, le) in b
        if n == f"{name}_bucket" and le != "+Inf"
    )
    total = b.get((f"{name}_count", ""), 0.0) - a.get((f"{name}_count", ""), 0.0)
    if total <= 0:
        return float("nan")
    for bound, cumulative in bounds:
        if cumulative >= q * total:
            return bound
    return math.inf


def _delta(a: Samples, b: Samples, name: str) -> float:
    return b.get((name, ""), 0.0) - a.get((name, ""), 0.0)


def lag_and_writes(a: Samples, b: Samples) -> dict[str, Any]:
    """Loop lag (max and p99 bucket) and writer batches (count, mean rows, mean/p99 s)."""
    batches = _delta(a, b, "gadget_write_batch_seconds_count")
    rows = _delta(a, b, "gadget_write_batch_rows_sum")
    seconds = _delta(a, b, "gadget_write_batch_seconds_sum")
    return {
        "loop_lag_max_ms": b.get(("gadget_loop_lag_max_seconds", ""), math.nan) * 1e3,
        "loop_lag_p99_bucket_ms": _bucket_quantile(a, b, "gadget_loop_lag", 0.99) * 1e3,
        "write_batches": batches,
        "write_rows_per_batch": rows / batches if batches else math.nan,
        "write_batch_mean_ms": seconds / batches * 1e3 if batches else math.nan,
        "write_batch_p99_bucket_ms": _bucket_quantile(a, b, "gadget_write_batch_seconds", 0.99)
        * 1e3,
        "relay_p99_bucket_ms": _bucket_quantile(a, b, "gadget_relay_seconds", 0.99) * 1e3,
        "database_errors": _delta(a, b, "gadget_database_errors_total"),
        "gc_full_passes": _delta(a, b, "gadget_gc_pause_seconds_count"),
        "gc_full_pause_total_ms": _delta(a, b, "gadget_gc_pause_seconds_sum") * 1e3,
        "gc_pause_max_ms": b.get(("gadget_gc_pause_max_seconds", ""), math.nan) * 1e3,
    }
