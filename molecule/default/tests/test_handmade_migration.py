"""The move from upstream's hand-made setup (the seed), in one site.yml run, on the converged lab.

The frontal is put back to what the guide leaves (its XAPI_* lines, no managed block), the guide's node runs on
the encoding host, and the site's Redis database 6 holds statements enqueued through Pod's own task, some of
them left unacknowledged (tests/lablib/handmade.py). One site.yml run must deliver every one of them to the
LRS, empty the seed's queue, leave everything else in the site's Redis as it was, take the LRS's credentials
off the frontal and keep the site's XAPI_ANONYMIZE_ACTOR. The lab gets its converged settings back at the end.
"""

import json
import sys
from urllib.parse import urlsplit

import pytest

from lablib import handmade, lab, pod

sys.path.insert(0, str(lab.REPO_ROOT))
from ansible_collections.esup_pod.xapi.plugins.module_utils._pod_settings import remove_text  # noqa: E402

pytestmark = pytest.mark.once

SETTINGS = pod.POD_DIR + "/pod/custom/settings_local.py"
STATEMENTS, HELD = 40, 5
# The keys of kombu's queue xapi in the seed's database (the queue, its priority lists, the unacknowledged).
QUEUE_KEYS = {"xapi", "xapi\x06\x163", "xapi\x06\x166", "xapi\x06\x169"}
UNACKED = ("unacked", "unacked_index")
# What the site's running web service writes on every request (tests/roles/lab_pod_site): its cache's hit
# counter and its sessions, which also expire.
SITE_TRAFFIC = {3: "lab:web:hits", 4: "lab:session:"}


def new_broker_port():
    """The port of the broker that Pod's frontal enqueues into (its URL holds the password: not shown)."""
    return urlsplit(pod.site_setting("XAPI_CELERY_BROKER_URL")).port


def routed_to_xapi(value):
    return json.loads(value)[2] == "xapi"


def rest_of(dump):
    """The site's Redis without the queue xapi of database 6, and with only its other unacknowledged entries."""
    rest = {db: {key: value for key, value in keys.items()
                 if not (db == 6 and key in QUEUE_KEYS | set(UNACKED)) and not key.startswith(SITE_TRAFFIC.get(db, "\0"))}
            for db, keys in dump.items()}
    unacked = {tag: value for tag, value in dump.get(6, {}).get("unacked", ["hash", {}])[1].items()
               if not routed_to_xapi(value)}
    # The guide's node removes its own remote-control binding when the run stops it.
    pidbox = rest.get(6, {}).get("_kombu.binding.celery.pidbox")
    if pidbox:
        members = [member for member in pidbox[1] if handmade.seed_node_binding() not in member]
        rest[6]["_kombu.binding.celery.pidbox"] = [pidbox[0], members]
        if not members:
            del rest[6]["_kombu.binding.celery.pidbox"]
    rest.setdefault(6, {})["unacked entries of other queues"] = sorted(unacked)
    rest[6]["unacked_index"] = sorted(tag for tag in dump.get(6, {}).get("unacked_index", ["", []])[1] if tag in unacked)
    return {db: keys for db, keys in rest.items() if keys}


@pytest.fixture
def handmade_site():
    """The frontal's settings as the guide leaves them; the converged ones, and Pod's web service on them, after."""
    frontal = lab.host("frontal")
    converged = frontal.file(SETTINGS).content
    site = remove_text(converged.decode("utf-8"), "frontal")
    assert "esup_pod.xapi managed settings" not in site
    planted = site + "\n# xAPI, as upstream's remote-xapi guide sets it up\n" + handmade.guide_lines(
        lab.var("encoding", "xapi_lrs_url"), lab.var("encoding", "xapi_lrs_login"), lab.var("encoding", "xapi_lrs_password"))
    handmade.write_file("frontal", SETTINGS, planted.encode("utf-8"))
    try:
        yield planted
    finally:
        handmade.write_file("frontal", SETTINGS, converged)
        assert frontal.run("systemctl restart uwsgi-pod").rc == 0
        handmade.remove_seed_worker()
        # What a failed run left of the seed's queue would count in the next run of this test.
        frontal.run("redis-cli -n 6 DEL xapi unacked unacked_index")


