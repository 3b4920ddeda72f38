"""The frontal switches last: it enqueues into a broker only once every encoding host's worker consumes
from it. And the site's own XAPI_ANONYMIZE_ACTOR is kept unless the inventory sets it."""

import re

import pytest

from lablib import lab, pod
from lablib.pod import POD_DIR, WORKER_PYTHON, WORKER_USER, site_setting

pytestmark = pytest.mark.once

SETTINGS = POD_DIR + "/pod/custom/settings_local.py"
# A package of Pod's requirements-encode.txt that the worker never imports: with it gone, the next
# run's install has to reach the pip index, as an upgrade does.
PACKAGE = "webvtt-py"


def frontal_state():
    """(sha256 of the frontal's settings, (main PID, last load) of Pod's web service)."""
    return lab.host("frontal").file(SETTINGS).sha256sum, pod.web_service_state()


def worker_pip(*args):
    result = lab.host("encoding").run("runuser -u %s -- %s -m pip %s" % (WORKER_USER, WORKER_PYTHON, " ".join(args)))
    assert result.rc == 0, result.stderr
    return result.stdout


def test_a_worker_that_fails_its_install_leaves_the_frontal_on_its_old_broker():
    before = frontal_state()
    worker_pip("uninstall", "--yes", PACKAGE)
    try:
        # A change of broker (another db) that the frontal would take, and a pip index that does not answer.
        rc, out = lab.run_playbook("playbooks/site.yml", "-e", "xapi_broker_db=7",
                                   "-e", "worker_pip_index_url=http://127.0.0.1:9/simple/")
        after = frontal_state()
    finally:
        heal_rc, heal_out = lab.run_playbook("playbooks/site.yml")
    assert rc != 0, out[-3000:]
    assert re.search(r"fatal: \[encoding\].*\n?.*(pip|Would install|127\.0\.0\.1:9)", out), out[-3000:]
    assert "Configure the xAPI settings of the Pod frontal" not in out, out[-3000:]
    assert after == before, "the frontal's settings or its web service changed: %s -> %s" % (before, after)
    assert lab.changed_by_host(out)["frontal"] == 0, out[-3000:]
    assert heal_rc == 0, heal_out[-3000:]
    assert PACKAGE in worker_pip("list", "--format=freeze").lower()


def test_the_sites_own_anonymize_choice_is_kept_unless_the_inventory_sets_it():
    frontal = lab.host("frontal")
    original = frontal.file(SETTINGS).content_string
    assert "XAPI_ANONYMIZE_ACTOR" not in original.split("# BEGIN esup_pod.xapi")[1], "the frontal's block sets it"
    # As upstream's hand-made guide leaves it: the site's own line, before the managed blocks.
    seeded = original.replace("# BEGIN esup_pod.xapi", "XAPI_ANONYMIZE_ACTOR = False\n# BEGIN esup_pod.xapi", 1)
    write = "cat > %s" % SETTINGS
    try:
        assert frontal.run("printf %%s %s | %s" % (_quote(seeded), write)).rc == 0
        rc, out = lab.run_playbook("playbooks/site.yml", "--tags", "frontal")
        assert rc == 0, out[-3000:]
        assert lab.changed_by_host(out)["frontal"] == 0, out[-3000:]
        assert site_setting("XAPI_ANONYMIZE_ACTOR") == "False"

        rc, out = lab.run_playbook("playbooks/site.yml", "--tags", "frontal", "-e", "frontal_anonymize_actor=true")
        assert rc == 0, out[-3000:]
        assert re.search(r"XAPI_ANONYMIZE_ACTOR is also assigned at line \d+ of %s" % re.escape(SETTINGS), out), out[-3000:]
        assert site_setting("XAPI_ANONYMIZE_ACTOR") == "True"
    finally:
        assert frontal.run("printf %%s %s | %s" % (_quote(original), write)).rc == 0
        rc, out = lab.run_playbook("playbooks/site.yml", "--tags", "frontal")
    assert rc == 0, out[-3000:]
    assert frontal.file(SETTINGS).content_string == original


def _quote(text):
    return "'" + text.replace("'", "'\\''") + "'"
