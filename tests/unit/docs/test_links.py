# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every relative link of the README, CONTRIBUTING, docs/ and the role READMEs reaches a file, and a
section of it: a heading's GitHub anchor or an `<a id>` (the French pages' anchors)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ansible_collections.esup_pod.xapi.tests.unit.docs.test_languages import headings, slug

ROOT = Path(__file__).resolve().parents[3]
PAGES = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md"] + list((ROOT / "docs").rglob("*.md"))
               + list((ROOT / "roles").glob("*/README.md")))


def anchors(path):
    text = path.read_text()
    seen = {}
    return {slug(title, seen) for _level, title, _number in headings(text)[0]} | set(re.findall(r'<a id="([^"]+)"', text))


def broken_links(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _sep, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append((target, "no such file"))
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append((target, "no such section"))
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_reaches_its_target(page):
    assert broken_links(page) == []
