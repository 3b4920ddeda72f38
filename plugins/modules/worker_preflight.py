#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: worker_preflight
short_description: Check, from an encoding host, that the broker and the LRS answer as the xAPI worker needs
version_added: 0.1.0
description:
  - The preflight of the role esup_pod.xapi.worker, before any host changes. It reads only, and fails with a
    message that names the variable to fix.
  - With O(broker_url), it waits up to O(timeout) seconds for the broker's TCP port, then authenticates with the
    URL's credentials, sends C(PING) and reads C(INFO). It fails when the broker does not answer, refuses the
    credentials, runs a Redis older than 6.2 (no C(BLMOVE), with which a node takes each message) or evicts
    any key when full (C(maxmemory-policy allkeys-*)); it warns when the broker evicts keys that expire.
  - With O(lrs_url), it checks that O(lrs_ca_file) is a file, that the host resolves the LRS's name
    (C(getent ahosts)), then POSTs an empty list of statements with the credentials, following no redirect
    as the worker does. It fails on a redirect, refused credentials, no answer, or an HTTP status that says
    the URL is not the LRS's statements URL. An empty list stores nothing.
  - Only Python's standard library and Ansible's own, on the host's Python (the worker's virtualenv may not
    exist yet).
options:
  host:
    description: The host's inventory name, named in the messages.
    type: str
    default: this host
  broker_url:
    description: The worker's C(redis://) or C(rediss://) URL of the broker, with its password.
    type: str
  broker_may_be_missing:
    description:
      - A broker that does not answer is not a failure but RV(broker_pending) (check mode, when this run
        deploys the broker).
    type: bool
    default: false
  lrs_url:
    description: The LRS's statements URL (C(XAPI_LRS_URL)).
    type: str
  lrs_login:
    description: The LRS's login of the worker.
    type: str
    default: ""
  lrs_password:
    description: Its password.
    type: str
    default: ""
  validate_certs:
    description: Verify the LRS's certificate.
    type: bool
    default: true
  lrs_ca_file:
    description:
      - The CA file that the LRS's certificate is verified against; empty for the system's CA store. It must
        exist when O(validate_certs) is true.
    type: str
    default: ""
  timeout:
    description: Seconds allowed for each network operation.
    type: float
    default: 5
notes:
  - Check mode is supported; the module never changes anything.
author:
  - Esup-Pod xAPI collection maintainers (@EsupPortail)
"""

EXAMPLES = r"""
- name: Check the broker, then the LRS, from the encoding host
  esup_pod.xapi.worker_preflight:
    host: "{{ inventory_hostname }}"
    broker_url: "redis://xapi-worker:{{ xapi_broker_worker_password | urlencode }}@frontal:6380/6"
    lrs_url: https://lrs.example.org/xAPI/statements/
    lrs_login: pod-xapi
    lrs_password: "{{ xapi_lrs_password }}"
"""

RETURN = r"""
broker:
  description: What the broker said of itself (empty when it was not checked or did not answer).
  returned: always
  type: dict
  sample: {"version": "7.0.15", "policy": "noeviction", "used": 1048576, "limit": 268435456}
broker_pending:
  description: The broker did not answer, and O(broker_may_be_missing) was true.
  returned: always
  type: bool
lrs_status:
  description: The LRS's HTTP status for the empty list (-1 without an answer; absent when the LRS was not checked).
  returned: when O(lrs_url) is given
  type: int
  sample: 200
"""

import os
from urllib.error import HTTPError
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.esup_pod.xapi.plugins.module_utils._xapi_check import BrokerURLError, parse_broker_url
from ansible_collections.esup_pod.xapi.plugins.module_utils._worker_preflight import (
    BrokerRefused,
    broker_problem,
    broker_warning,
    lrs_problem,
    redis_look,
    wait_port,
)


def check_broker(module, result):
    params = module.params
    url = params["broker_url"]
    try:
        parts = parse_broker_url(url)
    except BrokerURLError as exc:
        module.fail_json(msg="%s (worker_broker_url)" % exc, **result)
    address = "%s:%s" % (parts["host"], parts["port"])
    if not wait_port(parts["host"], parts["port"], params["timeout"]):
        if params["broker_may_be_missing"]:
            result["broker_pending"] = True
            return
        module.fail_json(msg="broker unreachable at %s (worker_broker_url)" % address, **result)
    try:
        result["broker"] = redis_look(url, params["timeout"])
    except BrokerRefused as exc:
        module.fail_json(msg="broker at %s refused the connection of worker_broker_url: %s (check xapi_broker_worker_password "
                             "or worker_broker_url)" % (address, exc), **result)
    problem = broker_problem(address, result["broker"])
    if problem:
        module.fail_json(msg=problem, **result)
    warning = broker_warning(address, result["broker"])
    if warning:
        module.warn(warning)


def check_lrs(module, result):
    params = module.params
    url, ca_file, host = params["lrs_url"], params["lrs_ca_file"], params["host"]
    if params["validate_certs"] and ca_file and not os.path.isfile(ca_file):
        module.fail_json(msg="worker_lrs_ca_file %s is not a file on %s: copy the CA that signed the LRS's certificate "
                             "there (PEM), or leave worker_lrs_ca_file empty for the system's CA store" % (ca_file, host),
                         **result)
    name = urlsplit(url).hostname or ""
    rc = module.run_command(["getent", "ahosts", name])[0]
    if rc != 0:
        module.fail_json(msg="worker_lrs_url (XAPI_LRS_URL) names the host '%s', which %s cannot resolve (getent ahosts: "
                             "exit %d): set xapi_lrs_url to the LRS's name as the encoding hosts resolve it, or fix their "
                             "DNS" % (name, host, rc), **result)
    location = error = None
    try:
        response = open_url(url, data=b"[]", method="POST", timeout=params["timeout"], force_basic_auth=True,
                            url_username=params["lrs_login"], url_password=params["lrs_password"],
                            headers={"Content-Type": "application/json", "X-Experience-API-Version": "1.0.3"},
                            validate_certs=params["validate_certs"], follow_redirects="none",
                            ca_path=ca_file if params["validate_certs"] and ca_file else None)
        status = response.getcode()
    except HTTPError as exc:
        status, location = exc.code, exc.headers.get("Location") if exc.headers else None
    except Exception as exc:  # pylint: disable=broad-except
        status, error = -1, "Request failed: %s" % exc
    result["lrs_status"] = status
    problem = lrs_problem(url, params["lrs_login"], status, location, error)
    if problem:
        module.fail_json(msg=problem, **result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            host=dict(type="str", default="this host"),
            broker_url=dict(type="str", no_log=True),
            broker_may_be_missing=dict(type="bool", default=False),
            lrs_url=dict(type="str"),
            lrs_login=dict(type="str", default=""),
            lrs_password=dict(type="str", default="", no_log=True),
            validate_certs=dict(type="bool", default=True),
            lrs_ca_file=dict(type="str", default=""),
            timeout=dict(type="float", default=5.0),
        ),
        supports_check_mode=True,
    )
    result = dict(changed=False, broker={}, broker_pending=False)
    if module.params["broker_url"]:
        check_broker(module, result)
    if module.params["lrs_url"]:
        check_lrs(module, result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
