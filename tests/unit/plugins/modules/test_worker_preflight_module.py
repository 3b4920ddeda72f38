# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""esup_pod.xapi.worker_preflight against a real HTTP server on the loopback (the LRS's answers), a closed port
(a broker that does not answer) and the host's own resolver: each message word for word, never a secret.
The Redis conversation is proven against real Redis servers in tests/contract/test_broker_preflight.py."""

from __future__ import annotations

import http.server
import json
import socket
import threading

import pytest

from ansible_collections.esup_pod.xapi.plugins.module_utils import _worker_preflight as wp
from ansible_collections.esup_pod.xapi.plugins.modules import worker_preflight
from ansible_collections.esup_pod.xapi.tests.unit.compat import run_module

SECRET = "s3cret-lrs-pw"


class LRS(http.server.BaseHTTPRequestHandler):
    answers = {}
    seen = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        LRS.seen.append((self.path, self.headers.get("Authorization"), self.headers.get("X-Experience-API-Version"), body))
        status, location = LRS.answers.get(self.path, (200, None))
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"[]")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def lrs():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), LRS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://localhost:%d" % server.server_address[1]
    server.shutdown()


def closed_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def run(capsys, **args):
    params = dict(host="encoding", lrs_login="pod-xapi", lrs_password=SECRET, timeout=2)
    result = run_module(worker_preflight.main, capsys, dict(params, **args))
    assert SECRET not in json.dumps(result)
    return result


def test_an_lrs_that_takes_the_empty_list_passes(capsys, lrs):
    LRS.seen.clear()
    result = run(capsys, lrs_url=lrs + "/xAPI/statements/")
    assert not result.get("failed") and result["lrs_status"] == 200 and result["changed"] is False
    path, auth, version, body = LRS.seen[-1]
    assert path == "/xAPI/statements/" and auth.startswith("Basic ") and version == "1.0.3" and json.loads(body) == []


@pytest.mark.parametrize("path, answer, message", [
    ("/login", (401, None), "LRS refused the credentials (worker_lrs_login 'pod-xapi', worker_lrs_password): HTTP 401"),
    ("/moved", (301, "/xAPI/statements/"),
     "worker_lrs_url (XAPI_LRS_URL) redirects to {lrs}/xAPI/statements/ (HTTP 301): set that URL in xapi_lrs_url"),
    ("/elsewhere", (302, "https://u:pw@lrs.example.org/x/"),
     "worker_lrs_url (XAPI_LRS_URL) redirects to https://u:********@lrs.example.org/x/ (HTTP 302): set that URL in "
     "xapi_lrs_url"),
    ("/nothing", (404, None),
     "LRS at {lrs}/nothing (worker_lrs_url) answered HTTP 404 to an empty list of statements: is it the LRS's "
     "statements URL?"),
    ("/broken", (503, None),
     "LRS at {lrs}/broken (worker_lrs_url) answered HTTP 503 to an empty list of statements: is it the LRS's "
     "statements URL?"),
])
def test_an_lrs_that_refuses_redirects_or_is_not_one_is_named(capsys, lrs, path, answer, message):
    LRS.answers[path] = answer
    result = run(capsys, lrs_url=lrs + path)
    assert result["failed"] and result["msg"] == message.format(lrs=lrs)


def test_an_empty_list_refused_as_bad_passes(capsys, lrs):
    LRS.answers["/strict"] = (400, None)
    assert not run(capsys, lrs_url=lrs + "/strict").get("failed")


def test_an_lrs_that_does_not_answer_is_named(capsys):
    url = "http://127.0.0.1:%d/xAPI/statements/" % closed_port()
    result = run(capsys, lrs_url=url)
    assert result["failed"] and result["msg"].startswith("LRS unreachable at %s (worker_lrs_url): Request failed: " % url)


def test_a_name_the_host_cannot_resolve_is_named_before_any_request(capsys):
    result = run(capsys, lrs_url="https://lrs-nowhere.invalid/xAPI/statements/")
    assert result["failed"] and result["msg"] == (
        "worker_lrs_url (XAPI_LRS_URL) names the host 'lrs-nowhere.invalid', which encoding cannot resolve (getent "
        "ahosts: exit 2): set xapi_lrs_url to the LRS's name as the encoding hosts resolve it, or fix their DNS")


def test_a_missing_ca_file_is_named_before_any_request(capsys, lrs, tmp_path):
    LRS.seen.clear()
    missing = str(tmp_path / "lrs-ca.pem")
    result = run(capsys, lrs_url=lrs + "/xAPI/statements/", lrs_ca_file=missing)
    assert result["failed"] and result["msg"] == (
        "worker_lrs_ca_file %s is not a file on encoding: copy the CA that signed the LRS's certificate there (PEM), "
        "or leave worker_lrs_ca_file empty for the system's CA store" % missing)
    assert LRS.seen == []
    # Not verified, not needed.
    assert not run(capsys, lrs_url=lrs + "/xAPI/statements/", lrs_ca_file=missing, validate_certs=False).get("failed")


def test_a_broker_that_does_not_answer_fails_or_is_pending_when_this_run_deploys_it(capsys):
    url = "redis://:%s@127.0.0.1:%d/6" % (SECRET, closed_port())
    result = run(capsys, broker_url=url, timeout=1)
    assert result["failed"] and result["msg"] == "broker unreachable at 127.0.0.1:%s (worker_broker_url)" % url.split(":")[-1][:-2]
    result = run(capsys, broker_url=url, timeout=1, broker_may_be_missing=True)
    assert not result.get("failed") and result["broker_pending"] is True


@pytest.mark.parametrize("look, message", [
    ({"version": "6.0.16", "policy": "noeviction"},
     "broker at frontal:6379 runs Redis 6.0.16, which has no BLMOVE: the worker needs Redis 6.2 or later (worker_broker_url)"),
    ({"version": "7.0.15", "policy": "allkeys-lru"},
     "broker at frontal:6379 evicts any key when full (maxmemory-policy allkeys-lru), queued statements included: set "
     "maxmemory-policy noeviction on it, or use the broker of esup_pod.xapi.broker (worker_broker_url)"),
    ({"version": "6.2.0", "policy": "noeviction"}, None),
    ({"version": "", "policy": ""}, None),
])
def test_the_broker_s_release_and_eviction_policy(look, message):
    assert wp.broker_problem("frontal:6379", look) == message


def test_a_broker_that_evicts_keys_that_expire_is_a_warning():
    assert wp.broker_warning("frontal:6380", {"policy": "volatile-lru"}) == (
        "the broker at frontal:6380 evicts keys with an expiry when full (maxmemory-policy volatile-lru): the worker's "
        "keys have none, but the site's other data there may go")
    assert wp.broker_warning("frontal:6380", {"policy": "noeviction"}) is None
