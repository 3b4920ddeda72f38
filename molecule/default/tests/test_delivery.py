"""Delivery hardening, on the converged lab: no statement is lost when the LRS hangs or goes away,
or when the worker node that holds it is killed (the worker role's defaults); the node takes each
message with BLMOVE, never kombu's BRPOP. test_faults.py covers the other faults.

The LRS is replaced for a while by a listener that accepts connections and never answers (a hung
LRS), then Ralph comes back; every step waits for a real condition, with a bound.
"""

import json
import re
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))

from lablib import faults, lab, pod  # noqa: E402

NODE_UNIT = "celeryd-xapi@xapi.service"


def active_task(statement_id):
    """(task id, worker_pid) of the active task that carries the statement, or None."""
    out = pod.inspect("active", timeout=3, json_output=True)
    if out.rc != 0:
        return None
    for tasks in json.loads(out.stdout.strip().splitlines()[-1]).values():
        for task in tasks or []:
            if statement_id in json.dumps(task.get("args")):
                return task["id"], task["worker_pid"]
    return None


def worker_log(marks, *texts):
    """Whether one line of the worker's logs, written since MARKS (faults.Lab.log_marks), holds every one of TEXTS."""
    encoding = lab.host("encoding")
    for name in encoding.run("ls /var/log/celeryd-xapi/*.log").stdout.split():
        command = "tail -c +%d %s" % (marks.get("encoding", {}).get(name, 0) + 1, shlex.quote(name))
        command += "".join(" | grep -F %s" % shlex.quote(text) for text in texts)
        if encoding.run(command + " >/dev/null").rc == 0:
            return True
    return False


def test_a_statement_survives_a_hung_lrs_a_killed_worker_and_an_outage(lrs):
    encoding, broker = lab.host("encoding"), faults.Lab()
    node = broker.node_of("encoding", NODE_UNIT)
    broker.replace_lrs(faults.HANG, "lab-hung-lrs")
    try:
        statement_id = pod.enqueue(1, tag="outage")[0]

        # The task hangs in requests.post (Pod sets no timeout): kill the node that runs it (the threads
        # pool, the default, runs tasks in the node's main process), while the broker holds its message
        # as the node's unacknowledged.
        task_id, pid = lab.until("the task runs", lambda: active_task(statement_id), 60)
        assert str(pid) == encoding.check_output("systemctl show -p MainPID --value %s" % NODE_UNIT)
        assert task_id in broker.broker("HVALS unacked:%s" % node), "the node does not hold the statement"
        cursor, marks = broker.journal_cursor("encoding"), broker.log_marks()
        assert encoding.run("kill -9 %s" % pid).rc == 0
        # Its unit gives the message back before the node consumes again, and the new node runs it.
        restored = lab.until("the node's unit restores what it held", lambda: re.search(
            r"^restored (\d+) unacknowledged", broker.journal_since("encoding", NODE_UNIT, cursor), re.M), 60)
        assert int(restored.group(1)) >= 1, restored.group(0)
        lab.until("the task is redelivered to the restarted node",
                  lambda: (active_task(statement_id) or (None, pid))[1] != pid, 60)
        # worker_lrs_timeout (20 s by default, below the 30 s soft time limit): the hung request is
        # abandoned, and this task is retried for it.
        lab.until("the request's timeout retries this task",
                  lambda: worker_log(marks, "[%s] retry: Retry in" % task_id, "ReadTimeout"), 90)
    finally:
        broker.restore_lrs("lab-hung-lrs")
    # Stored once the LRS is back (wait_for fails naming it otherwise).
    lrs.wait_for([statement_id], timeout=300, interval=1)


def commandstats(broker):
    """{command: calls} of the broker since it started (INFO commandstats)."""
    stats = broker.broker("INFO commandstats")
    return {name: int(calls) for name, calls in re.findall(r"^cmdstat_([\w|]+):calls=(\d+)", stats, re.M)}


def test_the_node_takes_each_statement_with_blmove_never_brpop(lrs):
    """kombu's own Redis transport takes messages with BRPOP, which loses the replies a killed node had not
    read yet; the worker's transport (xapi_delivery.Transport) moves each one with BLMOVE instead."""
    broker, count = faults.Lab(), 40
    before = commandstats(broker)
    lrs.wait_for(pod.enqueue(count, tag="consume-path"), timeout=120)
    after = commandstats(broker)
    calls = {name: after.get(name, 0) - before.get(name, 0) for name in ("blmove", "brpop")}
    # Nothing but the node consumes from the broker meanwhile: each statement took one BLMOVE (a
    # BLMOVE that times out on an empty queue, every second, counts too), and no BRPOP ran.
    assert calls["blmove"] >= count and calls["brpop"] == 0, "calls while %d statements flowed: %s" % (count, calls)
    # The node's connection from the encoding host waits for the next message in BLMOVE.
    address = lab.host("frontal").check_output("getent ahostsv4 encoding").split()[0]
    clients = [line for line in broker.broker("CLIENT LIST").splitlines() if " addr=%s:" % address in line]
    assert any(" cmd=blmove " in line and re.search(r" flags=\w*b", line) for line in clients), clients
    assert not any(" cmd=brpop " in line for line in clients), clients
