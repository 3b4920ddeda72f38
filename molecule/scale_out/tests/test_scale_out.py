"""Scale-out: two encoding hosts, two worker nodes each, all consuming the xapi queue.

Run by Molecule's testinfra verifier (scenario scale_out) from the repository root, with
LAB_NAME naming the lab, on top of the inventory molecule/scale_out/inventory/hosts.yml.
"""

import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))

from lablib import lab, pod  # noqa: E402

INVENTORIES = ("inventory/lab", "molecule/scale_out/inventory/hosts.yml")
TASK = "pod.xapi.xapi_tasks.send_xapi_statement_task"
NODES = sorted("%s@%s" % (node, host) for node in ("xapi1", "xapi2") for host in ("encoding", "encoding2"))


def tasks_done():
    """{node: how many statements it has sent}, from celery inspect stats."""
    return {node: stats.get("total", {}).get(TASK, 0) for node, stats in pod.inspect_json("stats").items()}


def test_every_node_of_every_encoding_host_consumes_xapi():
    queues = pod.inspect_json("active_queues")
    assert sorted(queues) == NODES
    for node, answer in queues.items():
        assert [q["name"] for q in answer] == ["xapi"], (node, answer)


@pytest.mark.parametrize("host_name", ["encoding", "encoding2"])
def test_each_host_runs_two_nodes_from_one_init_script(lab_host, host_name):
    host = lab_host(host_name)
    assert host.run("/etc/init.d/celeryd-xapi status").rc == 0
    defaults = host.file("/etc/default/celeryd-xapi").content_string
    assert re.search(r'^CELERYD_NODES="xapi1 xapi2"$', defaults, re.M), defaults


def test_statements_are_shared_by_all_nodes_and_all_reach_the_lrs(lrs):
    before = tasks_done()
    ids = pod.enqueue(200, tag="scale")
    stored = lrs.wait_for(ids, timeout=180)
    assert sorted(stored) == sorted(ids)
    after = tasks_done()
    done = {node: after[node] - before.get(node, 0) for node in after}
    assert sum(done.values()) >= 200, done
    assert sorted(node for node, count in done.items() if count > 0) == NODES, done


def test_verify_counts_the_four_consumers():
    rc, output = lab.run_playbook("playbooks/verify.yml", inventories=INVENTORIES)
    assert rc == 0, output[-3000:]
    assert output.count("4 worker(s) consume queue xapi") == 2, output[-3000:]


def test_the_check_fails_on_the_host_whose_worker_stopped_and_names_it(lab_host):
    encoding2 = lab_host("encoding2")
    assert encoding2.run("systemctl stop celeryd-xapi").rc == 0
    try:
        # Enough consumers cluster-wide (the other host's two): only the per-host check can tell.
        rc, output = lab.run_playbook("playbooks/verify.yml", "-e", "worker_check_min_consumers=1",
                                      "-e", "worker_check_consumer_retries=0", inventories=INVENTORIES)
        assert rc != 0, output[-3000:]
        assert "node(s) xapi1@encoding2, xapi2@encoding2 do not consume queue xapi" in output, output[-3000:]
        recap = dict(re.findall(r"^(encoding2?)\s+: ok=\d+\s+changed=\d+\s+unreachable=\d+\s+failed=(\d+)", output, re.M))
        assert recap == {"encoding": "0", "encoding2": "1"}, output[-2000:]
    finally:
        assert encoding2.run("systemctl start celeryd-xapi").rc == 0
    deadline = time.monotonic() + 60
    while sorted(pod.inspect_json("active_queues")) != NODES:
        assert time.monotonic() < deadline, "encoding2's nodes did not come back within 60 s"
        time.sleep(1)
