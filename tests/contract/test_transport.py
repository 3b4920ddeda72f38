# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The worker's kombu transport (xapi_delivery.Transport) against a real Redis, on the worker's libraries."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from importlib import metadata

import celery
import kombu
import pytest
import redis
import xapi_delivery
from conftest import FILES, QUEUE, Site, drain, log_of, until
from kombu import Connection, Exchange, Producer, Queue

import requirements

NODE = "xapi@encoding"
OTHER = "xapi@encoding2"
TRANSPORT = "xapi_delivery:Transport"


def test_the_libraries_are_the_workers():
    """The pins of Pod's requirements-encode.txt under the role's worker_pip_constraints, not others."""
    wanted = [line for line in requirements.pins(kombu.__version__)[1:] if line.split("==")[0].lower() not in requirements.RUNNER]
    for line in wanted:
        name, version = line.split("==")
        assert metadata.version(name) == version, name
    assert celery.__version__ == "5.4.0" and redis.__version__ == "5.2.0"


def connection(broker, transport=TRANSPORT):
    return Connection(broker.url, transport=transport, transport_options=xapi_delivery.transport_options(300))


def publish(broker, bodies, queue=QUEUE):
    with Connection(broker.url) as conn:
        producer = Producer(conn.default_channel)
        target = Queue(queue, Exchange(queue), routing_key=queue)
        for body in bodies:
            producer.publish(body, exchange=target.exchange, routing_key=queue, declare=[target], serializer="json")


def take_one(conn, queue=QUEUE):
    got = []

    def on_message(body, message):
        got.append(body)
        message.ack()

    with conn.Consumer(Queue(queue, Exchange(queue), routing_key=queue), callbacks=[on_message]) as consumer:
        consumer.qos(prefetch_count=1)
        drain(conn, "a message", lambda: got)
    return got[0]


@pytest.mark.parametrize("transport, moves", [(TRANSPORT, True), ("redis", False)])
def test_the_node_takes_messages_with_blmove_and_never_brpop(broker, monkeypatch, transport, moves):
    monkeypatch.setenv("XAPI_WORKER_NODE", NODE)
    publish(broker, [{"id": "a"}])
    broker.client.config_resetstat()
    with connection(broker, transport) as conn:
        seen = []

        def on_message(body, message):
            # Recorded as unacknowledged before the callback runs; still in flight until it returns.
            seen.append((body, broker.client.hlen("unacked:" + NODE), broker.client.llen("inflight:%s:%s" % (NODE, QUEUE))))
            message.ack()

        with conn.Consumer(Queue(QUEUE, Exchange(QUEUE), routing_key=QUEUE), callbacks=[on_message]):
            drain(conn, "the message", lambda: seen)
    calls = broker.command_calls()
    assert seen[0][0] == {"id": "a"} and seen[0][1] == 1
    if moves:
        assert calls.get("blmove", 0) >= 1 and "brpop" not in calls, calls
        assert seen[0][2] == 1  # moved into the node's in-flight list, not popped
    else:  # the negative control: kombu's own transport, the same consumer
        assert calls.get("brpop", 0) >= 1 and "blmove" not in calls, calls
        assert seen[0][2] == 0
    assert broker.client.llen("inflight:%s:%s" % (NODE, QUEUE)) == 0
    assert broker.client.hlen("unacked:" + NODE) == 0 and broker.client.llen(QUEUE) == 0


