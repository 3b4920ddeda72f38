"""Benchmark: a flood of statements through Pod's task until the broker is at its memory limit.

On an empty Ralph store (tests/lablib/faults.py), the broker's maxmemory is lowered for the run to
what it holds plus ROOM MB (and restored at the end). SENDERS processes on the frontal then enqueue
COUNT statements in all through Pod's own task (send_xapi_statement_task.delay), as fast as they
can, faster than the LRS stores them, while the worker runs. An enqueue that the broker refuses is
counted as refused, by kind: the broker's reserve (roles/broker: NOPERM from broker_reserve_high of
maxmemory on) or Redis's own out-of-memory error (the reserve came too late); the senders go on. Meanwhile:
- the broker is sampled (used memory against maxmemory, the queue's length) every half second;
- the monitoring command (/usr/local/bin/<service>-check, with the role's thresholds) runs again and
  again on the first encoding host; its broker_memory perfdata tells when it warned.
Then it waits (bounded) until the queue and the nodes' unacknowledged messages are empty and the LRS
holds every accepted statement. It prints: accepted, refused (with the first refusal's text),
stored, the time from the flood's end to an empty queue and to every accepted statement stored,
whether the monitoring warned before the first refusal, whether the queue went down while the
broker was in its reserve (over --reserve-high percent of maxmemory), the nodes' restarts and state, and the machine's load.

Run it on a converged lab, from the repository root:
    LAB_NAME=xapi-lab .venv/bin/python tests/bench/flood.py [--count 8000] [--senders 2] [--room 8]
It exits 1 when an accepted statement is not stored in time, when an enqueue met the out-of-memory
error, or when no enqueue was refused (the broker never filled: raise --count or lower --room).
"""

import argparse
import datetime
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lablib import faults, lab  # noqa: E402

CHECK = "/usr/local/bin/%s-check" % faults.WORKER_SERVICE
NODE_UNIT = "%s@xapi.service" % faults.WORKER_SERVICE


def memory(lab_):
    """(used_memory, maxmemory) of the broker."""
    fields = dict(line.split(":", 1) for line in lab_.broker("INFO memory").splitlines() if ":" in line)
    return int(fields["used_memory"]), int(fields["maxmemory"])


class Poll(threading.Thread):
    """Calls PROBE again and again (every INTERVAL s at most) until stop(); keeps (time, result)."""

    def __init__(self, probe, interval):
        super().__init__(daemon=True)
        self.probe, self.interval, self.samples = probe, interval, []
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            started = time.time()
            try:
                result = self.probe()
            except Exception as error:  # pylint: disable=broad-except
                result = error
            # The time the answer was known: a warning counts from then.
            self.samples.append((time.time(), result))
            self.stopped.wait(max(0.0, self.interval - (time.time() - started)))

    def stop(self):
        self.stopped.set()
        self.join(timeout=60)


def broker_sample(lab_):
    """(used memory, maxmemory, the queue's length), in one command on the frontal: the poll adds little load."""
    out = lab_.broker("INFO memory && %s -p %d -n %d LLEN xapi" % (lab_.broker_cli, lab_.broker_port, lab_.broker_db))
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return int(fields["used_memory"]), int(fields["maxmemory"]), int(out.split()[-1])


def check_sample(host):
    """The monitoring command's output, and its broker_memory perfdata: (value, warning) in %, or None."""
    out = lab.host(host).run(CHECK).stdout.strip()
    found = re.search(r"broker_memory=([\d.]+)%;([\d.]+);([\d.]+)", out)
    return out, ((float(found.group(1)), float(found.group(2))) if found else None)


def nrestarts(host):
    return int(faults.run(host, "systemctl show -p NRestarts --value %s" % NODE_UNIT).stdout.strip() or 0)


def queued_and_held(lab_, nodes):
    """(the queue's length, what the nodes hold: unacknowledged and in flight), in one command on the frontal."""
    cli = "%s -p %d -n %d" % (lab_.broker_cli, lab_.broker_port, lab_.broker_db)
    script = "; ".join(["%s LLEN xapi" % cli] + ["%s HLEN unacked:%s; %s LLEN inflight:%s:xapi" % (cli, node, cli, node)
                                                 for node in nodes])
    counts = [int(word) for word in faults.run("frontal", script).stdout.split()]
    return counts[0], sum(counts[1:])


