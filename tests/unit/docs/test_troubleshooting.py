# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every symptom that the troubleshooting tables quote is a message that the code still prints.

A symptom is the code spans of a table row's first cell; `…` stands for what changes (a host, a URL, a
number). Its pieces must appear, in that order, in one file of the roles, the plugins or the playbooks,
whitespace aside (a YAML message folds over lines)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PAGES = ["docs/troubleshooting.md", "docs/fr/depannage.md"]
CODE_SUFFIXES = {".yml", ".py", ".j2"}
DOC_NAMES = {"DOCUMENTATION", "EXAMPLES", "RETURN"}
# Between two Python literals: no symptom spans two of them.
SEPARATOR = "\x00"


def python_strings(text):
    """The string literals of a Python file that it can print: no docstring, no comment, no
    DOCUMENTATION, EXAMPLES or RETURN. Each literal stays apart, so that a symptom is one literal."""
    tree = ast.parse(text)
    skipped = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            skipped.add(id(body[0].value))
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") in DOC_NAMES for t in node.targets):
            skipped.add(id(node.value))
    return SEPARATOR.join(node.value for node in ast.walk(tree)
                          if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped)


def source_texts():
    """File name -> what it can print, whitespace collapsed: Python's string literals, and the other
    files (task files, templates) without their comment lines."""
    texts = {}
    for top in ("roles", "plugins", "playbooks"):
        for path in sorted((ROOT / top).rglob("*")):
            if not path.is_file() or path.suffix not in CODE_SUFFIXES:
                continue
            text = path.read_text()
            if path.suffix == ".py":
                text = python_strings(text)
            else:
                text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
            texts[str(path.relative_to(ROOT))] = re.sub(r"\s+", " ", text)
    return texts


def symptoms(page):
    """The quoted symptoms of PAGE's tables: one list of code spans a row."""
    rows = []
    for line in (ROOT / page).read_text().splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 3 and cells[0] not in ("symptom", "symptôme") and not set(cells[0]) <= set("-"):
            rows.append(re.findall(r"`([^`]+)`", cells[0]))
    return rows


def pieces(symptom):
    return [" ".join(piece.split()) for piece in symptom.split("…") if piece.strip()]


def found_in(symptom, texts):
    """The files that hold SYMPTOM's pieces in order."""
    wanted = pieces(symptom)
    hits = []
    for name, text in texts.items():
        at = 0
        for piece in wanted:
            at = text.find(piece, at)
            if at < 0:
                break
            at += len(piece)
        else:
            hits.append(name)
    return hits


@pytest.mark.parametrize("page", PAGES)
def test_every_row_quotes_a_message(page):
    rows = symptoms(page)
    assert len(rows) >= 30, "%s: %d rows" % (page, len(rows))
    assert [row for row in rows if not row] == []
    # A quote too short to point at one message proves nothing.
    assert [s for row in rows for s in row if sum(len(p) for p in pieces(s)) < 12] == []


@pytest.mark.parametrize("page", PAGES)
def test_every_quoted_symptom_is_still_a_message_of_the_code(page):
    texts = source_texts()
    assert [s for row in symptoms(page) for s in row if not found_in(s, texts)] == []


def test_the_french_page_quotes_the_same_symptoms_in_the_same_order():
    english, french = (symptoms(page) for page in PAGES)
    assert french == english


def test_a_message_that_the_code_no_longer_prints_is_caught():
    texts = source_texts()
    assert found_in("broker unreachable at … (worker_broker_url)", texts)
    assert not found_in("broker unreachable at … (worker_broker_uri)", texts)
    assert not found_in("(worker_broker_url) … broker unreachable at", texts)