def test_without_a_node_or_with_several_lists_kombus_brpop_is_kept(broker, monkeypatch):
    monkeypatch.delenv("XAPI_WORKER_NODE", raising=False)
    publish(broker, [{"id": "a"}])
    broker.client.config_resetstat()
    with connection(broker) as conn:
        assert isinstance(conn.transport, xapi_delivery.Transport)
        assert take_one(conn) == {"id": "a"}
    calls = broker.command_calls()
    assert calls.get("brpop", 0) >= 1 and "blmove" not in calls, calls
    monkeypatch.setenv("XAPI_WORKER_NODE", NODE)
    publish(broker, [{"id": "b"}])
    broker.client.config_resetstat()
    with Connection(broker.url, transport=TRANSPORT, transport_options={"visibility_timeout": 300}) as conn:
        assert take_one(conn) == {"id": "b"}  # kombu's own priority steps: four lists, nothing to move from
    calls = broker.command_calls()
    assert calls.get("brpop", 0) >= 1 and "blmove" not in calls, calls


CELERY_CONNECTIONS = textwrap.dedent("""
    import json
    from pod.xapi.xapi_tasks import xapi_app as app
    kinds = {
        "broker_transport": app.conf.broker_transport,
        "connection_for_write": type(app.connection_for_write().transport).__module__,
        "connection_for_read": type(app.connection_for_read().transport).__module__,
        "pool": type(app.pool.acquire(block=True).transport).__module__,
    }
    with app.producer_or_acquire() as producer:
        kinds["producer"] = type(producer.connection.transport).__module__
    print(json.dumps(kinds))
""")


def test_celery_passes_the_named_transport_to_every_connection_of_pods_app(site):
    done = site.python(CELERY_CONNECTIONS, node=NODE)
    assert done.returncode == 0, done.stdout
    kinds = json.loads(done.stdout.strip().splitlines()[-1])
    assert kinds == {"broker_transport": TRANSPORT, "connection_for_write": "xapi_delivery",
                     "connection_for_read": "xapi_delivery", "pool": "xapi_delivery", "producer": "xapi_delivery"}


def test_a_celery_node_of_pods_app_consumes_with_blmove_and_retries_through_the_broker(site, broker, lrs):
    lrs.statuses[:] = [503]  # the first answer asks for a retry, published again by the worker
    broker.client.config_resetstat()
    worker = site.worker(NODE)
    ids = ["s%d" % n for n in range(5)]
    site.enqueue(ids)
    until("the LRS has every statement", lambda: set(ids) <= set(lrs.received) and len(lrs.received) >= len(ids) + 1, 60)
    until("the worker acknowledged all", lambda: broker.client.hlen("unacked:" + NODE) == 0, 30)
    calls = broker.command_calls()
    assert calls.get("blmove", 0) >= len(ids) + 1 and "brpop" not in calls, calls
    assert "retry" in log_of(worker).lower()
    assert broker.client.llen(QUEUE) == 0 and broker.client.llen("inflight:%s:%s" % (NODE, QUEUE)) == 0
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0


CONSUMER = textwrap.dedent("""
    import sys, threading
    from kombu import Connection, Exchange, Queue
    import xapi_delivery

    def on_message(body, message):
        # Recorded as unacknowledged, not yet removed from the in-flight list: the test kills it now.
        print("took", body["id"], flush=True)
        threading.Event().wait()

    with Connection(sys.argv[1], transport="xapi_delivery:Transport",
                    transport_options=xapi_delivery.transport_options(300)) as conn:
        with conn.Consumer(Queue("xapi", Exchange("xapi"), routing_key="xapi"), callbacks=[on_message]) as consumer:
            consumer.qos(prefetch_count=1)
            while True:
                conn.drain_events()
""")


def queued_ids(client, queue=QUEUE):
    """The ids of the bodies waiting in QUEUE (kombu keeps them base64-encoded)."""
    ids = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        ids.append(json.loads(body)["id"])
    return ids


