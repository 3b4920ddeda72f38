# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The French pages have the sections of the English pages they translate, no more, no fewer, in order.

Each heading of a French page is preceded by `<a id="SLUG"></a>`, where SLUG is the anchor GitHub gives
the English heading it translates. So the pairs do not depend on the wording of either heading, a link
to `#SLUG` works in both languages, and a section added, removed or renamed on one side fails here until
the other side follows (docs/contributing.md, "Translations")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
# English page -> its French translation.
PAIRS = {
    "README.md": "docs/fr/README.md",
    "docs/admin-guide.md": "docs/fr/guide-admin.md",
    "docs/troubleshooting.md": "docs/fr/depannage.md",
}
ANCHOR = re.compile(r'^<a id="([^"]+)"></a>$')


def headings(text):
    """(level, title, line number) of each Markdown heading, fenced code left out."""
    found, fenced = [], False
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"^(#{1,6}) +(.*?) *#*$", line)
        if match:
            found.append((len(match.group(1)), match.group(2), number))
    return found, lines


def slug(title, seen):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-', '-N' for repeats."""
    text = re.sub(r"[^\w\- ]", "", title.lower().replace("`", "")).replace(" ", "-")
    count = seen.get(text, 0)
    seen[text] = count + 1
    return text if count == 0 else "%s-%d" % (text, count)


def english_sections(page):
    found = headings((ROOT / page).read_text())[0]
    seen = {}
    return [(level, slug(title, seen)) for level, title, _number in found]


def french_sections(page):
    """(level, id) of each heading of a French page; id None when the line above is not an anchor."""
    found, lines = headings((ROOT / page).read_text())
    sections = []
    for level, _title, number in found:
        match = ANCHOR.match(lines[number - 1]) if number > 0 else None
        sections.append((level, match.group(1) if match else None))
    return sections


def gaps(english, french):
    """What one side has and the other lacks, for a readable failure."""
    missing = [s for s in english if s not in french]
    extra = [s for s in french if s not in english]
    return {"missing in French": missing, "only in French": extra}


def test_the_slug_is_githubs():
    seen = {}
    assert slug("What it changes on each host, and what it never touches", seen) == (
        "what-it-changes-on-each-host-and-what-it-never-touches")
    assert slug("Migrating from a hand-made `celeryd-xapi` (the seed document)", seen) == (
        "migrating-from-a-hand-made-celeryd-xapi-the-seed-document")
    assert slug("esup_pod.xapi: Esup-Pod's xAPI pipeline", seen) == "esup_podxapi-esup-pods-xapi-pipeline"
    assert slug("Tags", seen) == "tags" and slug("Tags", seen) == "tags-1"


@pytest.mark.parametrize("english, french", sorted(PAIRS.items()))
def test_every_section_exists_in_both_languages(english, french):
    en, fr = english_sections(english), french_sections(french)
    assert [s for s in fr if s[1] is None] == [], "%s: a heading without <a id=...> above it" % french
    assert gaps(en, fr) == {"missing in French": [], "only in French": []}
    assert fr == en, "same sections, but not in the same order or at the same level"


def test_a_missing_french_section_is_caught():
    en = english_sections("docs/admin-guide.md")
    fr = french_sections("docs/fr/guide-admin.md")
    planted = [s for s in fr if s[1] != "tags"]
    assert gaps(en, planted)["missing in French"] == [(2, "tags")]
