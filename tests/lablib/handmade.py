"""A site set up by hand from upstream's remote-xapi guide (the seed), planted on the lab.

- the frontal's settings end with the guide's XAPI_* lines: the LRS's login and password, the actor not
  anonymized, and the broker in the site's own Redis, database 6 (SEED_BROKER), without a password;
- the encoding host runs the guide's node worker-xapi (celery multi, outside any unit, from the site's Pod),
  which, like the guide's, consumes no xapi queue;
- the site's Redis database 6 holds statements enqueued through Pod's own task, and statements that a
  consumer which acknowledges late took and never acknowledged: it died (os._exit) holding them.

dump() records every key of every database of the site's Redis, for a before/after comparison.
"""

import json
from pathlib import Path

from . import lab, pod

SITE_REDIS_PORT = 6379
SEED_BROKER = "redis://frontal:%d/6" % SITE_REDIS_PORT
SEED_NODE = "worker-xapi"
# Where the guide's node keeps its pid and log (outside every tree the lab's snapshots record).
SEED_PIDFILE = "/tmp/lab-seed-worker-xapi.pid"
SEED_LOGFILE = "/tmp/lab-seed-worker-xapi.log"

# The lab hosts have no Redis client library: the collection's own RESP client (standard library only).
_RESP = (Path(__file__).resolve().parents[2] / "plugins" / "module_utils" / "_resp.py").read_text(encoding="utf-8")


def guide_lines(lrs_url, login, password):
    """The XAPI_* lines that the guide adds to the frontal's settings_local.py."""
    return "".join("%s = %r\n" % item for item in (
        ("USE_XAPI", True), ("USE_XAPI_VIDEO", True), ("XAPI_ANONYMIZE_ACTOR", False),
        ("XAPI_LRS_URL", lrs_url), ("XAPI_LRS_LOGIN", login), ("XAPI_LRS_PWD", password),
        ("XAPI_CELERY_BROKER_URL", SEED_BROKER)))


def write_file(via, path, data):
    """Write DATA (bytes) into PATH on the lab host VIA in place: the file keeps its inode, owner and mode."""
    script = "import sys\nwith open(sys.argv[1], 'r+b') as f:\n    f.write(bytes.fromhex(sys.argv[2]))\n    f.truncate()\n"
    out = lab.host(via).run("python3 -c %s %s %s" % (_quote(script), _quote(path), data.hex()))
    assert out.rc == 0, out.stderr


def _quote(text):
    return "'" + text.replace("'", "'\"'\"'") + "'"


_HOLD = r"""
import json, os, sys
from kombu import Consumer, Exchange, Queue
from pod.xapi.xapi_tasks import xapi_app

take, held = int(sys.argv[1]), []

def hold(body, message):
    held.append(body[0][0]["id"])  # Celery's message: [args, kwargs, embed]; the statement is args[0]

connection = xapi_app.connection_for_read()
channel = connection.channel()
channel.basic_qos(0, take, False)
with Consumer(channel, queues=[Queue("xapi", Exchange("xapi"), routing_key="xapi")], callbacks=[hold],
              accept=["json"], no_ack=False):
    while len(held) < take:
        connection.drain_events(timeout=30)
print(json.dumps(held), flush=True)
os._exit(0)  # dies holding them, unacknowledged, as a killed worker with acks_late leaves them
"""


def hold_unacknowledged(count):
    """Take COUNT statements from the frontal's broker (Pod's own app and settings) and die holding them;
    returns their ids."""
    process = pod.run_in_pod("frontal", _HOLD, count)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def start_seed_worker():
    """The guide's node on the encoding host: the site's Pod and user, celery multi, no -Q xapi."""
    # Without gossip, mingle and heartbeats: its only key in the site's Redis is its own remote-control queue's binding.
    command = ("PYTHONDONTWRITEBYTECODE=1 CELERY_BROKER_URL=%s %s -m celery multi start %s -A pod.xapi.xapi_tasks --pidfile=%s "
               "--logfile=%s --without-gossip --without-mingle --without-heartbeat"
               % (SEED_BROKER, pod.POD_PYTHON, SEED_NODE, SEED_PIDFILE, SEED_LOGFILE))
    out = lab.host("encoding").run("cd %s && su pod -s /bin/sh -c %s" % (pod.POD_DIR, _quote(command)))
    assert out.rc == 0, out.stderr


def remove_seed_worker():
    """Kill what is left of the guide's node (a failed run) and remove its pid and log files."""
    host = lab.host("encoding")
    for pid in seed_worker_pids():
        host.run("kill -KILL %s" % pid)
    assert host.run("rm -f %s %s" % (SEED_PIDFILE, SEED_LOGFILE)).rc == 0


def seed_node_binding():
    """The member that the guide's node adds, while it runs, to the set of Celery's remote-control bindings."""
    return "%s@encoding.celery.pidbox" % SEED_NODE


def seed_worker_pids():
    """The PIDs of the guide's node on the encoding host."""
    out = lab.host("encoding").run("pgrep -f -- '[-]n %s@' || true" % SEED_NODE)
    return out.stdout.split()


_DUMP = _RESP + r"""
import json, sys

port, out = int(sys.argv[1]), {}
info = Client("127.0.0.1", port).execute("INFO", "keyspace").decode()
for db in sorted(int(line.split(":")[0][2:]) for line in info.splitlines() if line.startswith("db")):
    client, cursor, keys = Client("127.0.0.1", port, db), b"0", set()
    while True:
        cursor, found = client.execute("SCAN", cursor, "COUNT", 1000)
        keys.update(found)
        if cursor == b"0":
            break
    out[db] = {}
    for key in sorted(keys):
        kind = client.execute("TYPE", key)
        if kind == "hash":
            flat = client.execute("HGETALL", key)
            value = {f.decode("utf-8", "backslashreplace"): v.decode("utf-8", "backslashreplace")
                     for f, v in zip(flat[0::2], flat[1::2])}
        elif kind == "set":
            value = sorted(v.decode("utf-8", "backslashreplace") for v in client.execute("SMEMBERS", key))
        elif kind == "list":
            value = [v.decode("utf-8", "backslashreplace") for v in client.execute("LRANGE", key, 0, -1)]
        else:
            value = (client.execute("DUMP", key) or b"").hex()
        out[db][key.decode("utf-8", "backslashreplace")] = [kind, value]
print(json.dumps(out))
"""


def dump(port=SITE_REDIS_PORT):
    """{db: {key: [type, value]}} of every key of every database of the frontal's Redis on PORT (a hash, a set
    or a list as its items, anything else as Redis's DUMP)."""
    out = lab.host("frontal").run("python3 -c %s %d" % (_quote(_DUMP), port))
    assert out.rc == 0, out.stderr
    return {int(db): keys for db, keys in json.loads(out.stdout).items()}
