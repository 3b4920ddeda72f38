"""The lab's tests run from the repository root with LAB_NAME set; their fixtures are in tests/lablib."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))

pytest_plugins = ["lablib.fixtures"]


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "once: proves the roles' logic, not the host's release; the debian13 scenario deselects it")
