# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The broker's reserve (roles/broker/files/xapi_broker_reserve.py) against a real redis-server.

A producer with the frontal's rights floods the queue faster than anything drains it. The reserve
service, run as the role runs it (its own process, its settings from the environment, the admin's
password from a file), must refuse the producer before the broker is full: the producer sees NOPERM,
never Redis's out-of-memory error, and a consumer with the worker's rights keeps moving and
acknowledging (MULTI) while the producer is refused. Once drained under the low mark, the producer
may enqueue again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import redis

from conftest import PROJECT, free_port, until

SCRIPT = PROJECT / "roles" / "broker" / "files" / "xapi_broker_reserve.py"
RESP = PROJECT / "plugins" / "module_utils" / "_resp.py"
PAYLOAD = b"x" * 2048


def users(server):
    admin = server.client
    admin.execute_command("ACL", "SETUSER", "xapi-admin", "on", ">admin-password", "~*", "&*", "+@all")
    admin.execute_command("ACL", "SETUSER", "xapi-frontal", "on", ">frontal-password", "resetchannels", "-@all",
                          "+ping", "+lpush", "%W~xapi*")
    admin.execute_command("ACL", "SETUSER", "xapi-worker", "on", ">worker-password", "resetchannels", "-@all",
                          "+ping", "+blmove", "+lrem", "+multi", "+exec", "+hset", "+hdel", "+llen", "~xapi*", "~unacked*")


def start_reserve(tmp_path, server, high=90, low=80, unix_socket=None):
    home = tmp_path / "reserve"
    home.mkdir()
    (home / "xapi_broker_reserve.py").write_bytes(SCRIPT.read_bytes())
    (home / "_resp.py").write_bytes(RESP.read_bytes())
    secret = home / "password"
    secret.write_text("admin-password\n")
    environ = dict(os.environ, XAPI_RESERVE_PORT=str(server.port), XAPI_RESERVE_USER="xapi-admin",
                   XAPI_RESERVE_PASSWORD_FILE=str(secret), XAPI_RESERVE_FRONTAL_USER="xapi-frontal",
                   XAPI_RESERVE_HIGH=str(high), XAPI_RESERVE_LOW=str(low), XAPI_RESERVE_INTERVAL="0.1")
    if unix_socket:
        # A broker serving TLS has no plaintext TCP port: the port given is one nothing listens on.
        environ.update(XAPI_RESERVE_SOCKET=str(unix_socket), XAPI_RESERVE_PORT=str(free_port()))
    log = open(home / "log", "w+")
    process = subprocess.Popen([sys.executable, str(home / "xapi_broker_reserve.py")], env=environ,
                               stdout=log, stderr=subprocess.STDOUT)
    return process, home / "log"


def memory_percent(server):
    info = server.client.info("memory")
    return 100.0 * info["used_memory"] / info["maxmemory"]


