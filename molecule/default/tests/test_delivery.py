"""Delivery hardening, on the converged lab: no statement is lost when the LRS hangs or goes away,
or when the worker process that holds it is killed (the worker role's defaults). molecule/faults
covers the other faults.

The LRS is replaced for a while by a listener that accepts connections and never answers (a hung
LRS), then Ralph comes back; every step waits for a real condition, with a bound.
"""

import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))

from lablib import faults, lab, pod  # noqa: E402


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


def worker_log(task_id, text):
    """Whether a line of the worker's logs names the task and says TEXT."""
    return lab.host("encoding").run(
        "grep -h -F %s /var/log/celeryd-xapi/*.log | grep -q -F %s" % (shlex.quote(task_id), shlex.quote(text))).rc == 0


def test_a_statement_survives_a_hung_lrs_a_killed_worker_and_an_outage(lrs):
    encoding, stand_in = lab.host("encoding"), faults.Lab()
    stand_in.replace_lrs(faults.HANG, "lab-hung-lrs")
    try:
        statement_id = pod.enqueue(1, tag="outage")[0]

        # The task hangs in requests.post (Pod sets no timeout): kill the process that runs it.
        task_id, pid = lab.until("the task runs", lambda: active_task(statement_id), 60)
        assert encoding.run("kill -9 %s" % pid).rc == 0
        # The statement goes back to the queue and runs again: the node restarts and its unit restores
        # it (threads pool, the default), or task_reject_on_worker_lost (prefork).
        lab.until("the task is redelivered to another worker process",
                  lambda: (active_task(statement_id) or (None, pid))[1] != pid, 60)
        # worker_lrs_timeout (20 s by default, below the 30 s soft time limit): the hung request is
        # abandoned and retried.
        lab.until("the request's timeout ends the hung request", lambda: worker_log(task_id, "ReadTimeout"), 90)
    finally:
        stand_in.restore_lrs("lab-hung-lrs")
    # Retried with backoff while the LRS was away, then stored once it is back.
    assert worker_log(task_id, "Retry in")
    stored = lrs.wait_for([statement_id], timeout=300, interval=1)
    assert statement_id in stored
