# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The default of xapi_broker_tls: one rule for the broker and its clients."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.esup_pod.xapi.plugins.filter.broker_tls import broker_tls_default

ROOT = Path(__file__).resolve().parents[4]


@pytest.mark.parametrize("groups, expected", [
    # upstream's topology: the broker on the frontal, the worker on the encoding host
    ({"pod_broker": ["frontal"], "pod_frontal": ["frontal"], "pod_encoding": ["encoding"]}, True),
    # all in one host
    ({"pod_broker": ["pod"], "pod_frontal": ["pod"], "pod_encoding": ["pod"]}, False),
    # two frontals, the broker on one of them
    ({"pod_broker": ["web1"], "pod_frontal": ["web1", "web2"], "pod_encoding": ["web1"]}, True),
    # no encoding group yet, the broker on the frontal
    ({"pod_broker": ["frontal"], "pod_frontal": ["frontal"]}, False),
    # the site's own broker (no pod_broker group): every client is remote from it
    ({"pod_frontal": ["frontal"], "pod_encoding": ["encoding"]}, True),
    ({}, False),
])
def test_tls_is_on_when_a_client_runs_on_another_host(groups, expected):
    assert broker_tls_default(groups) is expected


@pytest.mark.parametrize("role, name", [("broker", "broker_tls"), ("frontal", "frontal_broker_tls"),
                                        ("worker", "worker_broker_tls")])
def test_every_role_reads_the_one_rule(role, name):
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
    assert defaults[name].strip() == "{{ xapi_broker_tls | default(groups | esup_pod.xapi.broker_tls_default) }}"
