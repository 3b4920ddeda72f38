# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Each value of the worker role set once: Pod's queue and app, the dead-letter key and the broker's address in
vars/main.yml or defaults/main.yml, which the tasks and templates name; the `check` entry point's defaults are
those of esup_pod.xapi.xapi_check."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.esup_pod.xapi.plugins.module_utils import _xapi_check as xc
from ansible_collections.esup_pod.xapi.plugins.modules import xapi_check

ROLE = Path(__file__).resolve().parents[3] / "roles" / "worker"
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
VARS = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
MODULE_OPTIONS = yaml.safe_load(xapi_check.DOCUMENTATION)["options"]


def role_texts():
    """The task files without their comment lines, and the templates."""
    for path in sorted((ROLE / "tasks").glob("*.yml")):
        yield path.name, "\n".join(line for line in path.read_text().splitlines() if not line.strip().startswith("#"))
    for path in sorted((ROLE / "templates").glob("*.j2")):
        yield path.name, path.read_text()


def test_pod_s_names_are_those_of_the_check():
    assert VARS["_worker_queue"] == xc.QUEUE == MODULE_OPTIONS["queue"]["default"]
    assert VARS["_worker_celery_app"] + ".send_xapi_statement_task" == xc.POD_TASK_NAME
    assert DEFAULTS["worker_dead_letter_key"] == xc.DEAD_LETTER_KEY == MODULE_OPTIONS["dead_letter_key"]["default"]


@pytest.mark.parametrize("literal", [r"pod[.\[\]\\]+xapi[.\[\]\\]+xapi_tasks", r"-Q xapi\b", r"queue: xapi\b", r"'xapi'",
                                     r"xapi\.dead-letters", r"default\(6379", r"urlsplit\('port'\)"])
def test_the_tasks_and_templates_name_the_values_instead_of_repeating_them(literal):
    found = ["%s: %s" % (name, match.group(0)) for name, text in role_texts() for match in re.finditer(literal, text)]
    assert found == []


@pytest.mark.parametrize("option", ["min_consumers", "consumer_retries", "consumer_delay", "max_backlog",
                                    "max_dead_letters", "broker_memory_warning", "broker_memory_critical", "probe",
                                    "probe_timeout"])
def test_the_check_defaults_are_the_module_s(option):
    assert DEFAULTS["worker_check_" + option] == MODULE_OPTIONS[option]["default"]
