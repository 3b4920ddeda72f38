# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the contract tests run against: a Redis server of their own, Pod's app, an LRS, a worker node.

Each test starts its own redis-server (Debian's package) on a free port in a temporary directory,
without persistence, and stops it; the machine's Redis service is never used. The worker's node runs
as the role runs it: Pod's app (the fixture, with a settings_local.py written in a copy of it), the
role's Celery config module rendered from its template with the role's defaults, and xapi_delivery.py
next to it, on the libraries of the virtualenv that scripts/setup.sh builds from the role's pins.
"""

from __future__ import annotations

import collections
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined

PROJECT = Path(__file__).resolve().parents[2]
FILES = PROJECT / "roles" / "worker" / "files"
TEMPLATES = PROJECT / "roles" / "worker" / "templates"
DEFAULTS = PROJECT / "roles" / "worker" / "defaults" / "main.yml"
POD_FIXTURE = PROJECT / "tests" / "fixtures" / "pod"
QUEUE = "xapi"

sys.path.insert(0, str(FILES))


def until(what, condition, timeout=30.0, interval=0.05):
    """Poll CONDITION until it returns something true, at most TIMEOUT seconds; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def drain(connection, what, condition, timeout=20.0):
    """Let kombu's CONNECTION deliver until CONDITION holds, at most TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        try:
            connection.drain_events(timeout=1)
        except socket.timeout:
            pass


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """One redis-server process of the test's own."""

    def __init__(self, directory, *arguments):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = "redis://127.0.0.1:%d/0" % self.port
        self.log = self.directory / "redis.log"
        command = [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(self.port),
                   "--bind", "127.0.0.1", "--dir", str(self.directory), "--save", "", "--appendonly", "no",
                   "--logfile", str(self.log), *arguments]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.client = redis.Redis(port=self.port)
        until("redis-server on port %d" % self.port, self._answers, 20)

    def _answers(self):
        if self.process.poll() is not None:
            raise AssertionError("redis-server exited with %s: %s" % (self.process.returncode, self.log.read_text()))
        try:
            return self.client.ping()
        except redis.ConnectionError:
            return False

    def command_calls(self):
        """{command: calls} since the server started (INFO commandstats)."""
        stats = self.client.info("commandstats")
        return {name.split("_", 1)[1]: int(value["calls"]) for name, value in stats.items()}

    def stop(self):
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def start_redis(tmp_path):
    """start_redis(*ARGS): a redis-server of the test's own, stopped at the end of the test."""
    servers = []

    def start(*arguments):
        server = RedisServer(tmp_path / ("redis-%d" % len(servers)), *arguments)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def broker(start_redis):
    return start_redis()


class LRS:
    """An LRS that stores each statement's id, answers 200, or holds its answer while HOLD is set."""

    def __init__(self):
        self.received = []
        self.hold = threading.Event()
        self.release = threading.Event()
        self.statuses = []  # answers to give first, one a request; then 200
        lrs = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                statement = json.loads(body or b"{}")
                lrs.received.append(statement.get("id"))
                if lrs.hold.is_set():
                    lrs.release.wait(120)
                status = lrs.statuses.pop(0) if lrs.statuses else 200
                answer = json.dumps([statement.get("id")]).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d/xAPI/statements" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def lrs():
    server = LRS()
    yield server
    server.close()


class KeepAliveLRS:
    """An LRS over HTTP/1.1 that keeps its connections alive, as a real one does, and counts.

    It counts the TCP connections it accepted (over TLS: those whose handshake passed) and the POSTs,
    stores each statement's id (STORED: id -> times stored), and answers 200, or the statuses that
    ANSWERS lists for an id first, one a POST (0: close the connection without an answer, the
    statement not stored). With CLOSE_AFTER, it closes each connection after that many requests,
    saying so (Connection: close) or, SILENT, not. TLS: an ssl.SSLContext for the server's side.
    """

    def __init__(self, close_after=0, silent=False, tls=None):
        self.lock = threading.Lock()
        self.connections = 0
        self.posts = 0
        self.stored = collections.Counter()
        self.answers = {}
        self.requests = []  # (method, path, Authorization, Content-Type, body) of each request answered
        self.locations = {}  # status -> the Location of a 3xx
        self.close_after, self.silent = close_after, silent
        lrs = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                self.served = 0
                with lrs.lock:
                    lrs.connections += 1

            def do_GET(self):
                self.answer(200, b"[]")

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                statement = json.loads(body or b"{}")
                sid = statement.get("id") if isinstance(statement, dict) else None
                with lrs.lock:
                    lrs.posts += 1
                    script = lrs.answers.get(sid) or []
                    status = script.pop(0) if script else 200
                    if status == 200:
                        lrs.stored[sid] += 1
                if status == 0:
                    self.close_connection = True
                    return
                location = lrs.locations.get(status) if 300 <= status < 400 else None
                self.answer(status, json.dumps([sid]).encode(), location, body)

            def answer(self, status, payload, location=None, body=b""):
                with lrs.lock:
                    lrs.requests.append((self.command, self.path, self.headers.get("Authorization"),
                                         self.headers.get("Content-Type"), body))
                self.served += 1
                close = bool(lrs.close_after) and self.served >= lrs.close_after
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if location:
                    self.send_header("Location", location)
                if close and not lrs.silent:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(payload)
                if close:
                    self.close_connection = True

            def log_message(self, *args):
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.url = "%s://127.0.0.1:%d/xAPI/statements" % ("https" if tls else "http", self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def keepalive_lrs():
    """keepalive_lrs(**options): a KeepAliveLRS, stopped at the end of the test."""
    servers = []

    def start(**options):
        server = KeepAliveLRS(**options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def _ansible_bool(value):
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on", "y")


def render_config(destination, broker_url, **overrides):
    """The role's xapi_celeryconfig.py, rendered with the role's defaults, in DESTINATION."""
    defaults = yaml.safe_load(DEFAULTS.read_text())
    variables = {name: value for name, value in defaults.items() if not (isinstance(value, str) and "{{" in value)}
    # The defaults mapped from site-wide variables, as an inventory without them gets them.
    variables.update(ansible_managed="Ansible managed (contract test)", worker_broker_url=broker_url, worker_lrs_ca_file="")
    variables.update(overrides)
    # As Ansible's template module renders it (trim_blocks).
    environment = Environment(loader=FileSystemLoader(str(TEMPLATES)), undefined=StrictUndefined, keep_trailing_newline=True,
                              trim_blocks=True)
    environment.filters.update(bool=_ansible_bool, to_json=json.dumps)
    environment.tests["match"] = lambda value, pattern: re.match(pattern, value) is not None
    text = environment.get_template("xapi_celeryconfig.py.j2").render(**variables)
    (Path(destination) / "xapi_celeryconfig.py").write_text(text)
    return text


class Site:
    """A worker host's files: Pod's checkout with its settings_local.py, the role's config directory."""

    def __init__(self, root, broker_url, lrs_url, **config):
        root = Path(root)
        self.pod = root / "Esup-Pod"
        shutil.copytree(POD_FIXTURE, self.pod, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (self.pod / "pod" / "custom" / "settings_local.py").write_text(
            "XAPI_LRS_URL = %r\nXAPI_LRS_LOGIN = 'pod'\nXAPI_LRS_PWD = 'secret'\nXAPI_CELERY_BROKER_URL = %r\n"
            % (lrs_url, broker_url))
        self.config = root / "etc"
        self.config.mkdir()
        shutil.copy(FILES / "xapi_delivery.py", self.config / "xapi_delivery.py")
        self.config_text = render_config(self.config, broker_url, **config)
        self.logs = root / "logs"
        self.logs.mkdir()
        self.processes = []

    def env(self, node=None):
        """The environment of the node's unit (/etc/default/<service> and XAPI_WORKER_NODE)."""
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "XAPI_WORKER_NODE")}
        env.update(CELERY_CONFIG_MODULE="xapi_celeryconfig", PYTHONPATH="%s:%s" % (self.config, self.pod),
                   PYTHONDONTWRITEBYTECODE="1")
        if node:
            env["XAPI_WORKER_NODE"] = node
        return env

    def python(self, code, node=None, timeout=60, frontal=False):
        """Run CODE with Pod's app importable, as the node's unit would (FRONTAL: without the worker's Celery
        config module, as Pod's frontal); the finished process."""
        env = self.env(node)
        if frontal:
            del env["CELERY_CONFIG_MODULE"]
        return subprocess.run([sys.executable, "-c", code], env=env, cwd=str(self.pod), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, check=False)

    def restore_unacked(self, node):
        """The node's ExecStartPre: python -m xapi_delivery restore-unacked NODE."""
        return subprocess.run([sys.executable, "-m", "xapi_delivery", "restore-unacked", node], env=self.env(node),
                              cwd=str(self.pod), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=60, check=False)

    def enqueue(self, ids, frontal=False):
        """Pod's frontal: one statement per id through Pod's task (its app, its routes)."""
        done = self.python("import sys\nfrom pod.xapi.xapi_tasks import send_xapi_statement_task as task\n"
                           "for sid in sys.argv[1:] or %r:\n    task.delay({'id': sid, 'verb': {}})\n" % (list(ids),),
                           frontal=frontal)
        assert done.returncode == 0, done.stdout

    def worker(self, node, *options, pool="threads"):
        """A node as its unit starts it (threads pool, the role's defaults), in a session of its own."""
        log = self.logs / ("%s-%d.log" % (node, len(self.processes)))
        command = [sys.executable, "-m", "celery", "--app=pod.xapi.xapi_tasks", "--workdir=%s" % self.pod, "worker",
                   "--hostname=%s" % node, "-Q", QUEUE, "--pool=%s" % pool, "--concurrency=2", "--prefetch-multiplier=1",
                   "--loglevel=INFO", *options]
        with open(log, "w") as out:
            process = subprocess.Popen(command, env=self.env(node), cwd=str(self.pod), stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        process.log = log
        self.processes.append(process)
        return process

    def stop(self):
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


@pytest.fixture
def site(tmp_path, broker, lrs):
    made = Site(tmp_path / "site", broker.url, lrs.url)
    yield made
    made.stop()


def log_of(process):
    return Path(process.log).read_text(errors="replace")
