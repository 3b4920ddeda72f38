"""The collection on a real Pod frontal: what the site already ran before site.yml is still as it was,
and the xAPI broker is a Redis instance of its own.

The lab's frontal is a running Pod site (tests/roles/lab_pod_site): Debian's redis-server with no
password, holding Pod's data in db 2, 3, 4, 5 and 7, used on every request by the web stand-in
(db 3 and 4) and reachable from the encoding host (db 5), as upstream's guide sets it up. Before
any deployment the lab recorded the site's state in /var/lib/lab-site/before.json, and a poller has
been requesting the web stand-in since then (/run/lab-web-poller.json).
"""

import contextlib
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))

from lablib import faults, lab, pod, resp  # noqa: E402

POD_DIR = "/usr/local/django_projects/podv4"
SETTINGS = POD_DIR + "/pod/custom/settings_local.py"
SITE_SETTINGS = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "site_settings_local.py"
SITE_DBS = [2, 3, 4, 5, 7]
BROKER_PORT = 6380  # the broker role's default (xapi_broker_port), which the lab keeps
BROKER_SERVICE = "redis-server@xapi"
WORKER_SERVICE = "celeryd-xapi"
FILLER = "lab-reserve-filler"  # a key of the tests' own on the broker, never one of Pod's or kombu's


def before():
    return json.loads(lab.host("frontal").file("/var/lib/lab-site/before.json").content_string)


def main_pid(host, service):
    return int(lab.host(host).check_output("systemctl show --property=MainPID --value %s" % service))


def broker(*words):
    """redis-cli on the frontal against the xAPI broker, with its password (db 6); the answer's text."""
    out = lab.host("frontal").run("%s -p %d -n 6 %s" % (
        lab.broker_cli("admin"), BROKER_PORT, " ".join(shlex.quote(str(w)) for w in words)))
    assert out.rc == 0, out.stderr
    return out.stdout.strip()


@contextlib.contextmanager
def worker_stopped():
    """The encoding host's xAPI worker stopped for the duration, started again after, whatever happens."""
    encoding = lab.host("encoding")
    assert encoding.run("systemctl stop %s" % WORKER_SERVICE).rc == 0
    assert encoding.run("systemctl is-active celeryd-xapi@xapi.service").stdout.strip() == "inactive"
    try:
        yield
    finally:
        assert encoding.run("systemctl start %s" % WORKER_SERVICE).rc == 0
        lab.until("the worker answers again", lambda: "pong" in pod.inspect("ping", timeout=2).stdout, 60)


def site_secrets():
    text = SITE_SETTINGS.read_text()
    return [re.search(p, text).group(1) for p in (
        r'SECRET_KEY = "([^"]+)"', r'"PASSWORD": "([^"]+)"', r'POD_API_TOKEN = "([^"]+)"')]


# --- The site's own Redis ---------------------------------------------------------------------

def test_the_sites_redis_configuration_is_byte_identical(lab_host):
    files = {"/etc/redis/" + name: digest for name, digest in before()["dirs"]["/etc/redis"].items()}
    assert "/etc/redis/redis.conf" in files
    for path, digest in files.items():
        assert lab_host("frontal").file(path).sha256sum == digest, path


def test_the_sites_redis_was_never_restarted():
    assert main_pid("frontal", "redis-server") == before()["services"]["redis-server"] > 0


@pytest.mark.parametrize("db", SITE_DBS)
def test_the_sites_planted_data_is_still_there(lab_host, db):
    out = lab_host("frontal").check_output("redis-cli -n %d GET lab:site:planted:db%d" % (db, db))
    assert out == "planted-value-%d" % db


@pytest.mark.parametrize("via, address, db", [("frontal", "127.0.0.1", 3), ("frontal", "127.0.0.1", 4),
                                              ("encoding", "frontal", 5)])
def test_passwordless_clients_of_the_sites_redis_still_work(via, address, db):
    key = "lab:test:client:%s:%d" % (via, db)
    answers = resp.talk(via, address, 6379, "SELECT %d" % db, "SET %s works" % key, "GET %s" % key, "DEL %s" % key)
    assert answers == ["+OK", "+OK", "works", ":1"], answers