def drain(lab_, nodes, timeout, stall):
    """Wait until the queue and the nodes' unacknowledged messages are empty: (the time then, None); or, when the
    queue's length has not changed for STALL s, (None, (queued, held, used, maxmemory) then)."""
    deadline, last, moved = time.monotonic() + timeout, None, time.monotonic()
    while time.monotonic() < deadline:
        queued, held = queued_and_held(lab_, nodes)
        if queued + held == 0:
            return time.time(), None
        if queued != last:
            last, moved = queued, time.monotonic()
        elif time.monotonic() - moved >= stall:
            return None, (queued, held) + memory(lab_)
        time.sleep(2)  # polling interval of a bounded wait for the queue to be empty
    return None, (last, None) + memory(lab_)


def stored(lab_, since, accepted):
    """The accepted ids that the LRS holds."""
    return {s["id"] for s in lab_.lrs.statements(since=since)} & set(accepted)


def loads(averages):
    return " ".join("%.2f" % x for x in averages)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--count", type=int, default=8000, help="statements enqueued in all (default %(default)s)")
    parser.add_argument("--senders", type=int, default=2, help="enqueuing processes on the frontal (default %(default)s)")
    parser.add_argument("--room", type=float, default=8.0,
                        help="MB of maxmemory above what the broker holds at the start (default %(default)s)")
    parser.add_argument("--timeout", type=int, default=900, help="longest wait for the drain, s (default %(default)s)")
    parser.add_argument("--check-every", type=float, default=5.0,
                        help="s between the starts of two runs of the monitoring command (default %(default)s)")
    parser.add_argument("--stall", type=int, default=60,
                        help="s without any change of the queue's length after which the drain counts as stalled; the "
                             "broker's maxmemory is then restored, as an admin would, and the drain timed again "
                             "(default %(default)s)")
    parser.add_argument("--reserve-high", type=float, default=90.0,
                        help="the broker's broker_reserve_high, percent (default %(default)s)")
    args = parser.parse_args(argv)

    lab_ = faults.Lab()
    host = lab_.first
    lab_.fresh_store()
    lab_.nodes_active()
    load_before = os.getloadavg()
    others = subprocess.run(["podman", "ps", "--format", "{{.Names}}"], text=True, stdout=subprocess.PIPE,
                            check=False).stdout.split()
    others = [name for name in others if not name.startswith(lab.lab_name() + "-")]
    restarts_before = nrestarts(host)
    limit = lab_.broker("CONFIG GET maxmemory").split()[1]
    used = memory(lab_)[0]
    lowered = used + int(args.room * 1024 * 1024)
    print("lab %s: %d statement(s) from %d sender(s); broker maxmemory %s -> %d (%d used + %.1f MB); load %s; "
          "%d other container(s) running" % (lab.lab_name(), args.count, args.senders, limit, lowered, used, args.room,
                                             loads(load_before), len(others)), flush=True)
    broker = Poll(lambda: broker_sample(lab_), 1.0)
    check = Poll(lambda: check_sample(host), args.check_every)
    marks = lab_.log_marks()
    lab_.broker("CONFIG SET maxmemory %d" % lowered)
    try:
        broker.start()
        check.start()
        since = datetime.datetime.now(datetime.timezone.utc).isoformat()
        flood_start = time.time()
        share = [args.count // args.senders + (1 if n < args.count % args.senders else 0) for n in range(args.senders)]
        batches = [faults.Batch(n, 0, "flood-%d" % i) for i, n in enumerate(share)]
        records = [record for batch in batches for record in batch.result(timeout=args.timeout)]
        flood_end = time.time()
        load_flood = os.getloadavg()
        accepted = {sid: when for sid, when, error in records if error is None}
        refused = sorted((when, error) for _sid, when, error in records if error is not None)
        print("flood: %d enqueue(s) in %.1f s (%.0f/s): %d accepted, %d refused%s" % (
            len(records), flood_end - flood_start, len(records) / (flood_end - flood_start), len(accepted), len(refused),
            " (first: %s)" % refused[0][1][:120] if refused else ""), flush=True)

        nodes = [lab_.node_of(h, NODE_UNIT) for h in lab_.encoding]
        empty_at, stalled = drain(lab_, nodes, args.timeout, args.stall)
        stored_by_then = stored(lab_, since, accepted)
        remedy_at = remedy_empty_at = None
        # The polls cost the shared CPUs: they stop once the state at the limit is known.
        check.stop()
        broker.stop()
        if stalled:
            # The admin's remedy (docs/delivery.md): room for the broker again; then the nodes drain it.
            remedy_at = time.time()
            lab_.broker("CONFIG SET maxmemory %s" % limit)
            remedy_empty_at = drain(lab_, nodes, args.timeout, args.timeout)[0]
        check.stop()
        broker.stop()
        deadline = time.monotonic() + args.timeout
        stored_ids = stored(lab_, since, accepted)
        while len(stored_ids) < len(accepted) and time.monotonic() < deadline:
            time.sleep(3)  # polling interval of a bounded wait for the LRS to hold them
            stored_ids = stored(lab_, since, accepted)
        all_stored_at = time.time()
    finally:
        lab_.broker("CONFIG SET maxmemory %s" % limit)
        check.stop()
        broker.stop()
    load_after = os.getloadavg()
    restarts = nrestarts(host) - restarts_before
    active = faults.run(host, "systemctl is-active %s" % NODE_UNIT, check=False).stdout.strip()
    deaths = []
    for name, offset in marks.get(host, {}).items():
        deaths += faults.run(host, "tail -c +%d %s | grep -F 'Unrecoverable error' || true" % (offset + 1, shlex.quote(name)),
                             check=False).stdout.splitlines()

    samples = [(t, s) for t, s in broker.samples if isinstance(s, tuple)]
    full = [(t, llen) for t, (used, lim, llen) in samples if used >= lim * args.reserve_high / 100]
    peak = max((used / lim for _t, (used, lim, _l) in samples), default=0)
    # Did the queue go down while the broker was at its limit (between two samples both at the limit)?
    drained_at_limit = sum(max(0, a[1] - b[1]) for a, b in zip(full, full[1:]) if b[0] - a[0] < 2)
    first_refusal = refused[0][0] if refused else None
    out_of_memory = [error for _when, error in refused if "maxmemory" in error]
    warned = [(t, result[1][0]) for t, result in check.samples
              if isinstance(result, tuple) and result[1] and result[1][0] >= result[1][1]]
    first_warn = warned[0] if warned else None
    checks_ran = len([1 for _t, s in check.samples if isinstance(s, tuple)])
    statuses = {}
    for t, result in check.samples:
        if isinstance(result, tuple):
            statuses.setdefault(result[0].split(" - ")[0], (t, result[0]))

    print()
    print("accepted %d | refused %d | stored %d of the accepted (%d when the drain ended or stalled)%s" % (
        len(accepted), len(refused), len(stored_ids), len(stored_by_then),
        ", the last %.0f s after the flood" % (all_stored_at - flood_end) if len(stored_ids) == len(accepted) else ""))
    if empty_at:
        print("the queue (and the nodes' unacknowledged messages) empty %.1f s after the flood" % (empty_at - flood_end))
    else:
        print("the drain STALLED at the limit: no change of the queue for %d s, %s queued, %s held, broker %d of %d "
              "bytes, %.0f s after the flood" % ((args.stall,) + stalled + (remedy_at - flood_end,)))
        print("maxmemory restored then (the admin's remedy): the queue empty %s later" % (
            "%.1f s (%.0f statements/s)" % (remedy_empty_at - remedy_at, stalled[0] / (remedy_empty_at - remedy_at))
            if remedy_empty_at else "NOT within %d s" % args.timeout))
    print("refused by the reserve (NOPERM): %d; by Redis's out-of-memory error: %d" % (
        sum(1 for _when, error in refused if faults.RESERVE_REFUSAL in error), len(out_of_memory)))
    print("broker: peak %.1f %% of maxmemory; %d sample(s) over %g %% (the reserve); the queue went down by %d between "
          "those samples" % (100 * peak, len(full), args.reserve_high, drained_at_limit))
    if first_refusal:
        print("first refusal %.1f s into the flood; refused enqueues from %.1f to %.1f s" % (
            first_refusal - flood_start, refused[0][0] - flood_start, refused[-1][0] - flood_start))
    print("monitoring: %d check(s) ran; first broker-memory warning %s%s" % (
        checks_ran, ("%.1f s into the flood (%.0f %%)" % (first_warn[0] - flood_start, first_warn[1])) if first_warn else "none",
        (", %s the first refusal" % ("before" if first_warn[0] < first_refusal else "AFTER"))
        if first_warn and first_refusal else ""))
    for status, (t, line) in sorted(statuses.items(), key=lambda item: item[1][0]):
        print("  first %s %.1f s into the flood: %s" % (status, t - flood_start, line[:300]))
    print("node %s: %s, %d restart(s) during the run; %d 'Unrecoverable error' line(s) in its log%s" % (
        NODE_UNIT, active, restarts, len(deaths), (", the first: " + deaths[0][:300]) if deaths else ""))
    print("load average (1/5/15 min): before %s, end of flood %s, after %s; other containers running: %d" % (
        loads(load_before), loads(load_flood), loads(load_after), len(others)))
    return 0 if refused and not out_of_memory and len(stored_ids) == len(accepted) else 1


if __name__ == "__main__":
    sys.exit(main())
