# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The releases the collection claims, the one list that every role's preflight reads.

They are exactly the releases the lab tests (docs/contributing.md, "Supported versions"). The roles'
meta/main.yml repeat them for Galaxy; a unit test keeps those in step with this list.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: unclaimed_platform
short_description: Why a host's OS release is not one the collection claims, or an empty string
version_added: "0.1.0"
description:
  - Reads the host's facts (C(distribution), C(distribution_major_version), C(distribution_release))
    and answers an empty string when the collection claims that release, else a message naming the
    host, its release, the role and the releases claimed.
  - The claimed releases are the tested ones, Debian 12 (bookworm) and Debian 13 (trixie), with systemd.
options:
  _input:
    description: The host's facts (C(ansible_facts)).
    type: dict
    required: true
  role:
    description: The role that refuses the host, named in the message.
    type: str
    required: true
  host:
    description: The host's inventory name, named in the message.
    type: str
    required: true
author:
  - Esup-Pod xAPI collection maintainers (@EsupPortail)
"""

EXAMPLES = r"""
- name: Check that the host runs a release that the role claims
  ansible.builtin.assert:
    that: _unclaimed | length == 0
    fail_msg: "{{ _unclaimed }}"
  vars:
    _unclaimed: "{{ ansible_facts | esup_pod.xapi.unclaimed_platform('esup_pod.xapi.worker', inventory_hostname) }}"
"""

RETURN = r"""
_value:
  description: An empty string when the release is claimed, else why not.
  type: str
  sample: >-
    encoding runs Debian 11 (bullseye), which esup_pod.xapi.worker does not support: it supports
    Debian 12 (bookworm) and Debian 13 (trixie) only
"""

# (distribution, major version, release name): the releases the lab tests, and the only ones claimed.
CLAIMED = (
    ("Debian", "12", "bookworm"),
    ("Debian", "13", "trixie"),
)


def claim_text(claimed=CLAIMED):
    """'Debian 12 (bookworm) and Debian 13 (trixie)'."""
    names = ["%s %s (%s)" % release for release in claimed]
    return names[0] if len(names) == 1 else "%s and %s" % (", ".join(names[:-1]), names[-1])


def unclaimed_platform(facts, role, host, claimed=CLAIMED):
    """'' when FACTS describe a claimed release, else the message naming HOST, its release, ROLE and the claim."""
    facts = facts or {}
    distribution = str(facts.get("distribution") or "")
    version = str(facts.get("distribution_major_version") or "")
    release = str(facts.get("distribution_release") or "")
    if any(distribution == name and version == major for name, major, dummy in claimed):
        return ""
    if not distribution:
        seen = "an unknown OS (no distribution facts)"
    else:
        seen = " ".join(part for part in (distribution, version if version not in ("", "NA", "n/a") else "") if part)
        if release and release not in ("NA", "n/a"):
            seen += " (%s)" % release
    return "%s runs %s, which %s does not support: it supports %s only" % (host, seen, role, claim_text(claimed))


class FilterModule(object):
    def filters(self):
        return {"unclaimed_platform": unclaimed_platform}
