"""Turning xAPI off and on again (docs/admin-guide.md: "Turning xAPI off"), with real ansible-playbook runs.

`site.yml -e xapi_enabled=false` turns the frontal off (USE_XAPI = False, Pod's web service reloaded), then the
worker delivers what the broker still holds, stops, and stays off at boot; the broker and its data
stay. A re-run changes nothing. `site.yml` with xAPI on again starts the worker, and delivery
resumes. The lab is left on, as the other tests expect it. A web service whose unit declares no reload is
restarted instead.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))

from lablib import faults, lab, pod  # noqa: E402
from lablib.lrs import LRS  # noqa: E402

# Platform-neutral, and they break and heal the lab: once, after the other tests (conftest.py).
pytestmark = pytest.mark.once

SERVICE = "celeryd-xapi"
KEPT_KEY = "lab:test:turning-off:kept"
# A drop-in that takes the reload away from the site's web service.
NO_RELOAD = "/run/systemd/system/%s.service.d/no-reload.conf" % pod.WEB_SERVICE


def site_use_xapi():
    """USE_XAPI as the site's Pod reads it on the frontal."""
    process = pod.run_in_pod("frontal", "from pod.custom import settings_local as s\nprint(getattr(s, 'USE_XAPI', None))\n")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return out.strip()


def test_turning_xapi_off_drains_then_stops_and_on_again_resumes():
    encoding, frontal, broker = lab.host("encoding"), lab.host("frontal"), faults.Lab()
    lrs = LRS()
    broker.broker("SET %s planted" % KEPT_KEY)
    # Statements waiting in the broker when xAPI is turned off: the worker must deliver them first.
    assert encoding.run("systemctl stop %s.service" % SERVICE).rc == 0
    waiting = pod.enqueue(40, tag="turning-off")
    assert int(broker.broker("LLEN xapi").strip()) >= 40
    web_pid, web_loaded = pod.web_service_state()
    try:
        rc, output = lab.run_playbook("playbooks/site.yml", "-e", "xapi_enabled=false")
        assert rc == 0, output[-4000:]
        # The frontal no longer enqueues: Pod reads USE_XAPI = False, and its web service read it again in a
        # graceful reload (the same main process), since its unit declares one.
        assert site_use_xapi() == "False"
        pid, loaded = pod.web_service_state()
        assert loaded > web_loaded and pid == web_pid, ((web_pid, web_loaded), (pid, loaded))
        # The worker delivered every waiting statement before it stopped; it stays off at boot.
        assert set(lrs.wait_for(waiting, timeout=30)) == set(waiting)
        assert "Wait until the worker has delivered every pending statement" in output
        assert encoding.run("systemctl is-active %s.service %s@xapi.service" % (SERVICE, SERVICE)).stdout.split() == [
            "inactive", "inactive"]
        assert encoding.run("systemctl is-enabled %s.service" % SERVICE).stdout.strip() == "disabled"
        # The broker and its data stay.
        assert broker.broker("GET %s" % KEPT_KEY).strip() == "planted"
        assert frontal.run("systemctl is-active redis-server@xapi.service").stdout.strip() == "active"
        # Off is a state: a re-run changes nothing.
        rc, output = lab.run_playbook("playbooks/site.yml", "-e", "xapi_enabled=false")
        assert rc == 0, output[-4000:]
        assert set(lab.changed_by_host(output).values()) == {0}, output[-3000:]
        web_pid, web_loaded = pod.web_service_state()
        # A unit without a reload: turning xAPI on again restarts the service.
        frontal.run("mkdir -p %s && printf '[Service]\\nExecReload=\\n' > %s && systemctl daemon-reload"
                    % (NO_RELOAD.rsplit("/", 1)[0], NO_RELOAD))
        assert frontal.run("systemctl show -p CanReload --value %s" % pod.WEB_SERVICE).stdout.strip() == "no"
    finally:
        rc, output = lab.run_playbook("playbooks/site.yml")
        broker.broker("DEL %s" % KEPT_KEY)
        frontal.run("rm -f %s && systemctl daemon-reload" % NO_RELOAD)
    assert rc == 0, output[-4000:]
    pid, loaded = pod.web_service_state()
    assert loaded > web_loaded and pid != web_pid, ((web_pid, web_loaded), (pid, loaded))
    # On again: the frontal enqueues, the worker runs at boot, and delivery resumes.
    assert site_use_xapi() == "True"
    assert encoding.run("systemctl is-enabled %s.service" % SERVICE).stdout.strip() == "enabled"
    resumed = pod.enqueue(5, tag="turned-on")
    assert set(lrs.wait_for(resumed, timeout=60)) == set(resumed)
