"""The fakes' own tests use the subprocess fixture (and its failure report)."""

from tests.fakes.processes import procs, pytest_runtest_makereport  # noqa: F401
