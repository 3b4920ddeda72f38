# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One source of truth for each role's variables: defaults/main.yml and meta/argument_specs.yml name the
same options, and the defaults agree with the specs' documented defaults. The reference page,
docs/variables.md, is generated from the specs (tests/unit/docs/test_docs_generated.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[3] / "roles"
NAMES = sorted(path.name for path in ROLES.iterdir() if (path / "meta" / "argument_specs.yml").is_file())


def load(role, *parts):
    return yaml.safe_load((ROLES / role).joinpath(*parts).read_text()) or {}


def options(role):
    return load(role, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]


def test_every_role_has_argument_specs():
    assert NAMES == sorted(path.name for path in ROLES.iterdir() if path.is_dir())


@pytest.mark.parametrize("role", NAMES)
def test_defaults_and_argument_specs_name_the_same_variables(role):
    defaults, specs = set(load(role, "defaults", "main.yml")), set(options(role))
    assert defaults - specs == set(), "in defaults/main.yml only"
    assert specs - defaults == set(), "in meta/argument_specs.yml only"


@pytest.mark.parametrize("role", NAMES)
def test_every_variable_is_prefixed_with_the_role_name(role):
    assert [name for name in options(role) if not name.startswith(role + "_")] == []


@pytest.mark.parametrize("role", NAMES)
def test_literal_defaults_match_the_specs(role):
    defaults = load(role, "defaults", "main.yml")
    wrong = {}
    for name, spec in options(role).items():
        value = defaults.get(name)
        if "default" in spec and not (isinstance(value, str) and "{{" in value) and spec["default"] != value:
            wrong[name] = (value, spec["default"])
    assert wrong == {}, "defaults/main.yml value, argument_specs default"
