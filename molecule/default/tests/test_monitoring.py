# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The worker's monitoring command, /usr/local/bin/celeryd-xapi-check, on the converged lab.

Run on the encoding host as a monitoring agent would: OK on the healthy lab, CRITICAL with the
worker stopped, WARNING with a backlog above the role's warning threshold; as the worker's user
only; one line, no secret. Each test that breaks something restores the lab in a `finally` and
waits (bounded) until the command says OK again.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from lablib import lab, pod

# Platform-neutral, and they break and heal the lab: once, after the other tests (conftest.py).
pytestmark = pytest.mark.once

CHECK = "/usr/local/bin/celeryd-xapi-check"
WORKER_SERVICE = "/etc/init.d/celeryd-xapi"
WORKER_SETTINGS = "/opt/esup-pod-xapi/Esup-Pod/pod/custom/settings_local.py"
CHECK_CONFIG = "/etc/celeryd-xapi/check/check.json"  # root's: which settings the command reads
HEAL_TIMEOUT = 120  # seconds allowed for the command to say OK again after a repair
# The role's defaults: worker_check_min_consumers, worker_monitoring_{warning,critical}_{backlog,dead_letters},
# worker_monitoring_{warning,critical}_lrs_latency, worker_monitoring_{warning,critical}_broker_memory.
OK_LINE = re.compile(
    r"XAPI OK - 1 consumer\(s\), backlog 0, LRS answered in \d+ ms, 0 dead letter\(s\), broker memory [0-9.]+% \| "
    r"consumers=1;;1:;0 backlog=0;100;1000;0 lrs_latency=(?P<latency>[0-9.]+)s;1;5;0 dead_letters=0;0;;0 "
    r"broker_memory=[0-9.]+%;80;95;0;100")
SITE = yaml.safe_load((Path(lab.REPO_ROOT) / "inventory" / "lab" / "group_vars" / "all" / "xapi.yml").read_text())
PLANTED = [SITE["xapi_lrs_password"], SITE["xapi_broker_password"], SITE["xapi_broker_frontal_password"],
           SITE["xapi_broker_worker_password"]]


def encoding():
    return lab.host("encoding")


def check(*options, user=None):
    """(exit status, output lines) of the command on the encoding host, run as root, or as USER
    (through runuser, the way an agent's user runs it). It prints nothing on stderr, and no secret."""
    command = " ".join(shlex.quote(word) for word in (CHECK,) + options)
    if user:
        command = "runuser -u %s -- %s" % (user, command)
    out = encoding().run(command)
    for secret in PLANTED:
        assert secret not in out.stdout + out.stderr, "a planted secret leaked: %s" % command
    assert out.stderr == "", out.stderr
    return out.rc, out.stdout.splitlines()


def one_line(*options, user=None):
    rc, lines = check(*options, user=user)
    assert len(lines) == 1, lines
    return rc, lines[0]


def wait_ok():
    """Until the command says OK (the worker back, the backlog drained); its line."""
    def ok():
        rc, line = one_line()
        return line if rc == 0 else None
    return lab.until("celeryd-xapi-check says OK again", ok, HEAL_TIMEOUT)


def test_ok_on_the_healthy_lab():
    rc, line = one_line()
    assert rc == 0, line
    found = OK_LINE.fullmatch(line)
    assert found, line
    assert 0 < float(found.group("latency")) < 1
    print("\n" + line)


def test_long_output_names_each_link():
    rc, lines = check("-v")
    assert rc == 0, lines
    assert [line.split()[:2] for line in lines[1:]] == [
        ["broker", "ok"], ["memory", "ok"], ["consumers", "ok"], ["backlog", "ok"], ["dead_letters", "ok"], ["lrs", "ok"],
        ["credentials", "ok"], ["probe", "skipped"]]
    assert lines[3].endswith("1 worker(s) consume queue xapi: xapi@encoding")


