# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The worker's throughput and memory figures are measured in one place, docs/benchmarks.md; every other
page links to it, so that two pages cannot give two figures."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
HOME = "docs/benchmarks.md"
# The monitoring command's sample lines, whose one place is this page: the broker's memory in them is a state
# of the lab at the time, not a measurement of the worker.
SAMPLES = ("docs/monitoring.md", "XAPI ")
# A rate, a memory size or a share of the LRS's ceiling, after a number.
FIGURE = re.compile(r"\d\s?(MiB|GiB|MB RSS|statements/s|statements per second|st/s|ms of CPU|%)")


def pages():
    found = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))
    for role in sorted((ROOT / "roles").iterdir()):
        found += [role / "README.md", role / "meta" / "argument_specs.yml", role / "defaults" / "main.yml"]
    return [path for path in found if path.is_file()]


def figures_outside_home():
    hits = []
    for path in pages():
        name = str(path.relative_to(ROOT))
        if name == HOME:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if name == SAMPLES[0] and line.startswith(SAMPLES[1]):
                continue
            hits += ["%s:%d: %s" % (name, number, match.group(0)) for match in FIGURE.finditer(line)]
    return hits


def test_throughput_and_memory_figures_are_only_in_the_benchmarks_page():
    assert figures_outside_home() == []


def test_the_benchmarks_page_holds_them():
    assert FIGURE.search((ROOT / HOME).read_text())
