# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""docs/variables.md is what scripts/gen_docs.py makes from the roles' meta/argument_specs.yml, now."""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_variable_reference_is_generated_from_the_specs_of_today():
    written = (ROOT / "docs" / "variables.md").read_text()
    wanted = gen_docs().render(ROOT / "roles")
    diff = "".join(difflib.unified_diff(written.splitlines(True), wanted.splitlines(True),
                                        "docs/variables.md", "generated", n=0))
    assert written == wanted, "docs/variables.md is stale: run python scripts/gen_docs.py\n" + diff[:3000]


@pytest.mark.parametrize("role", ["broker", "frontal", "worker"])
def test_the_reference_has_a_row_for_every_option_of_the_specs(role):
    import yaml

    options = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    names = options["argument_specs"]["main"]["options"]
    section = gen_docs().role_section(role, ROOT / "roles")
    assert [name for name in names if "| `%s` |" % name not in section] == []


def test_the_role_readmes_point_at_the_reference_instead_of_keeping_a_table():
    for role in ("broker", "frontal", "worker"):
        readme = (ROOT / "roles" / role / "README.md").read_text()
        assert "docs/variables.md#%s" % role in readme, role
        assert "| variable | default |" not in readme and "| name | default |" not in readme, role
