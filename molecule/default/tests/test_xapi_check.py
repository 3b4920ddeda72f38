# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fault injection for esup_pod.xapi.xapi_check, on a converged lab.

Each test runs the real `ansible-playbook playbooks/verify.yml` against the lab named by LAB_NAME
(from the repository's root: `LAB_NAME=... pytest molecule/default/tests/test_xapi_check.py`, or Molecule's
verify step), breaks one link of the chain, checks that the module names that link, and restores
the lab in a `finally`, waiting (bounded) until the pipeline is healthy again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from lablib import lab

# Platform-neutral, and they break and heal the lab: once, after the other tests (conftest.py).
pytestmark = pytest.mark.once

ROOT = Path(__file__).resolve().parents[3]
INVENTORY = ROOT / "inventory" / "lab"
PLAYBOOK = ROOT / "playbooks" / "verify.yml"
WORKER_SERVICE = "/etc/init.d/celeryd-xapi"
LRS_SERVICE = "ralph-lrs"
LRS_FRONT = "nginx"  # the lab's TLS front: stopped with Ralph, the LRS is unreachable (not a 502)
# The worker's own Pod on the encoding host (esup_pod.xapi.worker's defaults).
POD_DIR = os.environ.get("XAPI_CHECK_POD_DIR", "/opt/esup-pod-xapi/Esup-Pod")
POD_VENV = os.environ.get("XAPI_CHECK_POD_VENV", "/opt/esup-pod-xapi/venv")
HEAL_TIMEOUT = 120  # seconds allowed for the pipeline to be healthy again after a repair


def tool(name):
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name) or name


def environment():
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(ROOT / "tests" / "lab" / "containers.conf"))
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.builtin.json"
    env["ANSIBLE_LOAD_CALLBACK_PLUGINS"] = "1"
    env["ANSIBLE_NOCOLOR"] = "1"
    return env


def planted_secrets():
    """The lab's secrets: planted in the inventory so that a leak can be seen."""
    site = yaml.safe_load((INVENTORY / "group_vars" / "all" / "xapi.yml").read_text())
    return [site["xapi_lrs_password"], site["xapi_broker_password"], site["xapi_broker_frontal_password"],
            site["xapi_broker_worker_password"]]


class Run(object):
    """One run of playbooks/verify.yml: rc, the xapi_check result, the whole output."""

    def __init__(self, proc, elapsed):
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        self.elapsed = elapsed
        self.result = None
        try:
            report = json.loads(proc.stdout)
        except ValueError:
            report = {}
        for play in report.get("plays", []):
            for task in play.get("tasks", []):
                for result in task.get("hosts", {}).values():
                    if "checks" in result or (result.get("failed") and self.result is None):
                        self.result = result

    @property
    def msg(self):
        return (self.result or {}).get("msg", "")

    def status(self, link):
        return dict((c["name"], c["status"]) for c in self.result["checks"])[link]

    def __repr__(self):
        return "rc=%s msg=%r\n%s" % (self.rc, self.msg, self.output[-3000:])


def verify(*args, **extra_vars):
    command = [tool("ansible-playbook"), "-i", str(INVENTORY), str(PLAYBOOK)] + list(args)
    if extra_vars:
        command += ["-e", json.dumps(extra_vars)]
    start = time.monotonic()
    proc = subprocess.run(
        command, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=600, check=False
    )
    run = Run(proc, time.monotonic() - start)
    for secret in planted_secrets():
        assert secret not in run.output, "a planted secret leaked into the output of verify.yml"
    return run


