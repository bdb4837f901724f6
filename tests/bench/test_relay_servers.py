"""bench.relay.servers: the CPUs the benches pin to are read once per process."""

from __future__ import annotations

import os

import pytest
from bench.relay.servers import pin_cpus


def test_pinning_survives_the_client_pinning_itself() -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: the benches do not pin")
    before = os.sched_getaffinity(0)
    server, client = pin_cpus()
    assert server is not None and client is not None and server != client
    try:
        os.sched_setaffinity(0, {client})
        assert pin_cpus() == (server, client)
    finally:
        os.sched_setaffinity(0, before)