def test_the_web_service_never_failed_while_the_collection_ran(lab_host):
    frontal = lab_host("frontal")
    counts = json.loads(frontal.file("/run/lab-web-poller.json").content_string)
    print("web poller: %(ok)d requests answered, %(failed)d failed (last failure: %(last_failure)s)" % counts)
    # The poller runs since the lab was prepared, before the converge's first role task, and still runs.
    log = Path(os.environ["ANSIBLE_LOG_PATH"]).read_text()
    first = re.search(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ .*esup_pod\.xapi\.", log, re.M)
    assert first, "the scenario's log holds no run of the collection's roles"
    assert counts["started"] < time.mktime(time.strptime(first.group(1), "%Y-%m-%d %H:%M:%S")), counts
    assert time.time() - counts["updated"] < 30, counts
    assert counts["ok"] > 100, counts
    assert counts["failed"] == 0, counts


def test_the_web_service_kept_its_listening_socket(lab_host):
    frontal = lab_host("frontal")
    assert frontal.service("uwsgi-pod.socket").is_running
    assert frontal.service("uwsgi-pod").is_running


def test_the_sites_settings_file_kept_its_owner_group_and_mode(lab_host):
    was = before()["files"][SETTINGS]
    now = lab_host("frontal").file(SETTINGS)
    assert (now.uid, now.gid) == (was["uid"], was["gid"])
    assert now.mode == int(was["mode"], 8) & 0o7770, (oct(now.mode), was["mode"])


# --- The xAPI broker: an instance of its own ------------------------------------------------------

def test_the_broker_is_a_redis_instance_of_its_own(lab_host):
    frontal = lab_host("frontal")
    assert frontal.service(BROKER_SERVICE).is_running and frontal.service(BROKER_SERVICE).is_enabled
    assert main_pid("frontal", BROKER_SERVICE) != main_pid("frontal", "redis-server")
    config = frontal.file("/etc/redis/redis-xapi.conf")
    assert config.user == "redis" and config.mode == 0o640
    assert frontal.file("/var/lib/redis-xapi/appendonlydir").is_directory


def test_the_broker_listens_on_loopback_and_the_address_the_encoding_host_uses(lab_host):
    listening = sorted(set(re.findall(r"(\S+):%d\s" % BROKER_PORT, lab_host("frontal").check_output("ss -Hltn"))))
    resolved = lab_host("encoding").check_output("getent ahostsv4 frontal").split()[0]
    assert listening == sorted({"127.0.0.1", resolved}), listening


def test_queued_statements_survive_a_broker_restart(lrs):
    with worker_stopped():
        waiting = int(broker("LLEN", "xapi"))
        ids = pod.enqueue(5, tag="broker-restart")
        assert int(broker("LLEN", "xapi")) == waiting + 5
        pid = main_pid("frontal", BROKER_SERVICE)
        assert lab.host("frontal").run("systemctl restart %s" % BROKER_SERVICE).rc == 0
        lab.until("the broker answers again", lambda: broker("PING") == "PONG", 30)
        assert main_pid("frontal", BROKER_SERVICE) != pid
        assert int(broker("LLEN", "xapi")) == waiting + 5
    assert sorted(lrs.wait_for(ids, timeout=120)) == sorted(ids)


def test_the_reserve_of_the_brokers_memory_runs_as_redis_and_hides_its_password(lab_host):
    frontal = lab_host("frontal")
    unit = "redis-xapi-reserve.service"
    shown = dict(line.split("=", 1) for line in frontal.check_output("systemctl show -p ActiveState -p User %s" % unit).splitlines())
    assert shown == {"ActiveState": "active", "User": "redis"}, shown
    secret = frontal.file("/etc/redis/redis-xapi-reserve.secret")
    assert (secret.user, secret.group, secret.mode) == ("root", "redis", 0o640)


def test_a_broker_near_its_limit_refuses_new_statements_and_keeps_the_queued_ones(lrs):
    limit = broker("CONFIG", "GET", "maxmemory").split()[-1]
    with worker_stopped():
        ids = pod.enqueue(3, tag="broker-full")
        waiting = int(broker("LLEN", "xapi"))
        # 8 MB of filler: the clients' own buffers, which come and go, are then a small share of what the
        # broker holds, and cannot take it out of the reserve or over its limit.
        broker("EVAL", "for i = 1, 8000 do redis.call('RPUSH', KEYS[1], string.rep('x', 1000)) end", "1", FILLER)
        assert int(broker("LLEN", FILLER)) == 8000
        used = int(re.search(r"^used_memory:(\d+)", broker("INFO", "memory"), re.M).group(1))
        # In the reserve (over 90 %), under the limit where Redis itself refuses writes.
        assert broker("CONFIG", "SET", "maxmemory", int(used / 0.95)) == "OK"
        try:
            # The broker's reserve takes the frontal's enqueue away before Redis's own out-of-memory refusal.
            lab.until("the reserve refuses the frontal", lambda: broker(
                "ACL", "DRYRUN", lab.broker_user("frontal"), "lpush", "xapi", "x") != "OK", 30)
            with pytest.raises(RuntimeError, match=faults.RESERVE_REFUSAL):
                pod.enqueue(1, tag="broker-full-refused")
            assert int(broker("LLEN", "xapi")) == waiting
        finally:
            assert broker("CONFIG", "SET", "maxmemory", limit) == "OK"
            broker("DEL", FILLER)
        lab.until("the reserve gives the frontal its enqueues back", lambda: broker(
            "ACL", "DRYRUN", lab.broker_user("frontal"), "lpush", "xapi", "x") == "OK", 30)
    assert sorted(lrs.wait_for(ids, timeout=120)) == sorted(ids)


# --- The run as a whole -----------------------------------------------------------------------------

def test_a_refused_lrs_password_stops_the_whole_run_before_any_change(lab_host):
    frontal = lab_host("frontal")
    settings = frontal.file(SETTINGS).sha256sum
    pids = {name: main_pid("frontal", name) for name in ("redis-server", BROKER_SERVICE)}
    web = pod.web_service_state()
    # Only the encoding host checks the LRS credentials; the frontal has a change to make.
    rc, output = lab.run_playbook("playbooks/site.yml", "-e", "xapi_lrs_password=not-the-lrs-password-1",
                                  "-e", "frontal_use_xapi_video=false")
    assert rc != 0, output[-3000:]
    assert "LRS refused the credentials" in output, output[-3000:]
    assert "Set the xAPI names in Pod's settings_local.py" not in output, output[-3000:]
    assert frontal.file(SETTINGS).sha256sum == settings
    assert {name: main_pid("frontal", name) for name in pids} == pids
    assert pod.web_service_state() == web


def fresh_check():
    """The check-mode run of site.yml that the scenario's prepare made on the fresh lab (before any
    deployment): its return code and output."""
    log = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "fresh-check.log"
    assert log.exists(), "the scenario's prepare did not record a check-mode run (LAB_FRESH_CHECK)"
    text = log.read_text()
    rc = int(re.search(r"^rc=(\d+)$", text, re.M).group(1))
    return rc, text


def test_check_mode_before_the_first_deployment_reports_changes_on_every_host():
    rc, output = fresh_check()
    assert rc == 0, output[-3000:]
    counts = lab.changed_by_host(output)
    assert set(counts) == {"frontal", "encoding"} and all(n > 0 for n in counts.values()), counts
    assert "this run deploys it (group pod_broker)" in output


def test_check_mode_before_the_first_deployment_leaks_no_secret():
    _rc, output = fresh_check()
    assert "Using module file" in output  # -vvv
    ours = [lab.var("frontal", "xapi_lrs_password")] + lab.broker_secrets()
    for secret in site_secrets() + ours:
        assert secret not in output
