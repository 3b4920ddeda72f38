"""Zero statements lost: send statements through Pod's task while each fault happens, print one table.

Run it on a converged lab (scripts/lab.sh), from the repository root, with the project's virtualenv:

    LAB_NAME=xapi-lab .venv/bin/python tests/faults/run.py [--count 500] [--outage 60] [--spread 10]
                                                           [FAULT ...]

FAULT is a number (1-14) or a name (worker_killed, host_rebooted, broker_restarted, lrs_refusing,
lrs_hanging, lrs_5xx, lrs_401, lrs_refuses_one, network_cut, broker_full, lrs_redirects, lrs_cert_untrusted,
lrs_cert_renewed, lrs_413); all fourteen by default. The rule: stored == sent for every fault, but for the
statement faults 8 and 14 make the LRS refuse (each must be in the dead letters); and no enqueue
refused, but those fault 10's full broker refuses with its out-of-memory answer (never accepted, so never
sent). Exits 1 when a fault breaks it. Ralph's store is emptied before each fault (its fs backend slows down
as it grows). What each fault does: tests/lablib/faults.py.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lablib import faults  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--count", type=int, default=500, help="statements per fault (default: %(default)s)")
    parser.add_argument("--spread", type=float, default=10.0, help="seconds over which a batch is enqueued")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds an LRS or network fault lasts")
    parser.add_argument("faults", nargs="*", help="numbers or names (default: all)")
    args = parser.parse_args()
    names = list(faults.by_name())
    chosen = [names[int(f) - 1] if f.isdigit() else f for f in args.faults] or names
    unknown = [f for f in chosen if f not in names]
    if unknown:
        parser.error("unknown fault(s) %s; choose from 1-%d or %s" % (", ".join(unknown), len(names), ", ".join(names)))
    lab_ = faults.Lab(outage=args.outage)
    rows = []
    for name in chosen:
        started = time.monotonic()
        print("fault %d/%d: %s ..." % (len(rows) + 1, len(chosen), name), flush=True)
        lab_.fresh_store()
        row = faults.by_name()[name](lab_, args.count, args.spread)
        rows.append(row)
        print("  %s in %.0f s" % ("ok" if row.ok else "FAILED", time.monotonic() - started), flush=True)
    print()
    print(faults.table(rows))
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
