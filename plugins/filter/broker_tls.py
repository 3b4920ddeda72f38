# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The default of xapi_broker_tls, one rule that the broker, frontal and worker roles all read."""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: broker_tls_default
short_description: Whether the broker link should be TLS when the inventory does not say
version_added: "0.1.0"
description:
  - Answers true when a client of the broker (a host of C(pod_frontal) or C(pod_encoding)) is not a host of
    C(pod_broker), since its statements and the broker's passwords would then cross the network. False when every
    client runs on a broker host, where they reach it on the host itself.
  - The roles read it only when C(xapi_broker_tls) is unset, so that the broker and its clients agree.
options:
  _input:
    description: The inventory's groups (C(groups)).
    type: dict
    required: true
author:
  - Esup-Pod xAPI collection maintainers (@EsupPortail)
"""

EXAMPLES = r"""
- name: Tell whether the broker serves TLS
  ansible.builtin.debug:
    msg: "{{ xapi_broker_tls | default(groups | esup_pod.xapi.broker_tls_default) }}"
"""

RETURN = r"""
_value:
  description: True when a client of the broker runs on another host than the broker.
  type: bool
"""


def broker_tls_default(groups):
    """True when a host of pod_frontal or pod_encoding is not in pod_broker."""
    groups = groups or {}
    clients = set(groups.get("pod_frontal") or []) | set(groups.get("pod_encoding") or [])
    return bool(clients - set(groups.get("pod_broker") or []))


class FilterModule(object):
    def filters(self):
        return {"broker_tls_default": broker_tls_default}
