"""The scenario's tests run from the repository root with LAB_NAME set; the lab's helpers are in tests/lablib."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))

pytest_plugins = ["lablib.fixtures"]