def test_runs_as_the_workers_user_only():
    # NRPE's way: its user may run the command as pod-xapi through sudo, and nothing else.
    sudoers = "/etc/sudoers.d/xapi-check-test"
    host = encoding()
    assert host.run("printf '%%s\\n' %s > %s && chmod 0440 %s && visudo -cf %s" % (
        shlex.quote("nobody ALL=(pod-xapi) NOPASSWD: " + CHECK + ' ""'), sudoers, sudoers, sudoers)).rc == 0
    try:
        rc, line = one_line(user="nobody")
        assert rc == 3 and line == ("XAPI UNKNOWN - celeryd-xapi-check runs as pod-xapi: "
                                    "sudo -u pod-xapi celeryd-xapi-check, or as root"), line
        rc, line = check_via_sudo()  # the same user, through sudo as NRPE runs it
        assert rc == 0 and OK_LINE.fullmatch(line), line
    finally:
        host.run("rm -f %s" % sudoers)
    assert not host.file(sudoers).exists
    # Run as root, it drops to pod-xapi: a file only root reads is out of its reach.
    root_only = "/root/xapi-check-root-only.py"
    assert host.run("install -m 0600 -o root -g root %s %s" % (WORKER_SETTINGS, root_only)).rc == 0
    try:
        with reading(root_only):
            rc, line = one_line()
        assert rc == 3, line
        assert line.startswith("XAPI UNKNOWN - broker_url, lrs_url, lrs_login, lrs_password not given, and "
                               "settings_path %s could not be read: PermissionError" % root_only), line
    finally:
        host.run("rm -f %s" % root_only)


@contextlib.contextmanager
def reading(settings):
    """The command reads SETTINGS instead of the worker's (its options name no file): check.json, then back."""
    host = encoding()
    saved = CHECK_CONFIG + ".test-saved"
    assert host.run("cp -p %s %s" % (CHECK_CONFIG, saved)).rc == 0
    try:
        config = dict(json.loads(host.file(CHECK_CONFIG).content_string), settings=settings)
        assert host.run("printf '%%s' %s > %s" % (shlex.quote(json.dumps(config)), CHECK_CONFIG)).rc == 0
        yield
    finally:
        assert host.run("mv -f %s %s" % (saved, CHECK_CONFIG)).rc == 0


def check_via_sudo():
    out = encoding().run("runuser -u nobody -- sudo -n -u pod-xapi %s" % CHECK)
    for secret in PLANTED:
        assert secret not in out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert out.stderr == "" and len(lines) == 1, out.stdout + out.stderr
    return out.rc, lines[0]


def test_critical_with_the_worker_stopped():
    assert encoding().run(WORKER_SERVICE + " stop").rc == 0
    try:
        rc, line = one_line()
        assert rc == 2, line
        assert line.startswith("XAPI CRITICAL - no worker consumes queue xapi: start the worker "), line
        assert " (0 consumer(s), backlog 0, " in line, line
        assert " | consumers=0;;1:;0 backlog=0;100;1000;0 " in line, line
    finally:
        assert encoding().run(WORKER_SERVICE + " start").rc == 0
        wait_ok()


def test_warning_with_a_backlog_above_the_warning_threshold():
    count = 101  # one above worker_monitoring_warning_backlog (100)
    assert encoding().run(WORKER_SERVICE + " stop").rc == 0
    try:
        # Enqueued on the frontal through Pod's task, as Pod's view does.
        pod.enqueue(count, tag="monitoring")
        # The worker is stopped on purpose: ask nothing of the consumers, the backlog alone decides.
        rc, line = one_line("--min-consumers", "0", "--nodes", "")
        assert rc == 1, line
        found = re.fullmatch(
            r"XAPI WARNING - backlog (\d+) exceeds 100: look at [^|]* \(0 consumer\(s\), backlog \1, LRS answered in \d+ ms, "
            r"0 dead letter\(s\), broker memory [0-9.]+%\) \| consumers=0;;;0 backlog=\1;100;1000;0 "
            r"lrs_latency=[0-9.]+s;1;5;0 dead_letters=0;0;;0 broker_memory=[0-9.]+%;80;95;0;100", line)
        assert found, line
        assert int(found.group(1)) >= count
        # Above the critical threshold, given as an option, it is CRITICAL.
        rc, line = one_line("--min-consumers", "0", "--nodes", "", "--critical-backlog", str(count - 1))
        assert rc == 2 and line.startswith("XAPI CRITICAL - backlog %s exceeds %d: " % (found.group(1), count - 1)), line
    finally:
        assert encoding().run(WORKER_SERVICE + " start").rc == 0
    # The worker drains the backlog once it is back.
    assert OK_LINE.fullmatch(wait_ok())


