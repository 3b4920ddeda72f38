# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The worker role's checks of its own variables, which its preflight runs before any host changes."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

DOCUMENTATION = r"""
---
name: worker_input_errors
short_description: What is wrong with the variables of the role esup_pod.xapi.worker, one message a rule
version_added: "0.1.0"
description:
  - Reads the worker role's variables and answers the list of messages of the rules they break, each naming
    the variable and what to set; an empty list when every rule holds.
  - The rules go beyond the types that the role's argument specs check, for example URL schemes, absolute
    paths, node and key names, and the order of the delivery's time limits.
options:
  _input:
    description:
      - The role's variables by name, C(worker_lrs_url), C(worker_broker_url), C(worker_nodes) and the
        others that the role's preflight names. A missing one breaks its rule.
    type: dict
    required: true
  service_mgr:
    description: The host's service manager (the fact C(service_mgr)); the worker needs C(systemd).
    type: str
    default: systemd
  host:
    description: The host's inventory name, named in the message about its service manager.
    type: str
    default: the host
author:
  - Esup-Pod xAPI collection maintainers (@EsupPortail)
"""

EXAMPLES = r"""
- name: Check the worker's variables
  ansible.builtin.assert:
    that: _errors | length == 0
    fail_msg: "{{ _errors | join('; ') }}"
  vars:
    _errors: >-
      {{ {'worker_lrs_url': worker_lrs_url, 'worker_nodes': worker_nodes}
         | esup_pod.xapi.worker_input_errors(ansible_facts.service_mgr | default('systemd'), inventory_hostname) }}
"""

RETURN = r"""
_value:
  description: The messages of the rules that the variables break, in the order of the rules.
  type: list
  elements: str
  sample:
    - "worker_lrs_login is empty: set xapi_lrs_login in the inventory"
"""

TRUE_WORDS = ("y", "yes", "on", "1", "true", "t")


def as_bool(value):
    """Ansible's `bool` filter: true for True, 1 and the words of TRUE_WORDS, whatever their case."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in TRUE_WORDS


def as_int(value):
    """Jinja's `int` filter: 0 for what is not a number, "42.5" as 42."""
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError, OverflowError):
            return 0


def truncate(text, length=40, end="...", leeway=5):
    """Jinja's `truncate` filter with its defaults: the last word cut off."""
    if len(text) <= length + leeway:
        return text
    return text[:length - len(end)].rsplit(" ", 1)[0] + end


def is_string(value):
    return isinstance(value, str)


def is_list(value):
    return isinstance(value, (list, tuple))


def filled(value):
    return is_string(value) and len(value) > 0


def matches(pattern, value):
    return is_string(value) and re.match(pattern, value) is not None


def text_matches(pattern, value):
    """Ansible's `match` test, which reads any value as text."""
    return re.match(pattern, str(value)) is not None


def url_host(value):
    try:
        return urlsplit(value).hostname or ""
    except ValueError:
        return ""


def delivery_limits_hold(v):
    if not as_bool(v.get("worker_delivery_hardening")):
        return True
    names = ("worker_task_time_limit", "worker_task_soft_time_limit", "worker_lrs_timeout")
    hard, soft, lrs = (as_int(v.get(name)) for name in names)
    visibility, backoff = as_int(v.get("worker_visibility_timeout")), as_int(v.get("worker_retry_backoff_max"))
    return hard > soft > lrs > 0 and visibility > backoff + hard and backoff > 0


