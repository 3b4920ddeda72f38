"""Pytest fixtures of the lab's testinfra tests: a conftest.py loads them with pytest_plugins."""

import pytest

from . import lab
from .lrs import LRS


@pytest.fixture(scope="session")
def lab_host():
    """lab_host("encoding") is the testinfra host of that inventory host in the current lab."""
    return lab.host


@pytest.fixture(scope="session")
def lrs():
    """The lab's LRS, read from the lrs host with the inventory's credentials."""
    return LRS(via="lrs")


@pytest.fixture(scope="session")
def lrs_from_encoding():
    """The lab's LRS, reached from the encoding host over the lab network, as Pod's worker does."""
    return LRS(via="encoding")
