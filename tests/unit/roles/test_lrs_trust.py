# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One trust store for the LRS: worker_lrs_ca_file reaches every place the worker role talks to the LRS.

The worker's delivery (the Celery config module), the preflight's POST (esup_pod.xapi.worker_preflight), the
`check` entry point and the monitoring command verify the LRS's certificate against the same file, and the
preflight stops on a file that is not there before anything changes. The tasks are found by what they do, in whichever task
file of the role holds them.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROLE = Path(__file__).resolve().parents[3] / "roles" / "worker"


def tasks():
    """Every task of the role's task files, blocks opened, in file order: (file name, task)."""
    found = []

    def walk(name, items):
        for task in items or []:
            found.append((name, task))
            for key in ("block", "rescue", "always"):
                walk(name, task.get(key))

    for path in sorted((ROLE / "tasks").glob("*.yml")):
        walk(path.name, yaml.safe_load(path.read_text()))
    return found


def loop_of(task):
    """A task's loop: its list, or the list of vars/main.yml that it names."""
    loop = task.get("loop", [])
    match = re.fullmatch(r"\{\{ (\w+) \}\}", loop) if isinstance(loop, str) else None
    return yaml.safe_load((ROLE / "vars" / "main.yml").read_text())[match.group(1)] if match else loop


def with_module(module):
    return [(name, task) for name, task in tasks() if module in task]


def test_the_preflight_posts_with_the_ca_file_after_checking_that_it_exists():
    """The preflight's POST is esup_pod.xapi.worker_preflight's, which checks the file before it
    (tests/unit/plugins/modules/test_worker_preflight_module.py: nothing reaches the LRS then)."""
    posts = [task["esup_pod.xapi.worker_preflight"] for _name, task in with_module("esup_pod.xapi.worker_preflight")
             if "lrs_url" in task["esup_pod.xapi.worker_preflight"]]
    assert len(posts) == 1
    assert "worker_lrs_ca_file" in posts[0]["lrs_ca_file"]
    assert "worker_lrs_validate_certs" in str(posts[0]["validate_certs"])


def test_the_check_entry_point_and_the_monitoring_command_get_the_ca_file():
    calls = with_module("esup_pod.xapi.xapi_check")
    assert calls and all("worker_lrs_ca_file" in task["esup_pod.xapi.xapi_check"]["lrs_ca_file"] for _name, task in calls)
    # The monitoring command's from its installed configuration, root's, never from its caller's options.
    configs = [(task, item) for _name, task in with_module("ansible.builtin.copy") for item in loop_of(task)
               if isinstance(item, dict) and item.get("dest") == "check.json"]
    assert len(configs) == 1 and configs[0][0]["ansible.builtin.copy"]["dest"].endswith("/check/{{ item.dest }}")
    configs, config = [configs[0][0]], str(configs[0][1]["content"])
    assert "'lrs_ca_file': worker_lrs_ca_file" in config and "'validate_certs': worker_lrs_validate_certs | bool" in config
    assert configs[0]["ansible.builtin.copy"]["owner"] == "root" and configs[0]["ansible.builtin.copy"]["mode"] == "0640"
    wrapper = (ROLE / "templates" / "check.sh.j2").read_text()
    assert "--lrs-ca-file" not in wrapper and "validate-certs" not in wrapper and "--settings" not in wrapper


def test_the_delivery_gets_the_ca_file_and_validate_certs():
    config = (ROLE / "templates" / "xapi_celeryconfig.py.j2").read_text()
    assert '"xapi_lrs_verify": xapi_delivery.lrs_verify({{ worker_lrs_validate_certs | bool }}, ' \
           '{{ worker_lrs_ca_file | string | to_json }}),' in config
