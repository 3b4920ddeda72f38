# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module util is PRIVATE to the collection (hence the leading underscore): it is not a public
# API, it can change or go away in any release, even a bugfix one. Do not import it from another
# collection or from your own modules; use the esup_pod.xapi modules instead.
"""Pure logic of the module xapi_broker_move: the statements an old broker still holds, moved to the new one.

kombu's Redis transport (Pod's producer, Celery's worker) keeps a queue as a list named after it, plus one
sibling list per priority step; a message that a consumer took but did not acknowledge stays in the hash
``unacked`` (field: the delivery tag, value: JSON [message, exchange, routing key]) and the sorted set
``unacked_index``. kombu restores such an entry with RPUSH, at the end its consumers read first; so does
the move. Every message is pushed into the new broker before it leaves the old one: at least once.
"""

from __future__ import annotations

import json

from ._xapi_check import KOMBU_PRIORITY_SEP, KOMBU_PRIORITY_STEPS, backlog_keys

UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"
BATCH = 500


def priority_key(queue, message):
    """The list of QUEUE that kombu puts MESSAGE (a decoded kombu message) in, by its priority."""
    try:
        priority = max(min(int(message["properties"]["priority"]), max(KOMBU_PRIORITY_STEPS)), 0)
    except (KeyError, TypeError, ValueError):
        priority = 0
    step = max(s for s in KOMBU_PRIORITY_STEPS if s <= priority)
    return queue if not step else "%s%s%s" % (queue, KOMBU_PRIORITY_SEP, step)


def unacked_message(value, queue):
    """The message of one ``unacked`` entry (bytes of JSON [message, exchange, routing key]) routed to QUEUE,
    made ready to be queued again as kombu restores it (marked redelivered): (list key, bytes); None for an
    entry of another queue, or one that is not kombu's."""
    try:
        message, exchange, routing_key = json.loads(value)
    except (TypeError, ValueError):
        return None
    if routing_key != queue or exchange not in (queue, "") or not isinstance(message, dict):
        return None
    for part in (message.get("headers"), (message.get("properties") or {}).get("delivery_info")):
        if isinstance(part, dict):
            part["redelivered"] = True
    return priority_key(queue, message), json.dumps(message).encode("utf-8")


def count(old, queue):
    """(messages queued, xapi entries of unacked) in the old broker OLD (a _resp.Client)."""
    queued = 0
    for key in backlog_keys(queue):
        if old.execute("TYPE", key) == "list":
            queued += old.execute("LLEN", key)
    return queued, len(_unacked_of(old, queue))


def _unacked_of(old, queue):
    """[(tag, list key, message)] of the old broker's unacked entries routed to QUEUE."""
    if old.execute("TYPE", UNACKED) != "hash":
        return []
    flat = old.execute("HGETALL", UNACKED) or []
    found = []
    for tag, value in zip(flat[0::2], flat[1::2]):
        ready = unacked_message(value, queue)
        if ready is not None:
            found.append((tag, ready[0], ready[1]))
    return found


def move(old, new, queue, batch=BATCH):
    """Move every message of QUEUE from OLD to NEW (both _resp.Client): first the queued ones, oldest last
    (kombu's consumers pop the end of the list, so the old statements go before the new ones), then the
    unacknowledged ones. Each batch is pushed into NEW before it is removed from OLD. Returns
    {"queued": n, "unacked": n} moved."""
    moved = {"queued": 0, "unacked": 0}
    for key in backlog_keys(queue):
        if old.execute("TYPE", key) != "list":
            continue
        # As many as the list holds now: one that some producer still fills is emptied by the next run.
        left = old.execute("LLEN", key)
        while left > 0:
            items = old.execute("LRANGE", key, 0, min(batch, left) - 1)
            if not items:
                break
            left -= len(items)
            new.execute("RPUSH", key, *items)
            old.pipeline([("LREM", key, 1, item) for item in items])
            moved["queued"] += len(items)
    for tag, key, message in _unacked_of(old, queue):
        new.execute("RPUSH", key, message)
        old.pipeline([("HDEL", UNACKED, tag), ("ZREM", UNACKED_INDEX, tag)])
        moved["unacked"] += 1
    return moved


def server_id(client):
    """The server's run_id (INFO server): two URLs that reach the same server give the same."""
    info = client.execute("INFO", "server") or b""
    for line in info.decode("utf-8", "replace").splitlines():
        if line.startswith("run_id:"):
            return line.split(":", 1)[1].strip()
    return None
