# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The RESP client and the move of an old broker's statements, against real redis-server processes of the
test's own, holding kombu's own layout: messages published by kombu, and unacknowledged ones left by a
kombu consumer that died (os._exit) while holding them."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import redis

from ansible_collections.esup_pod.xapi.plugins.module_utils import _resp
from ansible_collections.esup_pod.xapi.plugins.module_utils._xapi_broker_move import (
    count,
    move,
    priority_key,
    server_id,
    unacked_message,
)


def test_encode_is_an_array_of_bulk_strings():
    assert _resp.encode("SET", "k", b"\x00\xff", 12) == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\x00\xff\r\n$2\r\n12\r\n"
    assert _resp.encode("SET", "clé", "é") == b"*3\r\n$3\r\nSET\r\n$4\r\ncl\xc3\xa9\r\n$2\r\n\xc3\xa9\r\n"
    with pytest.raises(TypeError):
        _resp.encode("SET", "k", True)


def test_priority_key_follows_kombus_steps():
    assert priority_key("xapi", {"properties": {}}) == "xapi"
    assert priority_key("xapi", {"properties": {"priority": 2}}) == "xapi"
    assert priority_key("xapi", {"properties": {"priority": 5}}) == "xapi\x06\x163"
    assert priority_key("xapi", {"properties": {"priority": 42}}) == "xapi\x06\x169"