def test_a_consumer_killed_between_the_move_and_the_acknowledgement_loses_nothing(broker, monkeypatch):
    ids = ["k%d" % n for n in range(4)]
    publish(broker, [{"id": sid} for sid in ids])
    env = dict(os.environ, XAPI_WORKER_NODE=NODE, PYTHONPATH=str(FILES))
    consumer = subprocess.Popen([sys.executable, "-c", CONSUMER, broker.url], env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = consumer.stdout.readline()
        assert line.startswith("took ")
        taken = line.split()[1]
        inflight = "inflight:%s:%s" % (NODE, QUEUE)
        assert broker.client.llen(inflight) == 1 and broker.client.hlen("unacked:" + NODE) == 1
    finally:
        consumer.send_signal(signal.SIGKILL)
        consumer.wait(10)
    assert broker.client.llen(QUEUE) == len(ids) - 1
    monkeypatch.setenv("XAPI_WORKER_NODE", NODE)
    with connection(broker) as conn:
        restored = xapi_delivery.restore_unacked(conn.default_channel, NODE, 300)
    assert restored == {inflight: 1, "unacked:" + NODE: 1}
    found = sorted(queued_ids(broker.client))
    # Nothing lost; the one message taken comes back twice at most (in flight and unacknowledged).
    assert set(found) == set(ids) and found.count(taken) == 2 and len(found) == len(ids) + 1
    assert xapi_delivery.pending(broker.client) == {"queued": len(ids) + 1, "unacked": 0, "inflight": 0}


def test_a_killed_celery_node_gets_its_statements_back_at_its_start(site, broker, lrs):
    lrs.hold.set()  # the LRS does not answer: the node's statements stay unacknowledged
    ids = ["r%d" % n for n in range(6)]
    site.enqueue(ids)
    worker = site.worker(NODE)
    until("the node holds two statements", lambda: len(lrs.received) >= 2, 60)
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    held = broker.client.hlen("unacked:" + NODE) + broker.client.llen("inflight:%s:%s" % (NODE, QUEUE))
    assert held >= 2
    counts = xapi_delivery.pending(broker.client)
    assert counts["queued"] + counts["unacked"] + counts["inflight"] >= len(ids), counts  # nothing lost
    # Another node's recent unacknowledged message is its own: not restored by this node.
    broker.client.hset("unacked:" + OTHER, "tag-other", json.dumps([{"body": "x"}, QUEUE, QUEUE]))
    broker.client.zadd("unacked_index:" + OTHER, {"tag-other": time.time()})
    done = site.restore_unacked(NODE)
    assert done.returncode == 0, done.stdout
    assert "restored %d unacknowledged message(s) for %s" % (held, NODE) in done.stdout
    assert broker.client.hlen("unacked:" + NODE) == 0 and broker.client.hlen("unacked:" + OTHER) == 1
    lrs.hold.clear()
    lrs.release.set()
    received_before = len(lrs.received)
    site.worker(NODE)
    until("every statement delivered after the restart", lambda: set(ids) <= set(lrs.received[received_before:]), 60)
    again = lrs.received[received_before:]
    assert all(again.count(sid) <= 2 for sid in ids), again


FILL = textwrap.dedent("""
    from pod.xapi.xapi_tasks import send_xapi_statement_task as task
    pushed = 0
    try:
        while True:
            task.delay({"id": "f%d" % pushed, "verb": {}, "pad": "x" * 1000})
            pushed += 1
    except Exception as error:
        print(error, pushed)
""")


def fill(site, broker):
    """Pod's frontal enqueues until the broker refuses a statement; then the broker's limit is lowered below
    what it holds, as when it grows past it."""
    broker.client.config_set("maxmemory", str(broker.client.info("memory")["used_memory"] + 2 * 1024 * 1024))
    done = site.python(FILL)
    assert done.returncode == 0, done.stdout
    assert "command not allowed when used memory > 'maxmemory'" in done.stdout, done.stdout
    pushed = done.stdout.split()[-1]
    broker.client.config_set("maxmemory", str(broker.client.info("memory")["used_memory"] - 4096))
    return int(pushed)


def test_a_full_broker_skips_the_restore_round_refuses_the_start_then_drains(start_redis, tmp_path, lrs, monkeypatch, caplog):
    broker = start_redis("--maxmemory-policy", "noeviction")
    site = Site(tmp_path / "site", broker.url, lrs.url)
    try:
        pushed = fill(site, broker)
        assert pushed > 10
        done = site.restore_unacked(NODE)
        assert done.returncode == 1, done.stdout
        assert "the broker is at its memory limit" in done.stdout and NODE in done.stdout
        monkeypatch.setenv("XAPI_WORKER_NODE", NODE)
        with connection(broker) as conn, caplog.at_level(logging.WARNING, logger="xapi_delivery"):
            assert conn.default_channel.qos.restore_visible() is None
        assert "the broker is at its memory limit: old unacknowledged messages are restored later" in caplog.text
        with connection(broker, "redis") as conn:  # kombu's own QoS: the node would die here
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                conn.default_channel.qos.restore_visible()
        # The admin gives the broker room (docs/delivery.md: a few MB); the node starts and drains the queue.
        broker.client.config_set("maxmemory", str(broker.client.info("memory")["used_memory"] + 4 * 1024 * 1024))
        assert site.restore_unacked(NODE).returncode == 0
        site.worker(NODE)
        until("the node drained the queue", lambda: broker.client.llen(QUEUE) == 0, 60)
        until("the LRS has every message", lambda: len(set(lrs.received)) >= pushed, 60)
    finally:
        site.stop()


def test_a_broker_at_its_limit_that_evicts_keys_with_an_expiry_is_not_full(start_redis, tmp_path, lrs):
    """A site's cache under volatile-lru sits at its maxmemory for good: the node starts (its keys have no expiry)."""
    broker = start_redis("--maxmemory-policy", "volatile-lru")
    site = Site(tmp_path / "site", broker.url, lrs.url)
    try:
        broker.client.config_set("maxmemory", str(broker.client.info("memory")["used_memory"] - 4096))
        assert broker.client.info("memory")["used_memory"] >= broker.client.info("memory")["maxmemory"]
        done = site.restore_unacked(NODE)
        assert done.returncode == 0, done.stdout
        assert "the broker is at its memory limit" not in done.stdout
    finally:
        site.stop()


def test_an_unsupported_kombu_is_refused_at_connection(broker, monkeypatch):
    monkeypatch.setattr(kombu, "__version__", "5.6.0")
    with pytest.raises(xapi_delivery.UnsupportedBroker) as refused:
        with connection(broker) as conn:
            conn.connect()
    assert str(refused.value) == (
        "kombu 5.6.0 is not a release whose Redis transport xapi_delivery.Transport supports (5.3, 5.4, 5.5): "
        "pin kombu in worker_pip_constraints to one of them")


def test_a_redis_without_blmove_is_refused_at_connection(start_redis, monkeypatch):
    old = start_redis("--rename-command", "BLMOVE", "")
    monkeypatch.setenv("XAPI_WORKER_NODE", NODE)
    with pytest.raises(xapi_delivery.UnsupportedBroker) as refused:
        with connection(old) as conn:
            conn.connect()
    assert str(refused.value) == (
        "the broker (Redis %s) has no BLMOVE command, which xapi_delivery.Transport needs to take messages "
        "without losing them: use Redis 6.2 or later" % old.client.info("server")["redis_version"])


def test_a_celery_node_refuses_to_start_on_a_redis_without_blmove(start_redis, tmp_path, lrs):
    old = start_redis("--rename-command", "BLMOVE", "")
    site = Site(tmp_path / "site", old.url, lrs.url)
    try:
        done = site.restore_unacked(NODE)
        assert done.returncode == 1 and "%s does not start: the broker (Redis" % NODE in done.stdout, done.stdout
        worker = site.worker(NODE)
        assert worker.wait(60) != 0
        log = log_of(worker)
        assert "Unrecoverable error: UnsupportedBroker('the broker (Redis" in log, log
    finally:
        site.stop()
