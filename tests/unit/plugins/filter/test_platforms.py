# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one list of claimed releases: what every role's preflight refuses, and the copies that must agree with it
(the roles' Galaxy metadata, the contributors' guide)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.esup_pod.xapi.plugins.filter import platforms

ROOT = Path(__file__).resolve().parents[4]
ROLES = sorted(path.name for path in (ROOT / "roles").iterdir() if path.is_dir())


def facts(distribution, version, release):
    return {"distribution": distribution, "distribution_major_version": version, "distribution_release": release}


@pytest.mark.parametrize("version, release", [("12", "bookworm"), ("13", "trixie")])
def test_the_tested_releases_pass(version, release):
    assert platforms.unclaimed_platform(facts("Debian", version, release), "esup_pod.xapi.worker", "encoding") == ""


def test_debian_11_is_refused_naming_the_release_the_role_and_the_claim():
    assert platforms.unclaimed_platform(facts("Debian", "11", "bullseye"), "esup_pod.xapi.worker", "encoding") == (
        "encoding runs Debian 11 (bullseye), which esup_pod.xapi.worker does not support: it supports Debian 12 "
        "(bookworm) and Debian 13 (trixie) only")


@pytest.mark.parametrize("found, seen", [
    (facts("Ubuntu", "22", "jammy"), "Ubuntu 22 (jammy)"),
    (facts("Ubuntu", "12", "precise"), "Ubuntu 12 (precise)"),  # a claimed number of another distribution
    (facts("Debian", "n/a", "n/a"), "Debian"),  # testing or sid before its release
    (facts("Debian", "14", "forky"), "Debian 14 (forky)"),
    ({}, "an unknown OS (no distribution facts)"),
])
def test_anything_else_is_refused(found, seen):
    message = platforms.unclaimed_platform(found, "esup_pod.xapi.broker", "frontal")
    assert message.startswith("frontal runs %s, which esup_pod.xapi.broker does not support:" % seen)


def test_the_filter_is_exported():
    assert platforms.FilterModule().filters() == {"unclaimed_platform": platforms.unclaimed_platform}


@pytest.mark.parametrize("role", ROLES)
def test_each_roles_galaxy_metadata_claims_the_same_releases(role):
    meta = yaml.safe_load((ROOT / "roles" / role / "meta" / "main.yml").read_text())
    claimed = sorted((p["name"], v) for p in meta["galaxy_info"]["platforms"] for v in p["versions"])
    assert claimed == sorted((name, release) for name, _version, release in platforms.CLAIMED)


@pytest.mark.parametrize("role", ROLES)
def test_each_roles_preflight_refuses_what_is_not_claimed(role):
    preflight = (ROOT / "roles" / role / "tasks" / "preflight.yml").read_text()
    assert "esup_pod.xapi.unclaimed_platform('esup_pod.xapi.%s', inventory_hostname)" % role in preflight


def test_the_contributors_guide_states_the_claim():
    guide = (ROOT / "docs" / "contributing.md").read_text()
    row = next(line for line in guide.splitlines() if line.startswith("| managed hosts |"))
    for name, version, _release in platforms.CLAIMED:
        assert "%s %s" % (name, version) in row
