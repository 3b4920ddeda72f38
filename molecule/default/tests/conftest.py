"""The lab's tests run from the repository root with LAB_NAME set; their fixtures are in tests/lablib."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))

pytest_plugins = ["lablib.fixtures"]

# They break links of the pipeline and heal them, restart and reboot hosts: after every test that
# compares the site with its state before the deployment, in this order, the faults, then the
# uninstall, which leaves the lab without the collection.
LAST = ("test_xapi_check", "test_monitoring", "test_turning_off", "test_faults", "test_uninstall")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "once: proves the roles' logic, not the host's release; the debian13 scenario deselects it")
    # The debian13 and default labs run at once (scripts/test.sh's lanes): the faults go to the lab with
    # the fewer tests, so that both end about together.
    config.addinivalue_line(
        "markers", "debian13: with once, runs on the debian13 scenario's lab instead of the default one")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.module.__name__.rsplit(".", 1)[-1]
        return LAST.index(name) + 1 if name in LAST else 0
    items.sort(key=rank)  # stable: each module keeps its own order
