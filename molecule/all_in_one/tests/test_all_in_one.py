"""A small site on one server: the frontal, the broker and the encoding worker on the host allinone.

The frontal and worker roles both write the site's settings_local.py there. Each keeps its own
block, so a second run changes nothing (Molecule's idempotence step) and xAPI stays on.
"""

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))

from lablib import lab, pod  # noqa: E402

HOST = "allinone"
POD_DIR = "/usr/local/django_projects/podv4"
SETTINGS = POD_DIR + "/pod/custom/settings_local.py"
SITE_SETTINGS = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "site_settings_local.py"
INVENTORIES = ("molecule/all_in_one/inventory",)


def test_each_role_keeps_its_own_block_after_the_sites_settings(lab_host):
    content = lab_host(HOST).file(SETTINGS).content_string
    assert content.startswith(SITE_SETTINGS.read_text())
    for name in ("frontal", "worker"):
        assert content.count("# BEGIN esup_pod.xapi managed settings (%s) -- do not edit" % name) == 1, name
        assert content.count("# END esup_pod.xapi managed settings (%s)" % name) == 1, name


def test_pod_reads_xapi_on_with_every_name_it_needs(lab_host):
    out = lab_host(HOST).run(
        "cd %s && /home/pod/.virtualenvs/django_pod4/bin/python -c \"import json; "
        "from pod.custom import settings_local as s; print(json.dumps([s.USE_XAPI, s.USE_XAPI_VIDEO, "
        "s.XAPI_LRS_URL, s.XAPI_LRS_LOGIN, s.XAPI_CELERY_BROKER_URL.split('@')[-1]]))\"" % POD_DIR)
    assert out.rc == 0, out.stderr
    assert json.loads(out.stdout) == [True, True, lab.var("lrs", "xapi_lrs_url"), lab.var("lrs", "xapi_lrs_login"),
                                      "allinone:6380/6"]


def test_statements_enqueued_on_the_host_reach_the_lrs(lrs):
    ids = pod.enqueue(50, tag="all-in-one", via=HOST)
    assert sorted(lrs.wait_for(ids, timeout=120)) == sorted(ids)


def test_the_sites_redis_was_left_alone(lab_host):
    host = lab_host(HOST)
    was = json.loads(host.file("/var/lib/lab-site/before.json").content_string)
    assert int(host.check_output("systemctl show --property=MainPID --value redis-server")) == was["services"]["redis-server"]
    for name, digest in was["dirs"]["/etc/redis"].items():
        assert host.file("/etc/redis/" + name).sha256sum == digest, name


def test_a_second_run_changes_nothing_in_check_mode_too():
    rc, output = lab.run_playbook("playbooks/site.yml", "--check", "--diff", inventories=INVENTORIES)
    assert rc == 0, output[-3000:]
    recap = re.search(r"^allinone\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", output, re.M)
    assert recap and recap.group(1) == "0", output[-2000:]
