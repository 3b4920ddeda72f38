"""The way back (docs/admin-guide.md, "Uninstalling"), with real ansible-playbook runs: playbooks/uninstall.yml
refuses, before any change, while a stopped worker leaves statements queued; with the worker running it
delivers them, then removes the frontal's block, the worker and (asked) the broker, and the site is again
what the lab recorded before the first deployment (/var/lib/lab-site/before.json on each host).

It leaves the lab without the collection: it runs last (conftest.py), and `scripts/lab.sh` or
`playbooks/site.yml` deploys it again.
"""

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))

from lablib import lab, pod  # noqa: E402
from lablib.lrs import LRS  # noqa: E402

pytestmark = pytest.mark.once

SERVICE = "celeryd-xapi"
SITE_SETTINGS = "/usr/local/django_projects/podv4/pod/custom/settings_local.py"
# What each host's before.json records (tests/roles/lab_pod_site, lab_pod_encoding), taken again now.
SNAPSHOTS = {
    "frontal": "/usr/local/lib/lab-pod-site/lab_site_snapshot.py --dir /etc/redis --service redis-server",
    "encoding": "/usr/local/lib/lab-pod-encoding/lab_site_snapshot.py --service celeryd"
                " --git /usr/local/django_projects/podv4 --pip /home/pod/.virtualenvs/django_pod4 --passwd pod"
                " --file /etc/logrotate.d/celeryd",
}
TREES = " --accounts" + "".join(" --tree " + path for path in (
    "/etc/systemd/system", "/etc/default", "/etc/init.d", "/etc/logrotate.d", "/usr/local/bin", "/usr/local/sbin", "/opt"))
# What the collection installs and the snapshots' trees do not cover.
LEFT_OUT = {
    "frontal": ["/var/lib/redis-xapi", "/var/log/redis/redis-server-xapi.log"],
    "encoding": ["/var/lib/esup-pod-xapi", "/var/log/celeryd-xapi"],
}


def before(name):
    return json.loads(lab.host(name).file("/var/lib/lab-site/before.json").content_string)


def now(name):
    out = lab.host(name).run("python3 %s --file %s%s" % (SNAPSHOTS[name], SITE_SETTINGS, TREES))
    assert out.rc == 0, out.stderr
    return json.loads(out.stdout)


def uninstall(*args):
    return lab.run_playbook("playbooks/uninstall.yml", *args)


def test_a_stopped_worker_with_statements_queued_stops_the_uninstall_before_any_change():
    encoding, frontal = lab.host("encoding"), lab.host("frontal")
    settings = frontal.file(SITE_SETTINGS).sha256sum
    assert encoding.run("systemctl stop %s.service" % SERVICE).rc == 0
    try:
        waiting = pod.enqueue(5, tag="uninstall-refused")
        rc, output = uninstall("-e", "xapi_uninstall_broker=true")
        assert rc != 0, output[-3000:]
        queued = re.search(r"(\d+) statements are still queued for the LRS", output)
        assert queued and int(queued.group(1)) >= 5, output[-3000:]
        assert "Nothing was changed" in output
        assert set(lab.changed_by_host(output).values()) == {0}, output[-3000:]
        assert frontal.file(SITE_SETTINGS).sha256sum == settings
        assert encoding.file("/etc/systemd/system/%s.service" % SERVICE).exists
    finally:
        assert encoding.run("systemctl start %s.service" % SERVICE).rc == 0
    assert set(LRS().wait_for(waiting, timeout=60)) == set(waiting)


def test_check_mode_reports_the_removal_and_changes_nothing():
    frontal = lab.host("frontal")
    settings = frontal.file(SITE_SETTINGS).sha256sum
    rc, output = uninstall("--check", "--diff", "-e", "xapi_uninstall_broker=true")
    assert rc == 0, output[-3000:]
    changed = lab.changed_by_host(output)
    assert changed["frontal"] > 0 and changed["encoding"] > 0, changed
    assert "BEGIN esup_pod.xapi managed settings (frontal)" in output
    for secret in lab.broker_secrets():
        assert secret not in output
    assert frontal.file(SITE_SETTINGS).sha256sum == settings
    assert frontal.service("redis-server@xapi").is_running
    assert lab.host("encoding").service("%s@xapi" % SERVICE).is_running


def test_the_uninstall_delivers_what_is_queued_and_gives_the_site_back():
    queued = pod.enqueue(20, tag="uninstall-delivered")
    rc, output = uninstall("-e", "xapi_uninstall_broker=true")
    assert rc == 0, output[-4000:]
    assert set(LRS().wait_for(queued, timeout=30)) == set(queued)

    for name in ("frontal", "encoding"):
        host, was, is_now = lab.host(name), before(name), now(name)
        # The faults' test reboots the encoding host: its services' PIDs are not the recorded ones.
        if name == "encoding":
            assert host.service("celeryd").is_running
            was.pop("services"), is_now.pop("services")
        assert "trees" in was, "the lab recorded no trees before the deployment: rebuild it (scripts/lab.sh)"
        for part in sorted(was):
            assert is_now[part] == was[part], "%s: %s differs from before the first deployment" % (name, part)
        for path in LEFT_OUT[name]:
            assert not host.file(path).exists, path
    frontal = lab.host("frontal")
    assert frontal.service("redis-server").is_running and frontal.service("uwsgi-pod").is_running
    assert not re.search(r":6380\s", frontal.check_output("ss -Hltn"))

    # Gone is a state: a second run changes nothing.
    rc, output = uninstall("-e", "xapi_uninstall_broker=true")
    assert rc == 0, output[-3000:]
    assert set(lab.changed_by_host(output).values()) == {0}, output[-3000:]
