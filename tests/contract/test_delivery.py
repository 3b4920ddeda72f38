# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The worker's delivery (xapi_delivery.deliver, Pod's task annotated "@run") on real Celery nodes.

Pod's app and task are the fixture's (upstream's module), the Celery config module is the role's
template rendered with the role's defaults, the broker a redis-server of the test's own, and the LRS
a local HTTP/1.1 stand-in (conftest.KeepAliveLRS) that keeps connections alive and counts them, over
TLS with a throwaway CA where the test says so.
"""

from __future__ import annotations

import base64
import json
import signal
import ssl
import subprocess
import sys
import textwrap

import pytest
from conftest import QUEUE, Site, log_of, render_config, until

NODE = "xapi@encoding"
CREDENTIALS = "Basic " + base64.b64encode(b"pod:secret").decode()


def delivered(lrs, broker, ids, timeout=60):
    """Wait until the LRS stored every id and the node acknowledged every message."""
    until("the LRS has every statement", lambda: set(ids) <= set(lrs.stored), timeout)
    until("the node acknowledged all", lambda: broker.client.hlen("unacked:" + NODE) == 0
          and broker.client.llen(QUEUE) == 0, 30)


def stored_once(lrs, ids):
    """Each id stored exactly once, and nothing else."""
    return dict(lrs.stored) == {sid: 1 for sid in ids}


@pytest.fixture
def make_site(tmp_path, broker):
    sites = []

    def make(lrs_url, **config):
        made = Site(tmp_path / ("site-%d" % len(sites)), broker.url, lrs_url, **config)
        sites.append(made)
        return made

    yield make
    for made in sites:
        made.stop()


EAGER = textwrap.dedent("""
    import json, logging, sys
    import requests
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="LOG %(name)s %(message)s")
    import pod.xapi.xapi_tasks as pod_tasks
    from pod.xapi.xapi_tasks import send_xapi_statement_task
    before = dict(vars(pod_tasks))
    task = send_xapi_statement_task._get_current_object()
    for sid in ("e1", "e2"):
        task.apply(({"id": sid, "verb": {}},), task_id="t-" + sid).get()
    # Pod's own function, which the annotation wraps and never calls: requests.post, a connection each.
    for sid in ("p1", "p2", "p3"):
        type(task).run.__wrapped__({"id": sid, "verb": {}})
    after = vars(pod_tasks)
    print("RESULT " + json.dumps({
        "requests_is_the_real_module": pod_tasks.requests is requests and pod_tasks.requests.post is requests.api.post,
        "reassigned": sorted(name for name in set(before) | set(after) if before.get(name) is not after.get(name)),
        "run": type(task).run.__module__,
        "wrapped": type(task).run.__wrapped__.__module__,
        "autoretry_wraps_it": task._orig_run.__func__ is type(task).run,
        "verify": task.xapi_lrs_verify,
        "timeout": task.xapi_lrs_timeout,
    }))
