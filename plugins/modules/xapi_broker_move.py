#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: xapi_broker_move
short_description: Move the xAPI statements that an old Celery broker still holds into the new one
version_added: 0.2.0
description:
  - Upstream's hand-made remote xAPI setup queues Pod's statements in the site's Redis (database 6 in its guide),
    and its worker never consumed them. Once the frontal enqueues into a new broker, nothing reads the old one
    again. This module moves every statement of the queue O(queue) from the old broker into the new one.
  - It moves the messages waiting in the queue (kombu's Redis list named after the queue, and its priority
    lists), then the messages that a consumer took and never acknowledged (kombu's C(unacked) hash and
    C(unacked_index) sorted set) when they were routed to O(queue). Everything else in the old database, and
    every other database, is left alone.
  - Each message is pushed into the new broker before it is removed from the old one, so an interrupted move
    delivers a statement twice rather than never. Pod gives each statement an id, and an LRS stores an id once.
  - The old broker's URL is O(old_url), or else the last literal assignment of C(XAPI_CELERY_BROKER_URL) in the
    site's own lines of O(settings_file) (outside the blocks that M(esup_pod.xapi.pod_settings) manages). The
    file is parsed, never run. Nothing is moved when there is no old URL, when it is empty, or when it reaches
    the same Redis server and database as O(new_url).
  - The module speaks Redis's protocol itself, with Python's standard library alone, and imports nothing of the site.
  - Passwords in the URLs never appear in the results or the messages.
author:
  - Esup-Pod xAPI collection maintainers (@EsupPortail)
options:
  new_url:
    description:
      - The new broker, a C(redis://) or C(rediss://) URL with its user and password. Its user must be allowed
        C(INFO) (to tell whether the old broker is the new one) and C(RPUSH) on the queue's lists; with the broker
        of the role esup_pod.xapi.broker (Redis ACLs), its admin user, not the frontal's.
    type: str
    required: true
  old_url:
    description:
      - The old broker's URL. Unset, it is read from O(settings_file). An empty string says there is no old
        broker.
    type: str
  settings_file:
    description:
      - The site's settings file (Pod's C(pod/custom/settings_local.py)) whose own lines name the old broker.
        Needed when O(old_url) is unset. A missing file means there is no old broker.
    type: path
  queue:
    description: The Celery queue whose statements move.
    type: str
    default: xapi
  timeout:
    description: Seconds to wait for each broker's connection and answers.
    type: float
    default: 10
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: In check mode, the module counts the statements it would move and moves none.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Run it once the frontal enqueues into the new broker and has been restarted, so that nothing new lands in
    the old one; a statement enqueued there later is moved by the next run.
seealso:
  - module: esup_pod.xapi.pod_settings
"""

EXAMPLES = r"""
- name: Move the statements left in the site's Redis (read from the site's settings) into the new broker
  esup_pod.xapi.xapi_broker_move:
    settings_file: /usr/local/django_projects/podv4/pod/custom/settings_local.py
    new_url: "redis://xapi-admin:{{ vault_xapi_broker_password | urlencode }}@broker.example.org:6380/6"

- name: Count them only
  esup_pod.xapi.xapi_broker_move:
    old_url: redis://redis.example.org:6379/6
    new_url: "redis://xapi-admin:{{ vault_xapi_broker_password | urlencode }}@broker.example.org:6380/6"
  check_mode: true
"""

RETURN = r"""
old_broker:
  description: The old broker's URL, its password hidden; empty when there is none.
  returned: always
  type: str
  sample: redis://redis.example.org:6379/6
queued:
  description: The messages waiting in the old broker's queue (before the move).
  returned: always
  type: int
  sample: 1200
unacked:
  description: The old broker's unacknowledged messages routed to the queue (before the move).
  returned: always
  type: int
  sample: 4
moved:
  description: The messages pushed into the new broker and removed from the old one (0 in check mode).
  returned: always
  type: int
  sample: 1204
msg:
  description: What the module found and did.
  returned: always
  type: str
  sample: moved 1204 statements (1200 queued, 4 unacknowledged) from redis://redis.example.org:6379/6 to the new broker
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.esup_pod.xapi.plugins.module_utils._pod_settings import PodSettingsError, site_literal
from ansible_collections.esup_pod.xapi.plugins.module_utils._resp import Client, RedisError
from ansible_collections.esup_pod.xapi.plugins.module_utils._xapi_broker_move import count, move, server_id
from ansible_collections.esup_pod.xapi.plugins.module_utils._xapi_check import (
    BrokerURLError,
    parse_broker_url,
    redact_url,
)

