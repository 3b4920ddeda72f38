# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Lets `pytest tests/unit` import ansible_collections.esup_pod.xapi.* from a plain checkout.

The checkout holds the link ansible_collections/esup_pod/xapi -> its own root, so putting the checkout's
root first on sys.path is enough. Under `ansible-test units` the collection already sits at
.../ansible_collections/esup_pod/xapi and ansible-test sets the path itself: nothing is done then.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(os.path.abspath(__file__)).parents[2]

if ROOT.parent.parent.name != "ansible_collections" and (ROOT / "ansible_collections" / "esup_pod" / "xapi").is_dir():
    sys.path.insert(0, str(ROOT))


# A skipped test proves nothing, and every dependency of these tests is in requirements-dev.txt:
# a skip (a missing module behind pytest.importorskip, say) fails the run instead of passing it.
def pytest_terminal_summary(terminalreporter):
    skipped = terminalreporter.stats.get("skipped", [])
    if skipped:
        terminalreporter.write_line(
            "FAILED: %d test(s) skipped; a skip counts as a failure here:" % len(skipped), red=True)
        for report in skipped:
            terminalreporter.write_line("  %s: %s" % (report.nodeid, report.longrepr))


def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and reporter.stats.get("skipped") and exitstatus == 0:
        session.exitstatus = 1
