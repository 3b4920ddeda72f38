"""Benchmark: how fast the deployed pipeline delivers statements to the LRS.

It enqueues N statements on the lab's frontal exactly as Pod's view does, then waits until the
LRS has stored every one of them (found by id), and prints the delivery rate. For comparison it
first measures what the LRS takes on its own: N statements POSTed one by one from the encoding
host, a new connection each, as Pod's task posts them. Run it on a
converged lab, from the repository root, with the project's virtualenv:

    LAB_NAME=xapi-lab .venv/bin/python tests/bench/delivery_rate.py [N]
"""

import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lablib import lab, pod  # noqa: E402
from lablib.lrs import LRS  # noqa: E402


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    lrs = LRS(via="lrs")
    direct = LRS(via="encoding")
    posts = [{"method": "POST", "url": direct.url, "login": direct.login, "password": direct.password,
              "body": {"id": str(uuid.uuid4()), "actor": {"mbox": "mailto:bench-%d@example.org" % number, "name": "bench"},
                       "verb": {"id": "https://w3id.org/xapi/video/verbs/played"},
                       "object": {"objectType": "Activity", "id": "https://pod.example.org/video/bench/"}}}
             for number in range(count)]
    start = time.monotonic()
    answers = direct.requests(posts)
    alone = time.monotonic() - start
    assert all(answer[0] == 200 for answer in answers), answers[:3]
    print("lab %s: the LRS alone took %d statements in %.2f s: %.1f statements/s"
          % (lab.lab_name(), count, alone, count / alone))
    # The end is read from the LRS's own "stored" times (the containers share this host's clock),
    # so the polling below, kept slow to load the machine little, does not count.
    start = time.time()
    ids = pod.enqueue(count, tag="bench")
    enqueued = time.time() - start
    stored = lrs.wait_for(ids, timeout=max(120.0, count / 2.0), interval=2)
    last = max(datetime.fromisoformat(s["stored"]).timestamp() for s in stored.values())
    total = last - start
    print("lab %s: %d statements enqueued in %.2f s, the last stored by the LRS %.2f s after the first "
          "was enqueued: %.1f statements/s" % (lab.lab_name(), count, enqueued, total, count / total))


if __name__ == "__main__":
    main()
