# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The broker's ACL file (roles/broker/templates/users.acl.j2), rendered by Ansible and loaded by a real
redis-server of this machine, as the broker role's instance loads it: each user can do its job and no more,
the default user is off, and a transaction in the append-only file survives a restart. The lab's
molecule/default/tests/test_broker_acl.py proves the same against the deployed pipeline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[3]
USERS = {"admin": ("xapi-admin", "admin-password-0123456789"), "frontal": ("xapi-frontal", "frontal-password-0123456789"),
         "worker": ("xapi-worker", "worker-password-0123456789"),
         "reserve": ("redis-xapi-reserve", "reserve-password-0123456789")}
SERVER = shutil.which("redis-server") or "/usr/sbin/redis-server"

pytestmark = pytest.mark.skipif(not os.path.exists(SERVER), reason="needs redis-server")


def render(tmp_path):
    """The ACL file as the role writes it, for this machine's redis-server release."""
    version = subprocess.run([SERVER, "--version"], text=True, stdout=subprocess.PIPE, check=True).stdout
    dest = tmp_path / "users.acl"
    extra = {"_broker_version": {"stdout": version}, "broker_admin_user": USERS["admin"][0], "broker_password": USERS["admin"][1],
             "broker_frontal_user": USERS["frontal"][0], "broker_frontal_password": USERS["frontal"][1],
             "broker_worker_user": USERS["worker"][0], "broker_worker_password": USERS["worker"][1],
             "broker_reserve_enabled": True, "_broker_reserve_user": USERS["reserve"][0], "_broker_reserve_password": USERS["reserve"][1],
             "ansible_python_interpreter": sys.executable}
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    subprocess.run([str(Path(sys.executable).parent / "ansible"), "localhost", "-c", "local", "-i", "localhost,",
                    "-m", "ansible.builtin.template", "-a", "src=%s dest=%s" % (ROOT / "roles/broker/templates/users.acl.j2", dest),
                    "-e", json.dumps(extra)], cwd=str(ROOT), env=env, check=True, stdout=subprocess.DEVNULL)
    return dest


class Broker(object):
    def __init__(self, directory, acl_file):
        self.directory, self.acl_file, self.process = directory, acl_file, None
        self.socket = str(directory / "redis.sock")

    def start(self):
        self.process = subprocess.Popen([SERVER, "--port", "0", "--unixsocket", self.socket, "--dir", str(self.directory),
                                         "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                                         "--aclfile", str(self.acl_file)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            assert self.process.poll() is None, "redis-server exited with %s" % self.process.returncode
            try:
                self.client("admin").ping()
                return
            except (redis.ConnectionError, FileNotFoundError):
                assert time.monotonic() < deadline, "redis-server did not answer"
                time.sleep(0.05)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)

    def client(self, job=None):
        user, password = USERS[job] if job else (None, None)
        return redis.Redis(unix_socket_path=self.socket, username=user, password=password, db=6)


@pytest.fixture
def broker(tmp_path):
    server = Broker(tmp_path, render(tmp_path))
    server.start()
    yield server
    server.stop()


def refused(call):
    with pytest.raises(redis.exceptions.NoPermissionError):
        call()


def test_the_file_holds_hashes_never_a_password(tmp_path):
    text = render(tmp_path).read_text()
    assert all(password not in text for user, password in USERS.values())
    assert text.count(" #") == 4


def test_the_frontal_may_enqueue_but_never_read_flush_list_or_reconfigure(broker):
    frontal = broker.client("frontal")
    assert frontal.lpush("xapi", "message") == 1
    assert frontal.sadd("_kombu.binding.xapi", "binding") == 1 and frontal.llen("xapi") == 1
    for call in (lambda: frontal.lrange("xapi", 0, -1), lambda: frontal.lpop("xapi"), frontal.flushall, lambda: frontal.keys("*"),
                 lambda: frontal.config_get("maxmemory"), lambda: frontal.hgetall("unacked"), lambda: frontal.lpush("other", "m")):
        refused(call)


def test_the_worker_may_consume_but_never_flush_or_reconfigure(broker):
    broker.client("frontal").lpush("xapi", "message")
    worker = broker.client("worker")
    assert worker.blmove("xapi", "inflight:node:xapi", 1, "RIGHT", "LEFT") == b"message"
    assert worker.lrem("inflight:node:xapi", 1, "message") == 1
    for call in (worker.flushdb, worker.flushall, lambda: worker.keys("*"), lambda: worker.config_get("maxmemory"),
                 worker.acl_list):
        refused(call)


def test_the_default_user_is_off(broker):
    with pytest.raises(redis.exceptions.AuthenticationError):
        broker.client().ping()
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(unix_socket_path=broker.socket, username="default", password=USERS["admin"][1]).ping()


def test_a_transaction_in_the_append_only_file_survives_a_restart(broker):
    with broker.client("worker").pipeline(transaction=True) as pipe:
        pipe.hset("unacked", "tag", "message").zadd("unacked_index", {"tag": 1}).execute()
    broker.stop()
    broker.start()
    admin = broker.client("admin")
    assert admin.hget("unacked", "tag") == b"message" and admin.zscore("unacked_index", "tag") == 1


def test_the_reserve_may_read_memory_and_take_the_enqueue_away_but_never_touch_a_key(broker):
    # The reserve's own client (_resp.Client, no database): it never selects one.
    reserve = redis.Redis(unix_socket_path=broker.socket, username=USERS["reserve"][0], password=USERS["reserve"][1])
    assert "used_memory" in reserve.info("memory")
    assert reserve.execute_command("ACL", "DRYRUN", USERS["frontal"][0], "lpush", "xapi", "x") == b"OK"
    assert reserve.execute_command("ACL", "SETUSER", USERS["frontal"][0], "-lpush") == b"OK"
    refused(lambda: broker.client("frontal").lpush("xapi", "message"))
    for call in (lambda: reserve.lpush("xapi", "m"), lambda: reserve.llen("xapi"), reserve.flushall, lambda: reserve.keys("*"),
                 lambda: reserve.config_get("maxmemory")):
        refused(call)