def test_one_run_moves_the_seeds_statements_and_keeps_the_sites_choices(handmade_site, lrs):
    frontal = lab.host("frontal")
    ids = pod.enqueue(STATEMENTS, tag="seed-backlog")  # Pod's own task, with the guide's broker URL
    held = handmade.hold_unacknowledged(HELD)
    handmade.start_seed_worker()
    lab.until("the guide's node listens", lambda: any(
        handmade.seed_node_binding() in member for member in handmade.dump()[6].get("_kombu.binding.celery.pidbox", ["set", []])[1]), 60)
    before = handmade.dump()
    seed_queue = before[6]["xapi"][1]
    seed_unacked = [value for value in before[6]["unacked"][1].values() if routed_to_xapi(value)]
    assert (len(seed_queue), len(seed_unacked)) == (STATEMENTS - HELD, HELD)
    assert set(held) < set(ids)
    password = lab.var("encoding", "xapi_lrs_password")

    # Check mode counts, shows the credentials' removal without their values, and changes nothing.
    # The frontal's plays only (the move is the frontal's): the suite's time is counted.
    rc, output = lab.run_playbook("playbooks/site.yml", "--check", "--diff", "--limit", "frontal")
    assert rc == 0, output[-3000:]
    assert "would move %d statements (%d queued, %d unacknowledged)" % (STATEMENTS, STATEMENTS - HELD, HELD) in output
    assert "XAPI_LRS_PWD = '********'" in output and "XAPI_LRS_LOGIN = '********'" in output
    assert password not in output
    assert rest_of(handmade.dump()) == rest_of(before)
    assert handmade.dump()[6] == before[6]
    assert frontal.file(SETTINGS).content_string == handmade_site

    rc, output = lab.run_playbook("playbooks/site.yml")
    assert rc == 0, output[-3000:]
    after = handmade.dump()
    assert not QUEUE_KEYS & set(after.get(6, {}))
    assert not [v for v in after.get(6, {}).get("unacked", ["hash", {}])[1].values() if routed_to_xapi(v)]
    assert rest_of(after) == rest_of(before)
    stored = lrs.wait_for(ids, timeout=120)
    assert sorted(stored) == sorted(ids)
    print("db 6 before: %d queued + %d unacknowledged; stored by the LRS after: %d of %d; db 6 after: %d queued + %d "
          "unacknowledged" % (len(seed_queue), len(seed_unacked), len(set(stored) & set(ids)), len(ids),
                              len(after.get(6, {}).get("xapi", ["list", []])[1]),
                              len([v for v in after.get(6, {}).get("unacked", ["hash", {}])[1].values() if routed_to_xapi(v)])))

    assert not handmade.seed_worker_pids()
    assert "moved %d statements (%d queued, %d unacknowledged) from %s to the new broker" % (
        STATEMENTS, STATEMENTS - HELD, HELD, handmade.SEED_BROKER) in output, output[-3000:]
    assert password not in output
    print(*(line.strip() for line in output.splitlines() if "statements (" in line), sep="\n")

    # The site's own lines are kept byte for byte, but for the two credentials; the actor stays as the site chose.
    text = frontal.file(SETTINGS).content_string
    site_part = text[:text.index("# BEGIN esup_pod.xapi managed settings (frontal)")]
    kept = [line for line in handmade_site.splitlines(True) if not line.startswith(("XAPI_LRS_LOGIN =", "XAPI_LRS_PWD ="))]
    assert site_part == "".join(kept) + "\n"
    # The login is matched as the site's value, quoted: the broker URL's CA path may hold the same letters.
    login = lab.var("encoding", "xapi_lrs_login")
    assert not [q for q in "'\"" if q + login + q in text] and password not in text
    assert not [line for line in text.splitlines() if line.startswith(("XAPI_LRS_LOGIN", "XAPI_LRS_PWD"))]
    assert pod.site_setting("XAPI_ANONYMIZE_ACTOR") == "False"
    assert new_broker_port() == 6380

    # Again: nothing left to move, nothing to change (the encoding host's side is Molecule's idempotence step).
    rc, output = lab.run_playbook("playbooks/site.yml", "--limit", "frontal")
    assert rc == 0, output[-3000:]
    assert lab.changed_by_host(output) == {"frontal": 0}, output[-3000:]