@pytest.mark.parametrize("through", ["tcp", "unix socket"])
def test_the_frontal_is_refused_before_the_broker_is_full_and_the_worker_drains(start_redis, tmp_path, through, request):
    unix_socket = None
    if through == "unix socket":  # a short path: a socket's path is at most 107 bytes, tmp_path's are longer
        directory = tempfile.mkdtemp(prefix="xapi-reserve-")
        request.addfinalizer(lambda: shutil.rmtree(directory, ignore_errors=True))
        unix_socket = Path(directory) / "broker.sock"
    server = start_redis("--maxmemory", "16mb", "--maxmemory-policy", "noeviction",
                         *(["--unixsocket", str(unix_socket), "--unixsocketperm", "700"] if unix_socket else []))
    users(server)
    reserve, log = start_reserve(tmp_path, server, unix_socket=unix_socket)
    frontal = redis.Redis(port=server.port, username="xapi-frontal", password="frontal-password")
    worker = redis.Redis(port=server.port, username="xapi-worker", password="worker-password")
    try:
        # A flood at about 1 MB/s: faster than nothing drains it, slower than the reserve's look.
        accepted, refusal, percent_at_refusal = 0, None, None
        deadline = time.monotonic() + 60
        while refusal is None and time.monotonic() < deadline:
            try:
                frontal.lpush("xapi", PAYLOAD)
                accepted += 1
            except redis.exceptions.ResponseError as exc:
                refusal, percent_at_refusal = exc, memory_percent(server)
            if accepted % 50 == 0:
                time.sleep(0.1)
        assert refusal is not None, "the producer was never refused (%d accepted)" % accepted
        assert isinstance(refusal, redis.exceptions.NoPermissionError), "refused by %r, not by the reserve" % refusal
        assert percent_at_refusal < 100, percent_at_refusal
        refused = [entry for entry in server.client.acl_log() if entry["username"] == "xapi-frontal"]
        assert [entry["object"] for entry in refused] == ["lpush"], refused

        # Refused, the producer: the consumer moves and acknowledges (a MULTI, refused by a full broker).
        moved = worker.blmove("xapi", "unacked:node", 1, "RIGHT", "LEFT")
        assert moved == PAYLOAD
        with worker.pipeline(transaction=True) as ack:
            ack.lrem("unacked:node", 1, moved)
            ack.hset("unacked_index", "tag", "1")
            ack.hdel("unacked_index", "tag")
            ack.execute()
        while worker.blmove("xapi", "unacked:node", 1, "RIGHT", "LEFT") is not None:
            worker.lrem("unacked:node", 1, PAYLOAD)
        assert worker.llen("xapi") == 0

        # Drained under the low mark: the producer is given its enqueue back.
        until("the producer's enqueues accepted again", lambda: server.client.execute_command(
            "ACL", "DRYRUN", "xapi-frontal", "lpush", "xapi", "x") == b"OK", 10)
        assert frontal.lpush("xapi", PAYLOAD) == 1
        until("the reserve's log of both turns", lambda: "accepted again" in log.read_text(), 10)
        text = log.read_text()
        assert "1 LPUSH refused meanwhile" in text, text
        assert "are refused until it is under 80%" in text, text
        # A warning first, as the broker crossed 80 %, before the first refusal.
        assert text.index("warning: broker memory at") < text.index("are refused until"), text
        assert "password" not in text
    finally:
        reserve.terminate()
        reserve.wait(10)
        frontal.close()
        worker.close()


def test_a_right_given_back_while_full_is_taken_again_and_a_stop_gives_it_back(start_redis, tmp_path):
    # The role's ACL LOAD (or a broker restart) restores the file's rights: the next look takes them again.
    server = start_redis("--maxmemory", "4mb", "--maxmemory-policy", "noeviction")
    users(server)
    while memory_percent(server) < 92:  # the test's default user, before the reserve looks
        server.client.lpush("filler", *([PAYLOAD] * 20))
    assert memory_percent(server) < 100
    reserve, log = start_reserve(tmp_path, server)
    dryrun = ("ACL", "DRYRUN", "xapi-frontal", "lpush", "xapi", "x")
    try:
        until("the frontal's enqueue taken away", lambda: server.client.execute_command(*dryrun) != b"OK", 10)
        server.client.execute_command("ACL", "SETUSER", "xapi-frontal", "+lpush")
        until("the frontal's enqueue taken away again", lambda: server.client.execute_command(*dryrun) != b"OK", 10)
        reserve.terminate()
        assert reserve.wait(10) == 0
        # Stopped alone, it gives the right back: without the service, the broker is as it was before.
        assert server.client.execute_command(*dryrun) == b"OK"
        assert "stopped: the frontal's enqueues are accepted again" in log.read_text()
    finally:
        reserve.terminate()
        reserve.wait(10)


def test_a_missing_user_is_never_created(start_redis, tmp_path):
    server = start_redis("--maxmemory", "16mb", "--maxmemory-policy", "noeviction")
    server.client.execute_command("ACL", "SETUSER", "xapi-admin", "on", ">admin-password", "~*", "&*", "+@all")
    reserve, log = start_reserve(tmp_path, server)
    try:
        until("the reserve's complaint", lambda: "not found" in log.read_text(), 10)
        assert b"xapi-frontal" not in server.client.execute_command("ACL", "USERS")
    finally:
        reserve.terminate()
        reserve.wait(10)