SETTING = "XAPI_CELERY_BROKER_URL"


def old_url_of(module):
    """The old broker's URL: the option, else the site's own literal in the settings file; '' when none."""
    if module.params["old_url"] is not None:
        return module.params["old_url"]
    path = module.params["settings_file"]
    if not path:
        module.fail_json(msg="give old_url, or settings_file to read it from")
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        module.fail_json(msg="cannot read %s: %s" % (path, to_native(exc)))
    try:
        found, value = site_literal(text, SETTING, filename=path)
    except PodSettingsError as exc:
        module.fail_json(msg="%s; give the old broker's URL (old_url), or an empty old_url if there is none" % to_native(exc))
    if found and not isinstance(value, str):
        module.fail_json(msg="%s in %s is not a string" % (SETTING, path))
    return value if found else ""


def connect(module, url, which):
    try:
        parts = parse_broker_url(url)
    except BrokerURLError as exc:
        module.fail_json(msg="the %s broker's URL: %s" % (which, to_native(exc)))
    try:
        return Client(parts["host"], parts["port"], parts["db"], parts["username"], parts["password"],
                      tls=parts["scheme"] == "rediss", ca_file=parts["ca_file"], timeout=module.params["timeout"]), parts
    except RedisError as exc:
        raise RedisError("the %s broker %s: %s" % (which, redact_url(url), exc))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            new_url=dict(type="str", required=True, no_log=True),
            old_url=dict(type="str", no_log=True),
            settings_file=dict(type="path"),
            queue=dict(type="str", default="xapi"),
            timeout=dict(type="float", default=10),
        ),
        supports_check_mode=True,
    )
    queue = module.params["queue"]
    new_url = module.params["new_url"]
    old_url = old_url_of(module)
    result = dict(changed=False, old_broker=redact_url(old_url or ""), queued=0, unacked=0, moved=0)
    secrets = [p for p in (parse_broker_url(u)["password"] for u in (old_url, new_url) if u and _parses(u)) if p]

    def fail(msg):
        for secret in secrets:
            msg = msg.replace(secret, "********")
        module.fail_json(msg=msg, **result)

    if not old_url:
        module.exit_json(msg="no old broker: nothing to move", **result)
    if old_url == new_url:
        module.exit_json(msg="the old broker is the new one: nothing to move", **result)
    old = new = None
    try:
        old, old_parts = connect(module, old_url, "old")
        queued, unacked = count(old, queue)
        result.update(queued=queued, unacked=unacked)
        if not queued + unacked:
            module.exit_json(msg="the old broker %s holds no statement of the queue %s" % (result["old_broker"], queue),
                             **result)
        try:
            new, new_parts = connect(module, new_url, "new")
            old_id = server_id(old)
            same = old_id is not None and old_id == server_id(new) and old_parts["db"] == new_parts["db"]
        except RedisError:
            if not module.check_mode:
                raise
            new, same = None, False  # a broker this run deploys may not run yet
        if same:
            result.update(queued=0, unacked=0)
            module.exit_json(msg="the old broker is the new one: nothing to move", **result)
        found = "%d statements (%d queued, %d unacknowledged)" % (queued + unacked, queued, unacked)
        if module.check_mode:
            result.update(changed=True, msg="would move %s from %s to the new broker" % (found, result["old_broker"]))
            module.exit_json(**result)
        moved = move(old, new, queue)
        result.update(changed=True, moved=moved["queued"] + moved["unacked"])
        module.exit_json(msg="moved %d statements (%d queued, %d unacknowledged) from %s to the new broker" % (
            result["moved"], moved["queued"], moved["unacked"], result["old_broker"]), **result)
    except RedisError as exc:
        fail("cannot move the statements of the old broker %s: %s" % (result["old_broker"], to_native(exc)))
    finally:
        for client in (old, new):
            if client is not None:
                client.close()


def _parses(url):
    try:
        parse_broker_url(url)
        return True
    except BrokerURLError:
        return False


if __name__ == "__main__":
    main()
