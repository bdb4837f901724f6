"""Fault tests run real hub and drone subprocesses through the `procs` fixture."""

from tests.fakes.processes import procs, pytest_runtest_makereport  # noqa: F401
