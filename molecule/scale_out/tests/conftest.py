"""Shared fixtures of the lab's testinfra tests (run from the repository root, LAB_NAME set)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))

from lablib import lab  # noqa: E402
from lablib.lrs import LRS  # noqa: E402


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
