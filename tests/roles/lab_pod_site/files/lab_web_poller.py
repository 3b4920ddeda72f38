"""Test lab only: polls the Pod web stand-in, as its users do, for as long as it runs.

Counts the answers (200 is ok; anything else, or no answer, failed) and keeps the counts in a JSON
file that the tests read: {"ok": N, "failed": M, "last_failure": "..."}.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

URL, STATE = sys.argv[1], sys.argv[2]


def main():
    counts = {"ok": 0, "failed": 0, "last_failure": None, "started": time.time()}
    while True:
        try:
            with urllib.request.urlopen(URL, timeout=5) as answer:
                answer.read()
                counts["ok"] += 1
        except (OSError, urllib.error.URLError) as exc:
            counts["failed"] += 1
            counts["last_failure"] = "%s: %s" % (time.strftime("%H:%M:%S"), exc)
        tmp = STATE + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(dict(counts, updated=time.time()), handle)
        os.replace(tmp, STATE)
        time.sleep(0.2)


if __name__ == "__main__":
    main()
