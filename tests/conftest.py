"""Hooks shared by the suites under tests/: the "incremental" marker (the steps of a module run
in order on one cluster: once a step fails, the later ones are skipped instead of failing for
the same cause)."""

from __future__ import annotations

import pytest

_failed: dict[str, str] = {}


def pytest_runtest_makereport(item, call):
    if "incremental" in item.keywords and call.excinfo is not None and not call.excinfo.errisinstance(pytest.skip.Exception):
        _failed.setdefault(str(item.path), item.name)


def pytest_runtest_setup(item):
    if "incremental" in item.keywords and str(item.path) in _failed:
        pytest.skip(f"an earlier step failed: {_failed[str(item.path)]}")


def pytest_configure(config):
    config.addinivalue_line("markers", "incremental: later tests of the module depend on the earlier ones")