def test_only_unacked_entries_routed_to_the_queue_are_taken():
    message = {"body": "x", "headers": {}, "properties": {"delivery_info": {"exchange": "xapi"}}}
    key, data = unacked_message(json.dumps([message, "xapi", "xapi"]).encode(), "xapi")
    assert key == "xapi"
    restored = json.loads(data)
    assert restored["headers"]["redelivered"] is True and restored["properties"]["delivery_info"]["redelivered"]
    assert unacked_message(json.dumps([message, "celery", "celery"]).encode(), "xapi") is None
    assert unacked_message(b"not json", "xapi") is None


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def start_redis(tmp_path):
    """start_redis(*ARGS): a redis-server of the test's own on a free port, stopped at the end; its port."""
    processes = []

    def start(*arguments):
        port = free_port()
        directory = tmp_path / ("redis-%d" % port)
        directory.mkdir()
        process = subprocess.Popen([shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(port),
                                    "--bind", "127.0.0.1", "--dir", str(directory), "--save", "", "--appendonly", "no",
                                    *arguments], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        processes.append(process)
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, "redis-server exited with %s" % process.returncode
            try:
                with socket.create_connection(("127.0.0.1", port), 1):
                    return port
            except OSError:
                assert time.monotonic() < deadline, "redis-server on port %d: not within 20 s" % port
                time.sleep(0.05)

    yield start
    for process in processes:
        process.terminate()
        process.wait(10)


# Publishes as Pod's task does (queue xapi, its own direct exchange), then takes TAKE messages with a consumer
# that acknowledges late and dies holding them, as a Celery worker killed with acks_late leaves them.
KOMBU = textwrap.dedent(r"""
    import json, os, sys
    from kombu import Connection, Exchange, Queue
    url, count, take = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    queue = Queue("xapi", Exchange("xapi", type="direct"), routing_key="xapi")
    other = Queue("celery", Exchange("celery", type="direct"), routing_key="celery")
    with Connection(url) as connection:
        producer = connection.Producer()
        for number in range(count):
            producer.publish({"id": "statement-%d" % number}, exchange=queue.exchange, routing_key="xapi",
                             declare=[queue], serializer="json")
        producer.publish({"id": "not-xapi"}, exchange=other.exchange, routing_key="celery", declare=[other])
        bound = queue(connection.default_channel)
        held = [bound.get(no_ack=False) for _ in range(take)]
        other(connection.default_channel).get(no_ack=False)
        print(json.dumps([message.payload["id"] for message in held]), flush=True)
        os._exit(0)
""")


def fill(url, count_, take):
    """COUNT_ statements (and one of another queue) into the broker URL, TAKE of them left unacknowledged;
    returns the ids of those."""
    done = subprocess.run([sys.executable, "-c", KOMBU, url, str(count_), str(take)],
                          text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_resp_client_authenticates_selects_and_reports_errors(start_redis):
    port = start_redis("--requirepass", "s3cret")
    with _resp.Client("127.0.0.1", port, db=6, password="s3cret") as client:
        assert client.execute("RPUSH", "l", "a", b"b\r\n") == 2
        assert client.execute("LRANGE", "l", 0, -1) == [b"a", b"b\r\n"]
        assert client.execute("TYPE", "l") == "list" and client.execute("TYPE", "none") == "none"
        assert client.execute("GET", "none") is None
        assert client.pipeline([("LLEN", "l"), ("HSET", "h", "f", "v"), ("HGETALL", "h")]) == [2, 1, [b"f", b"v"]]
        with pytest.raises(_resp.ReplyError, match="WRONGTYPE"):
            client.execute("HGETALL", "l")
        assert server_id(client)
    assert redis.Redis(port=port, db=6, password="s3cret").llen("l") == 2
    with pytest.raises(_resp.ReplyError):
        _resp.Client("127.0.0.1", port, password="wrong")
    with pytest.raises(_resp.RedisError, match="cannot connect"):
        _resp.Client("127.0.0.1", free_port())


def test_every_statement_moves_and_nothing_else_changes(start_redis):
    old_port, new_port = start_redis(), start_redis("--requirepass", "n3w")
    held = fill("redis://127.0.0.1:%d/6" % old_port, 30, 4)
    old_redis, new_redis = redis.Redis(port=old_port, db=6), redis.Redis(port=new_port, db=6, password="n3w")
    old_redis.set("site:key", "kept")
    redis.Redis(port=old_port, db=5).rpush("xapi", "another db's list")
    assert old_redis.llen("xapi") == 26 and old_redis.hlen("unacked") == 5  # 4 of xapi, 1 of celery
    others = {key: old_redis.dump(key) for key in old_redis.keys() if key not in (b"xapi", b"unacked", b"unacked_index")}
    celery_unacked = {tag: value for tag, value in old_redis.hgetall("unacked").items() if b'"celery"]' in value}
    new_redis.lpush("xapi", json.dumps({"body": "", "already": "there"}))

    with _resp.Client("127.0.0.1", old_port, db=6) as old, _resp.Client("127.0.0.1", new_port, 6, password="n3w") as new:
        assert count(old, "xapi") == (26, 4)
        assert move(old, new, "xapi", batch=7) == {"queued": 26, "unacked": 4}
        assert count(old, "xapi") == (0, 0)
        assert move(old, new, "xapi") == {"queued": 0, "unacked": 0}

    moved = new_redis.lrange("xapi", 0, -1)
    assert len(moved) == 31
    ids = [json.loads(base64.b64decode(json.loads(item)["body"]))["id"] for item in moved[1:]]
    assert sorted(ids) == sorted("statement-%d" % n for n in range(30))
    # kombu's consumers pop the end: the unacknowledged ones first, then the oldest queued one.
    assert set(ids[-4:]) == set(held) and ids[-5] == "statement-4" and ids[0] == "statement-29"
    assert all(json.loads(item)["headers"]["redelivered"] for item in moved[-4:])
    assert old_redis.hgetall("unacked") == celery_unacked
    assert {m.decode() for m in old_redis.zrange("unacked_index", 0, -1)} == {t.decode() for t in celery_unacked}
    assert {key: old_redis.dump(key) for key in old_redis.keys() if key not in (b"unacked", b"unacked_index")} == others
    assert redis.Redis(port=old_port, db=5).lrange("xapi", 0, -1) == [b"another db's list"]
