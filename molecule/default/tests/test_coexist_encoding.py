"""The collection on a real Pod encoding host: the site's install is left as it was, and the xAPI
worker is a supervised systemd service of its own.

The lab's encoding host runs Pod as upstream's docs install it (tests/roles/lab_pod_encoding): user
pod with no login shell, the checkout /usr/local/django_projects/podv4 at an older release (4.0.3)
than the one the collection deploys, the virtualenv django_pod4 with other package versions, the
site's settings_local.py (pod:pod 0640, with the database secrets), and Pod's own Celery encoding
worker (celeryd.service, queue celery on the frontal's Redis db 5, logs in /var/log/celery with the
site's logrotate file). /var/lib/lab-site/before.json holds its state before any deployment.

Tests marked `once` prove the role's logic rather than the host's release: the debian13 scenario
deselects them.
"""

import json
import re
import sys
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))

from lablib import lab, pod  # noqa: E402

SITE_DIR = "/usr/local/django_projects/podv4"
SITE_VENV = "/home/pod/.virtualenvs/django_pod4"
SITE_SETTINGS = SITE_DIR + "/pod/custom/settings_local.py"
SITE_LOGROTATE = "/etc/logrotate.d/celeryd"
NODE_UNIT = "celeryd-xapi@xapi.service"


def encoding():
    return lab.host("encoding")


def before():
    """The snapshot of the site before the deployment, but for the trees and accounts, to which the
    deployment adds (test_uninstall.py compares them once the collection is removed)."""
    snapshot = json.loads(encoding().file("/var/lib/lab-site/before.json").content_string)
    return {part: value for part, value in snapshot.items() if part not in ("trees", "accounts")}


def now():
    """The same snapshot, taken now with the lab's script."""
    out = encoding().run(
        "python3 /usr/local/lib/lab-pod-encoding/lab_site_snapshot.py --service celeryd --git %s --pip %s --passwd pod "
        "--file %s --file %s" % (SITE_DIR, SITE_VENV, SITE_SETTINGS, SITE_LOGROTATE))
    assert out.rc == 0, out.stderr
    return json.loads(out.stdout)


def main_pid(unit):
    return int(encoding().check_output("systemctl show --property=MainPID --value %s" % unit))


def tag_commit(tag):
    return encoding().check_output("git ls-remote %s 'refs/tags/%s^{}'" % (lab.var("encoding", "worker_pod_repo"), tag)).split()[0]


def our_head():
    return encoding().check_output("git -c safe.directory='*' -C %s rev-parse HEAD" % pod.WORKER_DIR)


def starts_since(cursor):
    """How many times systemd started the node unit since the journal's CURSOR."""
    out = encoding().check_output("journalctl --no-pager -o cat -u %s --after-cursor='%s'" % (NODE_UNIT, cursor))
    return len(re.findall(r"^Started .*node xapi", out, re.M))


def clock():
    """The journal's cursor now."""
    out = encoding().check_output("journalctl -n 0 --show-cursor --no-pager")
    return re.search(r"-- cursor: (\S+)", out).group(1)


# --- The site's install is as it was ----------------------------------------------------------

@pytest.mark.parametrize("part", ["git", "pip", "passwd", "services"])
def test_the_sites_install_is_unchanged(part):
    was, is_now = before()[part], now()[part]
    assert is_now == was
    assert was, "the snapshot holds nothing for %s" % part


@pytest.mark.parametrize("path", [SITE_SETTINGS, SITE_LOGROTATE])
def test_the_sites_files_are_unchanged(path):
    assert now()["files"][path] == before()["files"][path]


def test_the_sites_checkout_is_still_at_its_older_release():
    assert now()["git"][SITE_DIR]["head"] == tag_commit("4.0.3") != tag_commit("4.1.0")


def test_the_sites_pod_user_still_has_no_login_shell():
    assert now()["passwd"]["pod"].endswith(":/usr/sbin/nologin")


def test_the_sites_encoding_worker_still_consumes_its_queue():
    text = "lab-%s" % uuid.uuid4()
    sent = encoding().run(
        "cd /usr/local/lib/lab-pod-encoding && LAB_ENCODING_BROKER_URL=redis://frontal:6379/5 "
        "%s/bin/python -c \"import lab_encoding_app as a; a.echo.delay('%s')\"" % (SITE_VENV, text))
    assert sent.rc == 0, sent.stderr
    lab.until("the site's worker runs the task", lambda: encoding().run(
        "grep -q -F 'lab-encoding-echo %s' /var/log/celery/worker1.log" % text).rc == 0, 60)


# --- The worker of its own -----------------------------------------------------------------------

def test_the_worker_runs_as_its_own_user_from_its_own_install(lab_host):
    host = lab_host("encoding")
    pid = main_pid(NODE_UNIT)
    assert pid > 0
    assert host.check_output("ps -o user= -p %d" % pid).strip() == pod.WORKER_USER
    command = host.check_output("tr '\\0' ' ' < /proc/%d/cmdline" % pid)
    assert command.startswith("/opt/esup-pod-xapi/venv/bin/python"), command
    # No su between systemd and the worker: its parent is PID 1, and it is in the unit's cgroup.
    assert host.check_output("ps -o ppid= -p %d" % pid).strip() == "1"
    assert NODE_UNIT in host.file("/proc/%d/cgroup" % pid).content_string
    assert host.user("pod-xapi").shell == "/usr/sbin/nologin"