def test_no_secret_when_the_broker_and_the_lrs_refuse_the_passwords():
    wrong = "/tmp/xapi-check-wrong-passwords.py"
    broker_secret, lrs_secret = "planted-check-broker-0d41", "planted-check-lrs-93ab"
    # The worker's settings, then wrong passwords: the last assignment wins, as when Python runs the file.
    source = "\nXAPI_CELERY_BROKER_URL = 'rediss://:%s@frontal:6380/6'\nXAPI_LRS_PWD = %r\n" % (broker_secret, lrs_secret)
    host = encoding()
    assert host.run("cat %s > %s && printf '%%s' %s >> %s && chown root:pod-xapi %s && chmod 0640 %s" % (
        WORKER_SETTINGS, wrong, shlex.quote(source), wrong, wrong, wrong)).rc == 0
    try:
        with reading(wrong):
            rc, lines = check("-v")
        text = "\n".join(lines)
        assert broker_secret not in text and lrs_secret not in text
        assert rc == 2, text
        assert lines[0].startswith("XAPI CRITICAL - broker refused the password: set xapi_broker_worker_password "), text
        assert "; LRS refused the credentials: set xapi_lrs_login and xapi_lrs_password " in lines[0], text
        assert " (consumers unknown, backlog unknown, LRS answered in " in lines[0], text
        assert " | consumers=U;;1:;0 backlog=U;100;1000;0 " in lines[0], text
    finally:
        host.run("rm -f %s" % wrong)


def broker_cli(*words):
    """redis-cli on the frontal against the lab's broker (the role's, noeviction), with its password."""
    out = lab.host("frontal").run("%s -p 6380 %s" % (
        lab.broker_cli("admin"), " ".join(shlex.quote(word) for word in words)))
    assert out.rc == 0 and not out.stdout.startswith("ERR"), out.stdout + out.stderr
    return out.stdout.strip()


def test_warning_then_critical_as_the_broker_nears_its_memory_limit():
    """The broker's maxmemory lowered for the test, so that what it holds is 85 %, then 105 %, of it; then put back."""
    assert broker_cli("CONFIG", "GET", "maxmemory-policy").split()[-1] == "noeviction"
    limit = broker_cli("CONFIG", "GET", "maxmemory").split()[-1]
    used = int(broker_cli("INFO", "memory").split("used_memory:")[1].split()[0])
    try:
        broker_cli("CONFIG", "SET", "maxmemory", str(int(used / 0.85)))
        rc, line = one_line()
        assert rc == 1, line
        found = re.fullmatch(r"XAPI WARNING - broker memory at ([0-9.]+)% of its maxmemory \(.+ of .+\), over 80%: "
                             r"when full it refuses new statements \(noeviction\), so look at [^|(]*\(1 consumer\(s\), .*, broker memory "
                             r"\1%\) \| .* broker_memory=\1%;80;95;0;100", line)
        assert found and 80 <= float(found.group(1)) < 95, line
        print("\n" + line)
        # The module, from the role's check entry point (verify.yml): a warning, the run passes.
        rc, out = lab.run_playbook("playbooks/verify.yml", "-e", "worker_check_probe=false")
        assert rc == 0, out[-3000:]
        assert re.search(r"\[WARNING\]: broker memory at [0-9.]+% of its maxmemory \(.+\), over 80%: when full it "
                         r"refuses new statements \(noeviction\)", out), out[-3000:]
        # Above the limit, not just under it: what the broker holds moves by a few percent as clients come and go.
        used = int(broker_cli("INFO", "memory").split("used_memory:")[1].split()[0])
        broker_cli("CONFIG", "SET", "maxmemory", str(int(used / 1.05)))
        rc, line = one_line()
        assert rc == 2 and line.startswith("XAPI CRITICAL - broker memory at "), line
        assert "over 95%: when full it refuses new statements (noeviction)" in line, line
        print(line)
        rc, out = lab.run_playbook("playbooks/verify.yml", "-e", "worker_check_probe=false")
        assert rc != 0 and "over 95%: when full it refuses new statements (noeviction)" in out, out[-3000:]
    finally:
        broker_cli("CONFIG", "SET", "maxmemory", limit)
    assert broker_cli("CONFIG", "GET", "maxmemory").split()[-1] == limit
    assert OK_LINE.fullmatch(wait_ok())
