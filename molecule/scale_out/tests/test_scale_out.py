"""Scale-out: two encoding hosts, two worker nodes each, all consuming the xapi queue.

Run by Molecule's testinfra verifier (scenario scale_out) from the repository root, with
LAB_NAME naming the lab, on top of the inventory molecule/scale_out/inventory/hosts.yml.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))

from lablib import lab, pod  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
INVENTORIES = ["-i", "inventory/lab", "-i", "molecule/scale_out/inventory/hosts.yml"]
POD_DIR = "/usr/local/django_projects/podv4"
NODES = sorted("%s@%s" % (node, host) for node in ("xapi1", "xapi2") for host in ("encoding", "encoding2"))
CELERY = ("cd %s && su pod -s /bin/sh -c '/home/pod/.virtualenvs/django_pod4/bin/celery "
          "-A pod.xapi.xapi_tasks inspect %s --timeout 5 --json'")


def inspect(what):
    """celery inspect WHAT, from the frontal (Pod's app, through the broker): {node: answer}."""
    out = lab.host("frontal").run(CELERY % (POD_DIR, what))
    assert out.rc == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_node_of_every_encoding_host_consumes_xapi():
    queues = inspect("active_queues")
    assert sorted(queues) == NODES
    for node, answer in queues.items():
        assert [q["name"] for q in answer] == ["xapi"], (node, answer)


@pytest.mark.parametrize("host_name", ["encoding", "encoding2"])
def test_each_host_runs_two_nodes_from_one_init_script(lab_host, host_name):
    host = lab_host(host_name)
    assert host.run("/etc/init.d/celeryd-xapi status").rc == 0
    defaults = host.file("/etc/default/celeryd-xapi").content_string
    assert re.search(r"^CELERYD_NODES='?xapi1 xapi2'?$", defaults, re.M), defaults


def test_statements_are_shared_by_all_nodes_and_all_reach_the_lrs(lrs):
    before = {node: stats.get("total", {}).get("pod.xapi.xapi_tasks.send_xapi_statement_task", 0)
              for node, stats in inspect("stats").items()}
    ids = pod.enqueue(200, tag="scale")
    stored = lrs.wait_for(ids, timeout=180)
    assert sorted(stored) == sorted(ids)
    after = {node: stats.get("total", {}).get("pod.xapi.xapi_tasks.send_xapi_statement_task", 0)
             for node, stats in inspect("stats").items()}
    done = {node: after[node] - before.get(node, 0) for node in after}
    assert sum(done.values()) >= 200, done
    assert sorted(node for node, count in done.items() if count > 0) == NODES, done


def test_verify_counts_the_four_consumers():
    env = dict(os.environ, LAB_NAME=lab.lab_name(), ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    env.pop("ANSIBLE_LOG_PATH", None)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), *INVENTORIES, "playbooks/verify.yml"],
        cwd=str(REPO), env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    assert done.returncode == 0, done.stdout[-3000:]
    assert done.stdout.count("4 worker(s) consume queue xapi") == 2, done.stdout[-3000:]
