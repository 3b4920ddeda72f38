#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: xapi_check
short_description: Check that xAPI statements flow from Pod to the LRS, and name the broken link
version_added: "0.1.0"
description:
  - Checks, link by link, the pipeline that carries Esup-Pod's xAPI statements
    (frontal, Redis broker, Celery worker, LRS) and reports on each link.
  - "B(broker): the Redis broker answers a PING, and accepts the password of O(broker_url)."
  - "B(memory): the broker's used memory against its C(maxmemory) (Redis C(INFO memory)), in percent.
    Only under C(maxmemory-policy noeviction) does a broker at its limit refuse the frontal's enqueues:
    there, at O(broker_memory_warning) percent the module warns, and at O(broker_memory_critical) the
    check fails. Under another policy Redis evicts at its limit, so the memory is reported and never
    fails; with C(maxmemory 0) the broker has no limit, and the module says so. A broker that refuses
    C(INFO) (an ACL user without it) leaves it unknown: the link is skipped."
  - "B(consumers): how many Celery worker nodes consume O(queue), and their names, asked through a
    Celery app on the broker (the C(active_queues) command of Celery's C(inspect)). Workers that
    are still starting get O(consumer_retries) more attempts, O(consumer_delay) seconds apart."
  - "B(backlog): the messages waiting in O(queue) on the broker (the Redis list of the queue and
    its priority sub-lists, as kombu's Redis transport stores them), compared with O(max_backlog)."
  - "B(dead_letters): the statements the LRS refused for good (HTTP 4xx other than 401, 403, 408,
    409, 425 and 429), which the worker role keeps in the Redis list O(dead_letter_key) on the broker
    instead of dropping them, compared with O(max_dead_letters)."
  - "B(lrs): the LRS answers a C(POST) of an empty list of statements on O(lrs_url), which stores
    nothing, and how long it took (latency in ms). A redirect (HTTP 3xx) is not followed, as the
    worker never follows one: it fails the check, naming its target."
  - "B(credentials): the LRS accepts O(lrs_login) and O(lrs_password) (it refuses the empty list
    itself, HTTP 400 or 422, or takes it, HTTP 2xx), or refuses them (HTTP 401 or 403). An LRS
    authenticates a request before it reads its body, so a key that may only write passes."
  - "B(probe) (optional, O(probe)): one probe statement is enqueued through Pod's own task
    C(pod.xapi.xapi_tasks.send_xapi_statement_task) on O(queue), with a fresh UUID as its id;
    the module then waits until the statement is stored, or O(probe_timeout) runs out, and reports the
    delivery latency. With O(lrs_read_login) set, it reads the probe back from the LRS with that account
    (RV(probe.proof) is V(read_back)). Without it (a key that may only write cannot read), it relies on
    the LRS's own answer to the worker's POST of the probe, which the worker keeps on the broker for
    10 minutes under C(xapi.probe-answer:ID): the answer must name the probe's id (RV(probe.proof) is
    V(lrs_answer), and the message says so). Every probe statement has the activity id
    C(urn:esup-pod:xapi:probe) and the actor C(mailto:xapi-probe@example.org): filter either
    out of your learning analytics."
  - The probe runs only when every other link is healthy, so that a broken pipeline never piles
    probes up in the queue.
  - On failure, RV(msg) names the broken links, in pipeline order, joined by C(; ).
  - Each message names the cause, then, after a colon, what to do next (for example, after C(LRS refused the
    credentials), the variables to set and that C(site.yml) must run again).
  - The causes are C(broker unreachable at HOST:PORT), C(broker refused the password),
    the memory's message (below),
    C(no worker consumes queue QUEUE), "only N worker(s) consume queue QUEUE, expected at least M",
    C(backlog N exceeds M), the dead letters' message (next item),
    C(LRS unreachable at URL), the redirect's message (below), C(LRS refused the credentials),
    C(LRS answered HTTP STATUS at URL), C(probe not stored within N s), the read account's message (below)
    and C(LRS answered the probe's POST with HTTP STATUS but without the probe's id).
  - "The read account's message is C(LRS refused to read the probe back to the read account 'LOGIN' (HTTP STATUS\\):
    check xapi_lrs_read_login and xapi_lrs_read_password, and that this account may read statements). A read
    refused to the read account never fails the credentials of O(lrs_login)."
  - "The memory's message is C(broker memory at P% of its maxmemory (USED of LIMIT\\), over T%: when full it
    refuses new statements (noeviction\\)), then what to do next."
  - 'The redirect''s cause is C(XAPI_LRS_URL redirects to TARGET), any password in TARGET masked.'
  - 'The dead letters'' cause is C(N statement(s\) refused by the LRS wait in KEY (more than M\)).'
  - The broker's password never appears in the output; URLs are shown as C(redis://:********@host:6380/6).
  - "B(Where it runs): on an encoding host (group C(pod_encoding)), with C(ansible_python_interpreter)
    set to the Celery worker's virtualenv python, for example
    C(/home/pod/.virtualenvs/django_pod4/bin/python). That virtualenv already holds the libraries
    the module needs (celery, redis, requests from Pod's C(requirements-encode.txt)), and the checks
    then see the broker and the LRS from where the worker sees them. The module installs nothing."
author:
  - Esup-Pod xAPI collection maintainers (@EsupPortail)
requirements:
  - celery (Pod 4.1.0 pins 5.4.0)
  - redis (Pod 4.1.0 pins 5.2.0)
  - requests (Pod 4.1.0 pins 2.32.4)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The read-only checks run; the probe is skipped, so nothing is added to the LRS.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  broker_url:
    description:
      - URL of the Redis broker, as Pod's C(XAPI_CELERY_BROKER_URL), for example
        C(redis://:PASSWORD@frontal:6380/6). Only C(redis://) and C(rediss://) are supported.
      - When not given, read from C(XAPI_CELERY_BROKER_URL) in O(settings_path).
    type: str
  lrs_url:
    description:
      - URL of the LRS statements resource, as Pod's C(XAPI_LRS_URL), for example
        C(https://lrs.example.org/xAPI/statements/).
      - When not given, read from C(XAPI_LRS_URL) in O(settings_path).
    type: str
  lrs_login:
    description:
      - LRS login (HTTP basic auth), as Pod's C(XAPI_LRS_LOGIN).
      - When not given, read from C(XAPI_LRS_LOGIN) in O(settings_path).
    type: str
  lrs_password:
    description:
      - LRS password (HTTP basic auth), as Pod's C(XAPI_LRS_PWD).
      - When not given, read from C(XAPI_LRS_PWD) in O(settings_path).
    type: str
  lrs_read_login:
    description:
      - An LRS account that may read statements (HTTP basic auth), with which the probe is read back.
      - When not set, the probe relies on the LRS's answer to the worker's POST (see the description).
      - Set with O(lrs_read_password), or not at all.
    type: str
  lrs_read_password:
    description: The password of O(lrs_read_login).
    type: str
  settings_path:
    description:
      - Pod's C(settings_local.py), read only when one of O(broker_url), O(lrs_url), O(lrs_login),
        O(lrs_password) is not given.
      - The file is parsed, never run, so that reading it runs none of the code it holds. Only
        top-level assignments of literal values count (strings, numbers, booleans, V(None), lists,
        dicts, and strings joined with C(+)), the last one winning, as when Python runs the file;
        the managed block of M(esup_pod.xapi.pod_settings) is such assignments.
      - A needed name whose last binding is not a literal (computed, imported, assigned inside an
        C(if) or a C(try)) fails the check, naming the name and the file; give the value as an
        option instead.
    type: path
    default: /usr/local/django_projects/podv4/pod/custom/settings_local.py
  queue:
    description: The Celery queue of Pod's xAPI task.
    type: str
    default: xapi
  min_consumers:
    description: The fewest worker nodes that must consume O(queue).
    type: int
    default: 1
  nodes:
    description:
      - Worker nodes that must be among the consumers of O(queue), for example this host's own
        C(xapi@encoding1). A missing one fails the check and is named, even when other hosts' nodes
        are enough for O(min_consumers).
    type: list
    elements: str
    default: []
  consumer_retries:
    description:
      - How many more times to ask for the consumers when fewer than O(min_consumers) answered, or one
        of O(nodes) is missing (workers still starting).
      - The worker role's monitoring command asks only once, since a monitoring agent waits for its answer.
    type: int
    default: 5
  consumer_delay:
    description: Seconds to wait between two attempts to count the consumers.
    type: float
    default: 2.0
  max_backlog:
    description:
      - The most messages that may wait in O(queue). A negative value disables the rule (the
        backlog is still reported).
    type: int
    default: 1000
  dead_letter_key:
    description:
      - The Redis list, on the broker of O(broker_url), where the worker keeps the statements the
        LRS refused (the worker role's C(worker_dead_letter_key)).
    type: str
    default: xapi.dead-letters
  max_dead_letters:
    description:
      - The most refused statements that may wait in O(dead_letter_key). A negative value disables
        the rule (the count is still reported).
    type: int
    default: 0
  broker_memory_warning:
    description:
      - The broker's used memory, in percent of its C(maxmemory), from which the module warns (a
        warning in its output, RV(broker.memory.level=warning)). Only under C(noeviction).
      - A negative value disables the rule.
    type: float
    default: 80
  broker_memory_critical:
    description:
      - The broker's used memory, in percent of its C(maxmemory), from which the B(memory) check
        fails. Only under C(noeviction), where a full broker refuses every new statement.
      - A negative value disables the rule.
    type: float
    default: 95
  probe:
    description:
      - Send one probe statement end to end and wait until the LRS stores it.
      - Skipped in check mode, and when another link is broken.
    type: bool
    default: true
  probe_timeout:
    description: Seconds to wait for the LRS to store the probe statement.
    type: float
    default: 30.0
  timeout:
    description: Seconds allowed for each network operation (broker connection and commands, each HTTP request).
    type: float
    default: 5.0
  inspect_timeout:
    description: Seconds to wait for the workers' answers when asking them which queues they consume.
    type: float
    default: 1.0
  validate_certs:
    description: Verify the LRS's TLS certificate.
    type: bool
    default: true
  lrs_ca_file:
    description:
      - A CA file (PEM) to verify the LRS's TLS certificate against, for example a university's own CA.
      - When not set, the system's CA store (C(/etc/ssl/certs/ca-certificates.crt) on Debian) when it exists,
        else the list of the Python library requests (certifi), which lacks a site's own CA.
      - Ignored when O(validate_certs=false). A file that does not exist fails the module.
    type: path
notes:
  - C(changed) is V(true) only when the module enqueued a probe statement, since a probe adds one
    statement to the LRS. Without a probe (O(probe=false), check mode, or a broken link) it is V(false).
  - Ralph 5.1 (fs backend) honours the C(statementId) filter but answers a list, empty until the
    statement is stored; the module therefore looks for the probe's id in the answer, whatever its shape.
seealso:
  - name: Esup-Pod
    description: The video platform whose xAPI statements this checks.
    link: https://github.com/EsupPortail/Esup-Pod
"""

EXAMPLES = r"""
- name: Check the xAPI pipeline from the encoding host, with a probe statement
  esup_pod.xapi.xapi_check:
    broker_url: "redis://xapi-worker:{{ xapi_broker_worker_password | urlencode }}@{{ groups['pod_broker'][0] }}:6380/6"
    lrs_url: "{{ xapi_lrs_url }}"
    lrs_login: "{{ xapi_lrs_login }}"
    lrs_password: "{{ xapi_lrs_password }}"
  vars:
    ansible_python_interpreter: /home/pod/.virtualenvs/django_pod4/bin/python

- name: Read-only check with the values of Pod's own settings_local.py, two workers expected
  esup_pod.xapi.xapi_check:
    probe: false
    min_consumers: 2
    max_backlog: 500
  vars:
    ansible_python_interpreter: /home/pod/.virtualenvs/django_pod4/bin/python
  register: xapi_health
"""

RETURN = r"""
msg:
  description: The broken links, joined by C(; ), or a one-line success.
  returned: always
  type: str
  sample: "no worker consumes queue xapi"
broker:
  description: The broker link.
  returned: always
  type: dict
  contains:
    url:
      description: The broker URL, password masked.
      type: str
      sample: "redis://:********@frontal:6380/6"
    address:
      description: HOST:PORT of the broker.
      type: str
      sample: "frontal:6380"
    reachable:
      description: The broker answered (a refused password still counts as reachable).
      type: bool
    authenticated:
      description: The broker accepted the password and answered PING.
      type: bool
    memory:
      description: The broker's memory (null when it was not read).
      type: dict
      contains:
        used:
          description: Used memory (C(used_memory)), in bytes.
          type: int
        limit:
          description: C(maxmemory) in bytes; 0 is no limit.
          type: int
        policy:
          description: C(maxmemory-policy).
          type: str
          sample: noeviction
        percent:
          description: C(used) in percent of C(limit) (null without a limit).
          type: float
          sample: 12.5
        level:
          description: V(ok), V(warning) or V(critical), from O(broker_memory_warning) and O(broker_memory_critical).
          type: str
        msg:
          description: The memory as a sentence.
          type: str
consumers:
  description: Names of the worker nodes that consume O(queue).
  returned: always
  type: list
  elements: str
  sample: ["xapi@encoding"]
consumer_count:
  description: How many worker nodes consume O(queue) (null when the broker is not usable).
  returned: always
  type: int
  sample: 1
consumer_attempts:
  description: How many times the workers were asked.
  returned: always
  type: int
  sample: 1
backlog:
  description: Messages waiting in O(queue) (null when the broker is not usable).
  returned: always
  type: int
  sample: 0
dead_letters:
  description: Statements waiting in O(dead_letter_key) (null when the broker is not usable).
  returned: always
  type: int
  sample: 0
lrs:
  description: The LRS link.
  returned: always
  type: dict
  contains:
    url:
      description: The statements URL, password masked if it holds one.
      type: str
    reachable:
      description: The LRS answered over HTTP.
      type: bool
    status:
      description: HTTP status of C(GET) on the statements URL (null when unreachable).
      type: int
      sample: 200
    latency_ms:
      description: Time of that request, in milliseconds.
      type: float
      sample: 12.3
    credentials:
      description: V(true) accepted, V(false) refused (401 or 403), null when the answer said nothing.
      type: bool
probe:
  description: The end-to-end probe.
  returned: always
  type: dict
  contains:
    id:
      description: Id of the probe statement (null when none was sent).
      type: str
      sample: "0d6f3c2e-2f9a-4c55-9a0e-6f1d8d2c1a77"
    activity_id:
      description: The activity id of every probe statement.
      type: str
      sample: "urn:esup-pod:xapi:probe"
    enqueued:
      description: The probe statement was enqueued.
      type: bool
    stored:
      description: The LRS stored it within O(probe_timeout).
      type: bool
    latency_ms:
      description:
        - From enqueueing to the first lookup that found it in the LRS, in milliseconds.
        - The lookups are 50 ms apart at first, then twice as far apart each time, up to 1 s.
      type: float
      sample: 412.5
    polls:
      description: How many lookups were made.
      type: int
    proof:
      description:
        - V(read_back) when the probe was looked for in the LRS with O(lrs_read_login); V(lrs_answer) when the
          module relied on the LRS's answer to the worker's POST of the probe; null when no probe was sent.
      type: str
      sample: lrs_answer
checks:
  description: One entry a link, in pipeline order (broker, memory, consumers, backlog, dead_letters, lrs, credentials, probe).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The link.
      type: str
      sample: consumers
    status:
      description: V(ok), V(failed) or V(skipped).
      type: str
    ok:
      description: The link is not broken (V(true) for skipped links too).
      type: bool
    msg:
      description: What was found, or why it was skipped.
      type: str
    detail:
      description: The underlying error, secrets masked.
      type: str
settings_used:
  description: The options that were read from O(settings_path).
  returned: always
  type: list
  elements: str
  sample: ["broker_url"]
elapsed_ms:
  description: How long the whole check took, in milliseconds.
  returned: always
  type: float
lines:
  description: One line a link (its name, status and RV(checks[].msg)), then how long the whole check took.
  returned: always
  type: list
  elements: str
  sample: ["broker       ok      answered PING", "whole check took 1114.7 ms"]
"""

import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.esup_pod.xapi.plugins.module_utils._xapi_check import (
    DEAD_LETTER_KEY,
    QUEUE,
    summary_msg,
)
# The checks themselves, shared with the monitoring command of the worker role.
from ansible_collections.esup_pod.xapi.plugins.module_utils._xapi_check_io import (
    CheckInputError,
    Checker,
    missing_libraries,
    ms,
    prepare,
)

WHERE_TO_RUN = (
    "by esup_pod.xapi.xapi_check, which runs with the Celery worker's virtualenv python: set "
    "ansible_python_interpreter to WORKER_VENV/bin/python (for example /home/pod/.virtualenvs/django_pod4/bin/python)"
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            broker_url=dict(type="str", no_log=True),
            lrs_url=dict(type="str"),
            lrs_login=dict(type="str"),
            lrs_password=dict(type="str", no_log=True),
            lrs_read_login=dict(type="str"),
            lrs_read_password=dict(type="str", no_log=True),
            settings_path=dict(type="path", default="/usr/local/django_projects/podv4/pod/custom/settings_local.py"),
            queue=dict(type="str", default=QUEUE),
            min_consumers=dict(type="int", default=1),
            nodes=dict(type="list", elements="str", default=[]),
            consumer_retries=dict(type="int", default=5),
            consumer_delay=dict(type="float", default=2.0),
            max_backlog=dict(type="int", default=1000),
            dead_letter_key=dict(type="str", default=DEAD_LETTER_KEY, no_log=False),
            max_dead_letters=dict(type="int", default=0),
            broker_memory_warning=dict(type="float", default=80.0),
            broker_memory_critical=dict(type="float", default=95.0),
            probe=dict(type="bool", default=True),
            probe_timeout=dict(type="float", default=30.0),
            timeout=dict(type="float", default=5.0),
            inspect_timeout=dict(type="float", default=1.0),
            validate_certs=dict(type="bool", default=True),
            lrs_ca_file=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    for library, error in missing_libraries():
        module.fail_json(msg=missing_required_lib(library, reason=WHERE_TO_RUN), exception=error)
    module.params["lrs_read_login"] = module.params["lrs_read_login"] or None
    module.params["lrs_read_password"] = module.params["lrs_read_password"] or None

    started = time.monotonic()
    try:
        params, secrets, settings_used = prepare(module.params)
    except CheckInputError as exc:
        module.fail_json(msg=str(exc), settings_used=exc.settings_used)
    for secret in secrets:
        module.no_log_values.add(secret)

    checker = Checker(params, secrets, check_mode=module.check_mode)
    checks = checker.run()
    result = checker.result
    result.update(checks=checks, settings_used=settings_used, elapsed_ms=ms(time.monotonic() - started),
                  msg=summary_msg(checks))
    result["lines"] = ["%-12s %-7s %s" % (check["name"], check["status"], check["msg"]) for check in checks] + [
        "whole check took %s ms" % result["elapsed_ms"]]
    memory = result["broker"].get("memory") or {}
    if memory.get("level") == "warning":
        module.warn(memory["msg"])
    if any(check["status"] == "failed" for check in checks):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
