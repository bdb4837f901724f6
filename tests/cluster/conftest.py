"""Cluster tests run real hub subprocesses (and HAProxy) through the `procs` fixture."""

from tests.fakes.processes import procs, pytest_runtest_makereport  # noqa: F401
