# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The worker role's checks of its variables (esup_pod.xapi.worker_input_errors): each rule's message, word for
word, and nothing for good values; the role's preflight hands the filter every variable that it reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.esup_pod.xapi.plugins.filter import worker_input_errors as wie

ROLE = Path(__file__).resolve().parents[4] / "roles" / "worker"
PREFLIGHT = ROLE / "tasks" / "preflight.yml"
GOOD = {
    "worker_lrs_url": "https://lrs.example.org/xAPI/statements/", "worker_lrs_login": "pod", "worker_lrs_password": "pw",
    "worker_lrs_ca_file": "", "worker_broker_url": "redis://:pw@frontal:6380/6", "worker_pod_repo": "https://git.example.org/pod",
    "worker_pod_version": "4.1.0", "worker_pod_dir": "/srv/pod", "worker_nodes": ["xapi", "xapi2"], "worker_pool": "threads",
    "worker_concurrency": 4, "worker_prefetch_multiplier": "1", "worker_max_tasks_per_child": 1000,
    "worker_delivery_hardening": True, "worker_task_time_limit": 60, "worker_task_soft_time_limit": 50,
    "worker_lrs_timeout": 10, "worker_visibility_timeout": 300, "worker_retry_backoff_max": 120,
    "worker_dead_letter_key": "xapi.dead-letters", "worker_service_name": "celeryd-xapi",
    "worker_proxy_env": {"https_proxy": "http://proxy:3128"}, "worker_pip_index_url": "", "worker_pip_find_links": [],
    "worker_pip_no_index": False,
}


def errors(service_mgr="systemd", **changes):
    return wie.worker_input_errors(dict(GOOD, **changes), service_mgr, "encoding")


def test_good_values_break_no_rule():
    assert errors() == []
    assert errors(worker_delivery_hardening="no", worker_task_time_limit=0, worker_pool="prefork",
                  worker_pip_no_index="yes", worker_pip_find_links=["/srv/wheels"], worker_nodes=[1, 2]) == []


@pytest.mark.parametrize("changes, message", [
    ({"worker_lrs_url": "ftp://lrs/"},
     "worker_lrs_url must be an http:// or https:// URL (got 'ftp://lrs/'): set xapi_lrs_url in the inventory"),
    ({"worker_lrs_login": ""}, "worker_lrs_login is empty: set xapi_lrs_login in the inventory"),
    ({"worker_lrs_password": None}, "worker_lrs_password is empty: set xapi_lrs_password in the inventory"),
    ({"worker_lrs_ca_file": "ca.pem"}, "worker_lrs_ca_file must be empty (the system's CA store) or the absolute path of a "
                                       "CA file on the encoding host"),
    ({"worker_broker_url": "redis://:pw@:6380/6"}, "worker_broker_url has no host: group pod_broker is empty in the "
                                                   "inventory; put the broker host in it, or set worker_broker_url"),
    ({"worker_pod_repo": ""}, "worker_pod_repo is empty: set the git URL of Esup-Pod"),
    ({"worker_pod_version": 4.1},
     'worker_pod_version must be a git tag, branch or commit given as a string (e.g. "4.1.0")'),
    ({"worker_pod_dir": "/"}, "worker_pod_dir must be an absolute path"),
    ({"worker_nodes": "xapi"}, "worker_nodes must be a non-empty list of distinct node names (letters, digits, '-', '_')"),
    ({"worker_nodes": ["xapi", "XAPI"]}, "worker_nodes must be a non-empty list of distinct node names (letters, digits, '-', '_')"),
    ({"worker_nodes": ["x y"]}, "worker_nodes must be a non-empty list of distinct node names (letters, digits, '-', '_')"),
    ({"worker_pool": "gevent"}, "worker_pool must be 'threads' or 'prefork', not \"gevent\""),
    ({"worker_pool": "a b c d e f g h i j k l m n o p q r s t u v w x"},
     "worker_pool must be 'threads' or 'prefork', not \"a b c d e f g h i j k l m n o p q r...\""),
    ({"worker_concurrency": "many"},
     "worker_concurrency, worker_prefetch_multiplier and worker_max_tasks_per_child must be positive integers"),
    ({"worker_visibility_timeout": 180},
     "with worker_delivery_hardening, worker_task_time_limit > worker_task_soft_time_limit > worker_lrs_timeout > 0, "
     "and worker_visibility_timeout > worker_retry_backoff_max (> 0) + worker_task_time_limit"),
    ({"worker_lrs_timeout": 50},
     "with worker_delivery_hardening, worker_task_time_limit > worker_task_soft_time_limit > worker_lrs_timeout > 0, "
     "and worker_visibility_timeout > worker_retry_backoff_max (> 0) + worker_task_time_limit"),
    ({"worker_broker_url": "redis://xapi-worker:@broker:6380/6"},
     "worker_broker_url has an empty password: set xapi_broker_worker_password in the inventory (in a vault), "
     "or set worker_broker_url"),
    ({"worker_dead_letter_key": "dead letters"},
     "worker_dead_letter_key must be a Redis key name (letters, digits, '.', ':', '_', '-')"),
    ({"worker_service_name": "../celeryd"}, "worker_service_name must be a plain file name"),
    ({"worker_proxy_env": {"https-proxy": "http://proxy:3128"}}, "worker_proxy_env must map environment variable names to "
                                                                 "strings (e.g. https_proxy: http://proxy.example.org:3128)"),
    ({"worker_proxy_env": {"https_proxy": 3128}}, "worker_proxy_env must map environment variable names to strings "
                                                  "(e.g. https_proxy: http://proxy.example.org:3128)"),
    ({"worker_pip_index_url": "pypi.example.org"}, "worker_pip_index_url must be empty or an http://, https:// or file:// URL"),
    ({"worker_pip_find_links": ["/srv/my wheels"]}, "worker_pip_find_links must be a list of directories or URLs, without spaces"),
    ({"worker_pip_no_index": "true"},
     "worker_pip_no_index is true but worker_pip_find_links is empty: pip would have nowhere to find the requirements"),
])
def test_each_rule_names_its_variable(changes, message):
    assert errors(**changes) == [message]


def test_a_url_that_is_not_redis_breaks_both_broker_rules():
    assert errors(worker_broker_url="http://frontal:6380") == [
        "worker_broker_url must be a redis:// or rediss:// URL: set xapi_broker_worker_password and put the broker in "
        "group pod_broker, or set worker_broker_url",
        "worker_broker_url has no host: group pod_broker is empty in the inventory; put the broker host in it, or set "
        "worker_broker_url"]


def test_the_worker_needs_systemd():
    assert errors(service_mgr="sysvinit") == ["the worker needs systemd on encoding (service manager: sysvinit)"]
    assert errors(service_mgr="") == ["the worker needs systemd on encoding (service manager: ?)"]


def test_the_preflight_hands_over_every_variable_that_the_rules_read():
    read = set(re.findall(r"\"(worker_[a-z_]+)\"", Path(wie.__file__).read_text())) - {"worker_input_errors"}
    tasks = yaml.safe_load(PREFLIGHT.read_text())
    tasks += [child for task in tasks for child in task.get("block", [])]
    check = [task for task in tasks if task["name"] == "Check the worker's variables"]
    assert len(check) == 1 and "q('ansible.builtin.vars', *_worker_inputs)" in check[0]["vars"]["_worker_input_errors"]
    assert set(yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["_worker_inputs"]) == read