""")


@pytest.mark.parametrize("log_statements", [False, True])
def test_pods_task_delivers_through_the_annotation_and_pods_module_is_never_changed(make_site, keepalive_lrs, log_statements):
    lrs = keepalive_lrs()
    site = make_site(lrs.url, worker_log_statements=log_statements)
    done = site.python(EAGER, node=NODE)
    assert done.returncode == 0, done.stdout
    result = json.loads(done.stdout.split("RESULT ", 1)[1].splitlines()[0])
    # Nothing in Pod's module is reassigned: its requests is the real module after the tasks ran.
    assert result["requests_is_the_real_module"] is True and result["reassigned"] == []
    # Celery's annotation wrapped Pod's function, and the autoretry wraps the annotated run.
    assert result["run"] == "xapi_delivery" and result["wrapped"] == "pod.xapi.xapi_tasks" and result["autoretry_wraps_it"]
    assert result["timeout"] == 20
    assert result["verify"] == (xapi_delivery_system_ca() or True)
    # Pod's contract: a JSON POST of the statement to XAPI_LRS_URL with Pod's basic-auth credentials.
    ours = lrs.requests[:2]
    assert [(method, path, auth, kind) for method, path, auth, kind, _body in ours] == [
        ("POST", "/xAPI/statements", CREDENTIALS, "application/json")] * 2
    assert [json.loads(body) for *_rest, body in ours] == [{"id": "e1", "verb": {}}, {"id": "e2", "verb": {}}]
    assert stored_once(lrs, ["e1", "e2", "p1", "p2", "p3"])
    # The two statements of the annotated task went over one kept-alive connection; Pod's requests.post
    # (the control) opened one for each of its three.
    assert lrs.connections == 1 + 3, lrs.connections
    # Pod's own line, on Pod's logger, unless worker_log_statements is off (the default).
    pod_line = 'LOG pod.xapi.xapi_tasks statement id: ["e1"]'
    assert (pod_line in done.stdout) is log_statements, done.stdout


def xapi_delivery_system_ca():
    import xapi_delivery

    return xapi_delivery.system_ca_file()


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_a_node_keeps_its_connections_to_the_lrs_alive(make_site, broker, keepalive_lrs, pool):
    lrs = keepalive_lrs()
    site = make_site(lrs.url)
    ids = ["k%d" % n for n in range(40)]
    site.enqueue(ids)
    worker = site.worker(NODE, pool=pool)
    delivered(lrs, broker, ids)
    assert stored_once(lrs, ids) and lrs.posts == len(ids)
    # One session a thread (or a pool process) of the node's two: far fewer connections than statements.
    assert lrs.connections <= 2 + 2, lrs.connections
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0


@pytest.mark.parametrize("mode", ["connection-close", "silent-close", "cut-in-flight"])
def test_a_connection_the_lrs_closes_is_reopened_and_no_statement_is_lost_or_doubled(make_site, broker, keepalive_lrs, mode):
    every = 3
    lrs = keepalive_lrs(close_after=every, silent=mode != "connection-close")
    ids = ["c%d" % n for n in range(30)]
    cut = ["c4", "c17"] if mode == "cut-in-flight" else []
    for sid in cut:
        lrs.answers[sid] = [0]  # read, not stored, the connection closed without an answer
    site = make_site(lrs.url)
    site.enqueue(ids)
    worker = site.worker(NODE)
    delivered(lrs, broker, ids)
    assert stored_once(lrs, ids), lrs.stored
    assert lrs.posts == len(ids) + len(cut)
    answered = len(ids)
    # The LRS closed a connection every few requests: the node opened new ones, and no more.
    assert answered // every <= lrs.connections <= answered // every + len(cut) + 2 + 2, lrs.connections
    log = log_of(worker)
    if cut:
        assert "Retry in" in log and "ConnectionError" in log, log
    elif mode == "connection-close":
        # Told that the connection closes, the session never sends on it again: not one retry.
        assert "Retry in" not in log, log


def test_the_lrss_answers_are_judged_redirects_never_followed_refusals_kept(make_site, broker, keepalive_lrs):
    lrs = keepalive_lrs()
    moved_to = lrs.url.replace("/xAPI/statements", "/xAPI/v2/statements")
    lrs.locations = {301: moved_to, 302: "https://u:hunter2@sso.example.org/login"}
    lrs.answers = {"dup": [409], "moved": [301, 302], "busy": [503], "creds": [401], "bad": [400, 400]}
    site = make_site(lrs.url)
    ids = ["ok", "dup", "moved", "busy", "creds", "bad"]
    site.enqueue(ids)
    worker = site.worker(NODE)
    delivered(lrs, broker, ["ok", "moved", "busy", "creds"])
    until("the refused statement in the dead-letter list", lambda: broker.client.llen("xapi.dead-letters") == 1)
    # 409: delivered, not stored again, not retried.
    assert "dup" not in lrs.stored and sum(1 for request in lrs.requests if b'"dup"' in request[4]) == 1
    assert stored_once(lrs, ["ok", "moved", "busy", "creds"])
    log = log_of(worker)
    assert "statement dup already stored or accepted by the LRS (HTTP 409): delivered" in log
    # Redirects: never followed (the stand-in got nothing but POSTs to XAPI_LRS_URL), logged with the target.
    assert {request[:2] for request in lrs.requests} == {("POST", "/xAPI/statements")}
    assert ("LRS redirected statement moved (HTTP 301) to %s: kept and retried, never sent there; set XAPI_LRS_URL "
            "to that URL (xapi_lrs_url)" % moved_to) in log
    assert "(HTTP 302) to https://u:********@sso.example.org/login:" in log and "hunter2" not in log
    assert "LRS refused the worker's credentials (HTTP 401) for statement creds" in log
    assert "Retry in" in log and "secret" not in log
    # Refused for good: kept with its record, not retried; replayed, refused again: attempts 2.
    record = json.loads(broker.client.lindex("xapi.dead-letters", 0))
    assert record["statement"] == {"id": "bad", "verb": {}} and record["status"] == 400
    assert record["attempts"] == 1 and record["node"] == NODE and record["task_id"]
    assert sum(1 for request in lrs.requests if b'"bad"' in request[4]) == 1
    replay = subprocess.run([sys.executable, "-m", "xapi_delivery", "replay", "--all"], env=site.env(), cwd=str(site.pod),
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60, check=False)
    assert replay.returncode == 0 and "replayed bad" in replay.stdout, replay.stdout
    until("the replayed statement refused again", lambda: broker.client.llen("xapi.dead-letters") == 1
          and json.loads(broker.client.lindex("xapi.dead-letters", 0))["attempts"] == 2)
    assert "bad" not in lrs.stored


def make_certificates(directory):
    """A throwaway CA and a certificate for 127.0.0.1 that it signed: (the CA's file, the server's TLS context)."""
    directory.mkdir()

    def openssl(*arguments):
        subprocess.run(["openssl", *arguments], cwd=str(directory), check=True, capture_output=True, timeout=60)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=xapi contract test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", *key, "-keyout", "lrs.key", "-out", "lrs.csr", "-subj", "/CN=127.0.0.1")
    (directory / "lrs.ext").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
    openssl("x509", "-req", "-in", "lrs.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", "lrs.ext", "-out", "lrs.pem")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(directory / "lrs.pem"), str(directory / "lrs.key"))
    return directory / "ca.pem", context


def test_the_lrss_certificate_is_verified_against_the_system_store_the_ca_file_or_not_at_all(
        tmp_path, make_site, broker, keepalive_lrs):
    ca_file, context = make_certificates(tmp_path / "tls")
    lrs = keepalive_lrs(tls=context)
    site = make_site(lrs.url)
    site.enqueue(["t1"])
    # The system's CAs (the default) do not know the throwaway CA: refused, kept and retried.
    worker = site.worker(NODE)
    until("a retry for the unknown CA", lambda: "Retry in" in log_of(worker) and "CERTIFICATE_VERIFY_FAILED" in log_of(worker))
    assert lrs.posts == 0 and lrs.connections == 0
    # A warm shutdown gives the statement waiting for its retry back to the broker (a killed node could give
    # it back twice: in flight and unacknowledged, which the transport's tests count).
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert site.restore_unacked(NODE).returncode == 0
    # worker_lrs_ca_file: the same statement is delivered.
    render_config(site.config, broker.url, worker_lrs_ca_file=str(ca_file))
    worker = site.worker(NODE)
    delivered(lrs, broker, ["t1"])
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    # worker_lrs_validate_certs: false, no CA file: not verified, delivered.
    render_config(site.config, broker.url, worker_lrs_validate_certs=False)
    site.enqueue(["t2"])
    worker = site.worker(NODE)
    delivered(lrs, broker, ["t1", "t2"])
    assert stored_once(lrs, ["t1", "t2"])


@pytest.mark.parametrize("lrs_url, config, message", [
    ("", {}, "PodSettingsError: pod.xapi.xapi_tasks has no XAPI_LRS_URL to deliver the statements to: set it in Pod's "
             "settings_local.py (xapi_lrs_url)"),
    (None, {"worker_lrs_ca_file": "/nonexistent/lrs-ca.pem"},
     "PodSettingsError: the LRS's CA file /nonexistent/lrs-ca.pem (worker_lrs_ca_file) does not exist"),
])
def test_a_node_without_an_lrs_to_deliver_to_does_not_start(make_site, broker, keepalive_lrs, lrs_url, config, message):
    lrs = keepalive_lrs()
    site = make_site(lrs.url if lrs_url is None else lrs_url, **config)
    site.enqueue(["n1"], frontal=True)
    worker = site.worker(NODE)
    assert worker.wait(60) != 0
    assert message in log_of(worker), log_of(worker)
    # Nothing taken: the statement waits in the queue.
    assert broker.client.llen(QUEUE) == 1 and lrs.posts == 0