def on(host, *argv, chdir=None):
    """Run a command as root on a lab host through Ansible (the inventory's own connection and sudo)."""
    args = {"argv": list(argv)}
    if chdir:
        args["chdir"] = chdir
    proc = subprocess.run(
        [tool("ansible"), host, "-i", str(INVENTORY), "--become", "-m", "ansible.builtin.command", "-a", json.dumps(args)],
        cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, "%s on %s failed:\n%s%s" % (argv, host, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


def wait_healthy(**extra_vars):
    """Poll the read-only check until every link is healthy; fail after HEAL_TIMEOUT seconds."""
    deadline = time.monotonic() + HEAL_TIMEOUT
    extra = dict(worker_check_probe=False, worker_check_consumer_retries=0)
    extra.update(extra_vars)
    while True:
        run = verify(**extra)
        if run.rc == 0:
            return run
        assert time.monotonic() < deadline, "the lab did not heal within %s s: %r" % (HEAL_TIMEOUT, run)
        time.sleep(2)


def test_healthy_pipeline_delivers_the_probe():
    run = verify()
    assert run.rc == 0, run
    result = run.result
    assert result["changed"] is True  # the probe added one statement to the LRS
    assert result["msg"].startswith("xAPI pipeline healthy"), run
    assert [c["name"] for c in result["checks"]] == [
        "broker", "memory", "consumers", "backlog", "dead_letters", "lrs", "credentials", "probe"]
    assert [c["status"] for c in result["checks"]] == ["ok"] * 8
    assert result["broker"]["reachable"] is True and result["broker"]["authenticated"] is True
    assert result["broker"]["url"].startswith("rediss://xapi-worker:********@")
    assert result["consumer_count"] >= 1 and all("@" in node for node in result["consumers"])
    assert result["backlog"] == 0 and result["dead_letters"] == 0
    assert result["lrs"]["status"] == 400 and result["lrs"]["credentials"] is True
    probe = result["probe"]
    assert probe["stored"] is True and probe["enqueued"] is True
    assert str(uuid.UUID(probe["id"])) == probe["id"]
    assert 0 < probe["latency_ms"] < 30000
    print(
        "\nprobe delivered in %s ms; the module took %s ms; ansible-playbook took %.1f s"
        % (probe["latency_ms"], result["elapsed_ms"], run.elapsed)
    )


def test_check_mode_sends_no_probe():
    run = verify("--check")
    assert run.rc == 0, run
    assert run.result["changed"] is False
    assert run.status("probe") == "skipped" and run.result["probe"]["id"] is None


def test_stopped_worker():
    on("encoding", WORKER_SERVICE, "stop")
    try:
        run = verify(worker_check_consumer_retries=1, worker_check_consumer_delay=1)
        assert run.rc != 0, run
        assert run.msg.startswith("no worker consumes queue xapi: "), run
        assert run.result["consumer_count"] == 0 and run.result["consumer_attempts"] == 2
        assert run.status("probe") == "skipped" and run.result["changed"] is False
        # min_consumers: 0 asks nothing of the cluster, but this host's own node must still consume.
        run = verify(worker_check_min_consumers=0, worker_check_probe=False, worker_check_consumer_retries=0)
        assert run.rc != 0 and run.msg.startswith("node(s) xapi@encoding do not consume queue xapi: "), run
        run = verify(worker_check_min_consumers=2, worker_check_probe=False, worker_check_consumer_retries=0)
        assert "no worker consumes queue xapi" in run.msg, run
    finally:
        on("encoding", WORKER_SERVICE, "start")
        wait_healthy()


def test_too_few_workers():
    run = verify(worker_check_min_consumers=2, worker_check_probe=False, worker_check_consumer_retries=0)
    assert run.rc != 0, run
    assert run.msg.startswith("only 1 worker(s) consume queue xapi, expected at least 2: "), run


def test_wrong_lrs_password():
    run = verify(xapi_lrs_password="not-the-LRS-password")
    assert run.rc != 0, run
    assert run.msg.startswith("LRS refused the credentials: "), run
    assert run.result["lrs"]["status"] in (401, 403) and run.result["lrs"]["credentials"] is False
    assert run.status("broker") == "ok" and run.status("consumers") == "ok"
    assert run.status("probe") == "skipped" and run.result["changed"] is False


def test_stopped_lrs():
    on("lrs", "systemctl", "stop", LRS_FRONT, LRS_SERVICE)
    try:
        run = verify()
        assert run.rc != 0, run
        assert run.msg.startswith("LRS unreachable at %s: " % lab.var("lrs", "xapi_lrs_url")), run
        assert run.result["lrs"]["reachable"] is False
        assert run.status("credentials") == "skipped" and run.status("probe") == "skipped"
        assert run.status("broker") == "ok" and run.status("consumers") == "ok"
    finally:
        on("lrs", "systemctl", "start", LRS_SERVICE, LRS_FRONT)
        wait_healthy()


def test_wrong_broker_password():
    run = verify(xapi_broker_worker_password="not-the-broker-password")
    assert run.rc != 0, run
    assert run.msg.startswith("broker refused the password: "), run
    assert run.result["broker"] == {
        "url": "rediss://xapi-worker:********@frontal:6380/6?ssl_cert_reqs=required&ssl_ca_certs="
               + quote(lab.var("encoding", "xapi_broker_ca_file"), safe=""), "address": "frontal:6380",
        "reachable": True, "authenticated": False, "memory": None,
    }
    assert run.status("consumers") == "skipped" and run.status("backlog") == "skipped"
    assert run.status("lrs") == "ok"


def test_unreachable_broker():
    run = verify(worker_broker_url="redis://:not-the-password@frontal:6390/6", worker_check_probe=False)
    assert run.rc != 0, run
    assert run.msg.startswith("broker unreachable at frontal:6390: "), run
    assert run.result["broker"]["reachable"] is False


ENQUEUE = """
import sys, uuid
from pod.xapi.xapi_tasks import send_xapi_statement_task
for _ in range(int(sys.argv[1])):
    send_xapi_statement_task.delay({
        "id": str(uuid.uuid4()),
        "actor": {"name": "Esup-Pod xAPI probe", "mbox": "mailto:xapi-probe@example.org"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/interacted"},
        "object": {"objectType": "Activity", "id": "urn:esup-pod:xapi:probe"},
    })
"""


def test_backlog_above_the_limit():
    count = 6
    on("encoding", WORKER_SERVICE, "stop")
    try:
        # Enqueued through Pod's own app and task, as the frontal does.
        on("encoding", POD_VENV + "/bin/python", "-c", ENQUEUE, str(count), chdir=POD_DIR)
        run = verify(worker_check_max_backlog=count - 2, worker_check_min_consumers=0, worker_check_probe=False,
                     worker_check_consumer_retries=0)
        assert run.rc != 0, run
        # The stopped node is named too: the message names every broken link, in pipeline order.
        found = re.fullmatch(r"node\(s\) xapi@encoding do not consume queue xapi: [^;]*; backlog (\d+) exceeds %d: [^;]*"
                             % (count - 2), run.msg)
        assert found, run
        assert int(found.group(1)) == run.result["backlog"] >= count
    finally:
        on("encoding", WORKER_SERVICE, "start")
    # The worker drains the backlog once it is back.
    drained = wait_healthy(worker_check_max_backlog=0)
    assert drained.result["backlog"] == 0