def test_the_workers_settings_hold_only_the_xapi_names(lab_host):
    content = lab_host("encoding").file(pod.WORKER_DIR + "/pod/custom/settings_local.py").content_string
    names = sorted(re.findall(r"^([A-Z_]+) = ", content, re.M))
    assert names == ["XAPI_CELERY_BROKER_URL", "XAPI_LRS_LOGIN", "XAPI_LRS_PWD", "XAPI_LRS_URL"], names
    for secret in ("DATABASES", "SECRET_KEY", "POD_API_TOKEN"):
        assert secret not in content


def test_the_worker_logs_in_a_directory_of_its_own(lab_host):
    host = lab_host("encoding")
    assert host.file("/var/log/celeryd-xapi/xapi.log").exists
    assert "/var/log/celery/" not in host.file("/etc/logrotate.d/celeryd-xapi").content_string


def test_log_rotation_rotates_only_the_workers_logs_and_reports_no_error(lab_host):
    host = lab_host("encoding")
    site_logs = host.check_output("ls -1 /var/log/celery")
    dry = host.run("logrotate -d /etc/logrotate.conf")
    assert "duplicate log entry" not in dry.stderr + dry.stdout
    forced = host.run("logrotate -f /etc/logrotate.d/celeryd-xapi")
    assert forced.rc == 0 and "error" not in forced.stderr.lower(), forced.stderr
    assert host.file("/var/log/celeryd-xapi/xapi.log.1").exists
    assert host.check_output("ls -1 /var/log/celery") == site_logs


def test_a_killed_worker_is_back_within_10_s_and_delivers(lrs):
    pid = main_pid(NODE_UNIT)
    assert encoding().run("kill -9 %d" % pid).rc == 0
    killed = time.monotonic()
    ids = pod.enqueue(20, tag="killed-worker")
    lab.until("the node runs again", lambda: main_pid(NODE_UNIT) not in (0, pid), max(0.0, 10 - (time.monotonic() - killed)))
    assert time.monotonic() - killed < 10
    assert sorted(lrs.wait_for(ids, timeout=120)) == sorted(ids)
    status = encoding().run("/etc/init.d/celeryd-xapi status")
    assert status.rc == 0 and "xapi@encoding: running" in status.stdout, status.stdout


def test_the_init_script_tells_the_truth_and_acts_on_the_units():
    host = encoding()
    assert host.run("/etc/init.d/celeryd-xapi stop").rc == 0
    try:
        status = host.run("/etc/init.d/celeryd-xapi status")
        assert status.rc == 3 and "not running" in status.stdout, status.stdout
        assert host.run("systemctl is-active %s" % NODE_UNIT).stdout.strip() == "inactive"
    finally:
        assert host.run("/etc/init.d/celeryd-xapi start").rc == 0
    assert host.run("/etc/init.d/celeryd-xapi status").rc == 0
    lab.until("the node answers again", lambda: "pong" in pod.inspect("ping", via="encoding", timeout=2).stdout, 60)


# --- Upgrades, migration and refusals ------------------------------------------------------------

@pytest.mark.once
def test_a_new_release_moves_the_workers_checkout_and_restarts_it_once(lrs):
    since = clock()
    rc, output = lab.run_playbook("playbooks/site.yml", "-e", "worker_pod_version=4.0.3")
    assert rc == 0, output[-3000:]
    assert our_head() == tag_commit("4.0.3")
    assert starts_since(since) == 1
    since = clock()
    rc, output = lab.run_playbook("playbooks/site.yml")
    assert rc == 0, output[-3000:]
    assert our_head() == tag_commit("4.1.0")
    assert starts_since(since) == 1
    ids = pod.enqueue(5, tag="upgraded")
    assert sorted(lrs.wait_for(ids, timeout=120)) == sorted(ids)
    assert now()["git"] == before()["git"]


@pytest.mark.once
@pytest.mark.parametrize("extra, message", [
    (["-e", "worker_pod_version=main"], "is a branch of"),
    (["-e", "worker_pod_dir=%s" % SITE_DIR, "-e", "worker_venv=%s" % SITE_VENV, "-e", "worker_user=pod"],
     "is a checkout that this role did not create"),
])
def test_the_preflight_refuses_a_branch_and_any_change_to_the_sites_install(extra, message):
    pid = main_pid(NODE_UNIT)
    rc, output = lab.run_playbook("playbooks/site.yml", *extra)
    assert rc != 0 and message in output, output[-3000:]
    assert main_pid(NODE_UNIT) == pid
    assert now() == before()


def test_exactly_the_roles_nodes_consume_xapi_after_all_this():
    def consumers():
        out = pod.inspect("active_queues", via="encoding", timeout=3, json_output=True)
        return sorted(json.loads(out.stdout.strip().splitlines()[-1])) if out.rc == 0 else None
    assert lab.until("the nodes answer", consumers, 60) == ["xapi@encoding"]