def rules(v, service_mgr, host):
    """(holds, message) of every rule, in the order of the messages."""
    lrs_url, broker_url = v.get("worker_lrs_url"), v.get("worker_broker_url")
    ca_file, nodes, pool = v.get("worker_lrs_ca_file"), v.get("worker_nodes"), v.get("worker_pool")
    proxy_env, index_url, find_links = v.get("worker_proxy_env"), v.get("worker_pip_index_url"), v.get("worker_pip_find_links")
    yield (matches(r"https?://[^/?#]+", lrs_url),
           "worker_lrs_url must be an http:// or https:// URL (got '%s'): set xapi_lrs_url in the inventory" % (lrs_url,))
    yield filled(v.get("worker_lrs_login")), "worker_lrs_login is empty: set xapi_lrs_login in the inventory"
    yield filled(v.get("worker_lrs_password")), "worker_lrs_password is empty: set xapi_lrs_password in the inventory"
    yield (is_string(ca_file) and (ca_file == "" or ca_file.startswith("/")),
           "worker_lrs_ca_file must be empty (the system's CA store) or the absolute path of a CA file on the encoding host")
    yield (matches(r"rediss?://", broker_url),
           "worker_broker_url must be a redis:// or rediss:// URL: set xapi_broker_worker_password and put the broker in "
           "group pod_broker, or set worker_broker_url")
    yield (not matches(r"rediss?://[^:@/]*:?@", broker_url),
           "worker_broker_url has an empty password: set xapi_broker_worker_password in the inventory (in a vault), "
           "or set worker_broker_url")
    yield (matches(r"rediss?://", broker_url) and url_host(broker_url) != "",
           "worker_broker_url has no host: group pod_broker is empty in the inventory; put the broker host in it, "
           "or set worker_broker_url")
    yield filled(v.get("worker_pod_repo")), "worker_pod_repo is empty: set the git URL of Esup-Pod"
    yield (filled(v.get("worker_pod_version")),
           'worker_pod_version must be a git tag, branch or commit given as a string (e.g. "4.1.0")')
    yield matches(r"/.", v.get("worker_pod_dir")), "worker_pod_dir must be an absolute path"
    # Distinct as Ansible's `unique` sees them: whatever their case.
    yield (is_list(nodes) and len(nodes) > 0 and all(text_matches(r"[A-Za-z0-9_-]+$", node) for node in nodes)
           and len(set(str(node).lower() for node in nodes)) == len(nodes),
           "worker_nodes must be a non-empty list of distinct node names (letters, digits, '-', '_')")
    yield (pool in ("threads", "prefork"),
           "worker_pool must be 'threads' or 'prefork', not %s" % json.dumps(truncate(str(pool))))
    counts = ("worker_concurrency", "worker_prefetch_multiplier", "worker_max_tasks_per_child")
    yield (all(as_int(v.get(name)) > 0 for name in counts),
           "worker_concurrency, worker_prefetch_multiplier and worker_max_tasks_per_child must be positive integers")
    yield (delivery_limits_hold(v),
           "with worker_delivery_hardening, worker_task_time_limit > worker_task_soft_time_limit > worker_lrs_timeout > 0, "
           "and worker_visibility_timeout > worker_retry_backoff_max (> 0) + worker_task_time_limit")
    yield (matches(r"[A-Za-z0-9_.:-]+$", v.get("worker_dead_letter_key")),
           "worker_dead_letter_key must be a Redis key name (letters, digits, '.', ':', '_', '-')")
    yield text_matches(r"[A-Za-z0-9_.-]+$", v.get("worker_service_name")), "worker_service_name must be a plain file name"
    yield (isinstance(proxy_env, Mapping) and all(matches(r"[A-Za-z_][A-Za-z0-9_]*$", name) and is_string(value)
                                                  for name, value in proxy_env.items()),
           "worker_proxy_env must map environment variable names to strings (e.g. https_proxy: http://proxy.example.org:3128)")
    yield (is_string(index_url) and (index_url == "" or matches(r"(https?|file)://", index_url)),
           "worker_pip_index_url must be empty or an http://, https:// or file:// URL")
    yield (is_list(find_links) and all(is_string(link) and re.search(r"^$|\s", link) is None for link in find_links),
           "worker_pip_find_links must be a list of directories or URLs, without spaces")
    yield (not as_bool(v.get("worker_pip_no_index")) or (is_list(find_links) and len(find_links) > 0),
           "worker_pip_no_index is true but worker_pip_find_links is empty: pip would have nowhere to find the requirements")
    yield (service_mgr == "systemd",
           "the worker needs systemd on %s (service manager: %s)" % (host, service_mgr or "?"))


def worker_input_errors(variables, service_mgr="systemd", host="the host"):
    """The messages of the rules that VARIABLES break, [] when all hold."""
    return [message for holds, message in rules(variables or {}, service_mgr, host) if not holds]


class FilterModule(object):
    def filters(self):
        return {"worker_input_errors": worker_input_errors}
