"""Fault injection on the lab: statements sent through Pod's task while a fault happens, and what
reached the LRS.

Each fault sends a batch of statements from the frontal, exactly as Pod's view does
(send_xapi_statement_task.delay), paced over a few seconds, and strikes once half of them are
enqueued. It then waits (bounded) until the LRS holds every statement the broker accepted, and
reports one row: sent (enqueues the broker accepted), stored (of those, found in the LRS by id),
duplicates (deliveries beyond the first: the LRS's 409 answers, as the worker logs them, plus any
id stored twice), the longest delay from enqueue to the LRS's own `stored` time, and notes. An
enqueue that failed is a statement lost, unless the fault refuses it on purpose (the broker's reserve,
fault 10).

Everything is real: the lab's systemd hosts, Redis, the Celery worker, Ralph. tests/faults/run.py
prints the table; molecule/default/tests/test_faults.py asserts on the same rows.
"""

import datetime
import json
import queue
import re
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field

from . import lab, pod
from .lrs import LRS

WORKER_SERVICE = "celeryd-xapi"
BROKER_SERVICE = "redis-server@xapi"
LRS_SERVICE = "ralph-lrs"
LRS_FRONT = "nginx"  # the lab's TLS front (tests/roles/lab_lrs), before Ralph on lab_lrs_port
DEAD_LETTERS = "/usr/local/sbin/%s-dead-letters" % WORKER_SERVICE
# Fault 10: room given to the broker above what it holds, and the fewest statements sent to fill it.
BROKER_ROOM = 6 * 1024 * 1024
BROKER_FILL = 3600
# What Pod's enqueue raises once the broker's reserve (roles/broker) refuses the frontal's user.
RESERVE_REFUSAL = "no permissions to run the 'lpush' command"
# The worker role's defaults: the longest wait between two retries; the visibility timeout, after
# which kombu (every 100 s) gives back a message whose acknowledgement was lost.
RETRY_BACKOFF_MAX = 120
VISIBILITY_TIMEOUT = 300
RESTORE_PERIOD = 100

_BATCH = pod.STATEMENT + r"""
import json, sys, time
from pod.xapi.xapi_tasks import send_xapi_statement_task
OVERSIZED = 64 * 1024

count, spread, tag, bad, kind = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
start, records = time.time(), []
for number in range(count):
    # The batch's own pace (COUNT statements over SPREAD seconds), as viewers send them.
    pause = start + spread * number / count - time.time()
    if pause > 0:
        time.sleep(pause)
    statement = make_statement(number, tag)
    if number == bad and kind == "malformed":
        statement["actor"] = {"name": "a viewer with no identifier"}  # the LRS refuses it
    elif number == bad and kind == "oversized":
        # Larger than the LRS's front takes (client_max_body_size): it answers 413.
        statement.setdefault("context", {})["extensions"] = {"http://example.org/xapi/padding": "x" * OVERSIZED}
    enqueued, error = time.time(), None
    try:
        send_xapi_statement_task.delay(statement)
    except Exception as exc:  # what Pod's view would meet: the enqueue fails visibly
        error = "%s: %s" % (type(exc).__name__, str(exc)[:200])
    records.append([statement["id"], enqueued, error])
    print("sent %d" % (number + 1), flush=True)
print("RESULT " + json.dumps(records), flush=True)
"""

# A hung LRS: accepts connections, never reads, never answers.
HANG = r"""
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", int(sys.argv[1])))
server.listen(128)
held = []
while True:
    held.append(server.accept()[0])  # never read, never answer
"""

# A reverse proxy in maintenance: 502, 503 and 429 in turn, to every request.
_STATUS = r"""
import http.server, itertools, sys
answers = itertools.cycle([502, 503, 429])

class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status = next(answers)
        body = b"maintenance"
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "5")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = do_PUT = answer
    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
"""

# An LRS front that redirects POSTs to the statements URL: 301 to a new path, then, once the file
# named by argv[3] exists, 302 to a login page. A GET anywhere answers 200, as the new path and the
# login page would: a client that follows a POST's redirect gets a 200 and loses the statement. Every
# request's method and path goes to the file argv[4].
_REDIRECT = r"""
import http.server, os, sys
port, name, login_flag, record = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]

class Handler(http.server.BaseHTTPRequestHandler):
    def reply(self, status, body, location=None):
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with open(record, "a") as out:
            out.write("POST %s\n" % self.path)
        if os.path.exists(login_flag):
            self.reply(302, b"login first", "/login?next=" + self.path)
        else:
            self.reply(301, b"moved", "/xAPI/v2/statements/")

    def do_GET(self):
        with open(record, "a") as out:
            out.write("GET %s\n" % self.path)
        self.reply(200, b'{"statements": [], "more": ""}')

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
"""
REDIRECT_FLAG = "/run/lab-fault-redirect.login"
REDIRECT_RECORD = "/run/lab-fault-redirect.requests"

# Ralph's accounts with the worker's password replaced: the LRS side rotated the credentials.
_ROTATE = r"""
import json, sys, bcrypt
path = sys.argv[1]
accounts = json.load(open(path))
for account in accounts:
    account["hash"] = bcrypt.hashpw(b"rotated-on-the-LRS-side", bcrypt.gensalt()).decode()
json.dump(accounts, open(path, "w"))
"""


@dataclass
class Row:
    """One fault's outcome."""

    fault: str
    title: str
    sent: int = 0
    stored: int = 0
    duplicates: int = 0
    longest_delay: float = 0.0
    refused_enqueues: int = 0
    refusals: list = field(default_factory=list)  # the errors Pod's enqueue met, one per refused enqueue
    missing: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    expected_missing: int = 0  # statements the LRS refuses on purpose, each expected in the dead letters (faults 8, 14)
    expected_refusals: int = 0  # enqueues the broker refuses on purpose (fault 10)
    bound: float = 0.0  # the longest delay docs/delivery.md promises for this fault
    details: dict = field(default_factory=dict)  # what a fault checks beyond the counts

    @property
    def unexpected_refusals(self):
        """Enqueues refused beyond those the fault refuses on purpose: statements lost before the broker."""
        return max(0, self.refused_enqueues - self.expected_refusals)

    @property
    def ok(self):
        """stored == sent, but for the statements the fault makes the LRS refuse on purpose, and no enqueue
        refused but those the fault makes the broker refuse on purpose."""
        return (self.stored == self.sent - self.expected_missing and len(self.missing) == self.expected_missing
                and self.unexpected_refusals == 0
                and (not self.expected_missing or sorted(self.missing) == sorted(self.details.get("dead_letters", []))))


def encoding_hosts():
    """The inventory's encoding hosts (group pod_encoding)."""
    inventory = json.loads(lab._run_ansible([lab._tool("ansible-inventory"), "-i", str(lab.INVENTORY), "--list"]))  # pylint: disable=protected-access
    return sorted(inventory.get("pod_encoding", {}).get("hosts", []))


def run(host, command, check=True):
    """A shell command as root on the lab host HOST; its result."""
    result = lab.host(host).run(command)
    if check:
        assert result.rc == 0, "%s on %s: rc=%s %s" % (command, host, result.rc, result.stderr.strip()[-500:])
    return result


class Batch:
    """COUNT statements enqueued on the frontal over SPREAD seconds; BAD: the index of one malformed (KIND
    "malformed") or larger than the LRS's front takes (KIND "oversized")."""

    def __init__(self, count, spread, tag, bad=-1, kind="malformed"):
        self.count = count
        self.lines = queue.Queue()
        self.process = pod.run_in_pod("frontal", _BATCH, count, spread, tag, bad, kind)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.sent = 0
        self.records = None

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def _next(self, deadline):
        line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
        if line is None:
            raise RuntimeError("the batch stopped: %s" % self.process.stderr.read()[-2000:])
        if line.startswith("sent "):
            self.sent = int(line.split()[1])
        elif line.startswith("RESULT "):
            self.records = json.loads(line[7:])
        return line

    def wait_sent(self, number, timeout=120):
        """Wait until NUMBER statements have been enqueued (or tried)."""
        deadline = time.monotonic() + timeout
        while self.sent < number and self.records is None:
            self._next(deadline)

    def result(self, timeout=600):
        """[(id, enqueued at, error or None)] once the batch is over."""
        deadline = time.monotonic() + timeout
        while self.records is None:
            self._next(deadline)
        self.process.wait(timeout=30)
        return self.records


class Lab:
    """The lab's parts that the faults act on."""

    def __init__(self, outage=60.0):
        self.outage = outage
        self.lrs = LRS(via="lrs")
        self.port = int(lab.var("lrs", "lab_lrs_port"))
        self.encoding = encoding_hosts()
        self.first = self.encoding[0]
        self.broker_port = int(lab.var("frontal", "xapi_broker_port")) if "xapi_broker_port" in lab.host_vars("frontal") else 6380
        self.broker_password = lab.broker_password("admin")
        self.broker_cli = lab.broker_cli("admin")
        self.broker_db = int(lab.var("frontal", "xapi_broker_db")) if "xapi_broker_db" in lab.host_vars("frontal") else 6

    # waits ------------------------------------------------------------------------------------
    def nodes_active(self):
        for host in self.encoding:
            lab.until("the worker's nodes on %s run" % host,
                      lambda host=host: run(host, "/etc/init.d/%s status" % WORKER_SERVICE, check=False).rc == 0, 120)

    def fresh_store(self):
        """Empty Ralph's store: its fs backend slows down as its files grow, and each fault should
        meet the same LRS."""
        run("lrs", "systemctl stop %s && rm -f /var/lib/ralph/fs_lrs.jsonl /var/lib/ralph/history.json"
                   " && systemctl start %s" % (LRS_SERVICE, LRS_SERVICE))
        self.lrs_back()

    def lrs_back(self):
        lab.until("Ralph answers again", lambda: self.lrs.heartbeat()[0] == 200, 60)

    # the LRS stood in for by a script listening on its port ------------------------------------
    def replace_lrs(self, script, name):
        self.stand_in(script, name)

    def stand_in(self, script, name, *args):
        """SCRIPT listening on the LRS's port in Ralph's place (stopped), with ARGS after its port and NAME."""
        run("lrs", "systemctl stop %s" % LRS_SERVICE)
        subprocess.run(["podman", "exec", "-d", lab.container("lrs"), "python3", "-c", script, str(self.port), name,
                        *args], check=True, stdout=subprocess.DEVNULL)
        lab.until("the stand-in LRS listens",
                  lambda: lab.host("lrs").socket("tcp://0.0.0.0:%s" % self.port).is_listening, 30)

    def restore_lrs(self, name):
        # [x]: the pattern does not match the shell that runs pkill.
        run("lrs", "pkill -f %s || true" % shlex.quote(name[:-1] + "[" + name[-1] + "]"))
        lab.until("the stand-in LRS is gone",
                  lambda: not lab.host("lrs").socket("tcp://0.0.0.0:%s" % self.port).is_listening, 30)
        run("lrs", "systemctl start %s" % LRS_SERVICE)
        self.lrs_back()

    # the broker, as the frontal's root sees it ------------------------------------------------
    def broker(self, command):
        """redis-cli COMMAND on the broker; its output."""
        return run("frontal", "%s -p %d -n %d %s" % (self.broker_cli, self.broker_port, self.broker_db, command)).stdout

    def held(self, node, queue_name="xapi"):
        """How many messages the worker node NODE holds on the broker: taken and not acknowledged
        (unacked:<node>), or moved and not yet recorded (inflight:<node>:<queue>)."""
        return int(self.broker("HLEN unacked:%s" % node).strip() or 0) + int(
            self.broker("LLEN inflight:%s:%s" % (node, queue_name)).strip() or 0)

    # what the worker's hosts logged ------------------------------------------------------------
    @staticmethod
    def node_of(host, unit):
        """The Celery node name (<node>@<hostname>) that the systemd UNIT on HOST runs."""
        environment = run(host, "systemctl show -p Environment --value %s" % unit).stdout.split()
        return next(word.split("=", 1)[1] for word in environment if word.startswith("XAPI_WORKER_NODE="))

    @staticmethod
    def journal_cursor(host):
        """The journal's cursor on HOST now: journal_since() then reads only what comes later."""
        out = run(host, "journalctl -n 0 --show-cursor --no-pager").stdout
        return out.rsplit("-- cursor: ", 1)[1].strip()

    @staticmethod
    def journal_since(host, unit, cursor):
        """The lines UNIT wrote to the journal on HOST after CURSOR."""
        return run(host, "journalctl --no-pager -o cat -u %s --after-cursor=%s" % (unit, shlex.quote(cursor))).stdout

    def conflicts(self, ids):
        """How many 409 answers (statement already stored) the worker logged for these ids."""
        wanted, count = set(ids), 0
        for host in self.encoding:
            out = run(host, "grep -h 'already stored or accepted' /var/log/%s/*.log || true" % WORKER_SERVICE).stdout
            count += sum(1 for line in out.splitlines() if any(part in wanted for part in line.split()))
        return count

    def log_marks(self):
        """{host: {log file: size}} of the worker's logs now: logged() then reads only what comes later."""
        marks = {}
        for host in self.encoding:
            out = run(host, "stat -c '%%s %%n' /var/log/%s/*.log" % WORKER_SERVICE, check=False).stdout
            marks[host] = {name: int(size) for size, name in (line.split(" ", 1) for line in out.splitlines())}
        return marks

    def logged(self, text, marks):
        """Whether a line of the worker's logs, on any encoding host, written since MARKS, holds TEXT."""
        for host in self.encoding:
            for name in run(host, "ls /var/log/%s/*.log" % WORKER_SERVICE, check=False).stdout.split():
                offset = marks.get(host, {}).get(name, 0)
                command = "tail -c +%d %s | grep -q -F %s" % (offset + 1, shlex.quote(name), shlex.quote(text))
                if run(host, command, check=False).rc == 0:
                    return True
        return False

    def worker_pids(self, host):
        """The main PIDs of the worker's node units on HOST: they change when a node restarts."""
        return run(host, "systemctl list-units --plain --no-legend --type=service '%s@*' | cut -d' ' -f1"
                         " | xargs -r systemctl show -p MainPID --value" % WORKER_SERVICE).stdout.split()

    def dead_letters(self):
        out = run(self.first, "%s list --json" % DEAD_LETTERS).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def _parse_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def settle(lab_, row, records, since, timeout):
    """Wait (bounded by TIMEOUT) until the LRS holds every accepted statement but the expected missing;
    fill ROW."""
    accepted = {sid: when for sid, when, error in records if error is None}
    row.sent += len(accepted)
    row.refusals += [error for _sid, _when, error in records if error is not None]
    row.refused_enqueues = len(row.refusals)
    deadline = time.monotonic() + timeout
    while True:
        stored = {}
        duplicates = 0
        for statement in lab_.lrs.statements(since=since):
            if statement["id"] in accepted:
                duplicates += statement["id"] in stored
                stored[statement["id"]] = statement
        missing = [sid for sid in accepted if sid not in stored]
        if len(missing) <= row.expected_missing or time.monotonic() >= deadline:
            break
        time.sleep(3)  # polling interval of a bounded wait for the LRS to hold them
    row.stored += len(stored)
    row.missing += missing
    row.duplicates += duplicates + lab_.conflicts(accepted)
    delays = [_parse_time(s["stored"]) - accepted[sid] for sid, s in stored.items()]
    row.longest_delay = max([row.longest_delay] + delays)
    return row


# The faults -------------------------------------------------------------------------------------
def _during(lab_, row, count, spread, inject, heal, hold=0.0, bad=-1, kind="malformed"):
    """A batch with a fault from its middle: INJECT once half is enqueued, HEAL after HOLD seconds.
    The delay bound: the fault's duration + the longest backoff + a minute to catch up, unless the
    fault set its own."""
    row.bound = row.bound or (lab_.outage + RETRY_BACKOFF_MAX + 60)
    since = datetime.datetime.now(datetime.timezone.utc).isoformat()
    batch = Batch(count, spread, row.fault, bad, kind)
    batch.wait_sent(count // 2)
    inject()
    if hold:
        time.sleep(hold)  # the fault's duration: what is measured is how the pipeline lives through it
    heal()
    records = batch.result()
    return settle(lab_, row, records, since, timeout=max(row.bound, hold + RETRY_BACKOFF_MAX) + 120)


def worker_killed(lab_, count, spread):
    # Ralph answers a statement in milliseconds: a node killed while the batch flows is almost always
    # idle, and holds nothing to lose. An LRS that holds every request (HANG) from before the batch
    # until the node is back keeps what the node took unacknowledged at the kill.
    row = Row("worker-killed", "the worker's main process SIGKILLed while it holds statements (LRS hanging)")
    unit = "%s@xapi.service" % WORKER_SERVICE
    node = lab_.node_of(lab_.first, unit)
    before = run(lab_.first, "systemctl show -p MainPID --value %s" % unit).stdout.strip()
    cursor, hanging = [], [True]

    def inject():
        row.details["held_at_kill"] = lab.until("the node holds statements (broker: unacked and in-flight keys)",
                                                lambda: lab_.held(node), 60)
        cursor.append(lab_.journal_cursor(lab_.first))
        run(lab_.first, "systemctl kill --signal=SIGKILL --kill-whom=main %s" % unit)

    def heal():
        lab.until("the node restarts", lambda: run(lab_.first, "systemctl show -p MainPID --value %s" % unit,
                                                   check=False).stdout.strip() not in ("", "0", before), 60)
        lab_.nodes_active()
        lab_.restore_lrs("lab-fault-kill-hang")
        hanging.clear()

    lab_.replace_lrs(HANG, "lab-fault-kill-hang")
    try:
        _during(lab_, row, count, spread, inject, heal)
    finally:
        if hanging:
            lab_.restore_lrs("lab-fault-kill-hang")
    journal = lab_.journal_since(lab_.first, unit, cursor[0]) if cursor else ""
    restored = re.search(r"^restored (\d+) unacknowledged message.*$", journal, re.M)
    row.details["restored"] = int(restored.group(1)) if restored else None
    row.notes.append("%d held at the kill; %s" % (
        row.details.get("held_at_kill", 0), restored.group(0) if restored else "no restore line after the kill"))
    return row


def host_rebooted(lab_, count, spread):
    row = Row("host-rebooted", "the encoding host rebooted")

    def inject():
        subprocess.run(["podman", "restart", "-t", "10", lab.container(lab_.first)], check=True,
                       stdout=subprocess.DEVNULL)

    def heal():
        subprocess.run([str(lab.REPO_ROOT / "tests" / "lab" / "labctl"), "wait", lab.lab_name(), lab_.first],
                       check=True, stdout=subprocess.DEVNULL)
        lab_.nodes_active()
    return _during(lab_, row, count, spread, inject, heal)


def broker_restarted(lab_, count, spread):
    # An acknowledgement sent while the broker is down is lost: that statement (already posted) comes
    # back after the visibility timeout, as a 409 duplicate.
    row = Row("broker-restarted", "the broker restarted", bound=VISIBILITY_TIMEOUT + RESTORE_PERIOD + 60)
    _during(lab_, row, count, spread, lambda: run("frontal", "systemctl restart %s" % BROKER_SERVICE), lambda: None)
    return row


def lrs_refusing(lab_, count, spread):
    row = Row("lrs-refusing", "the LRS refusing connections for %d s" % lab_.outage)
    # The TLS front too: with Ralph alone stopped, nginx would answer 502 instead of refusing.
    return _during(lab_, row, count, spread, lambda: run("lrs", "systemctl stop %s %s" % (LRS_FRONT, LRS_SERVICE)),
                   lambda: (run("lrs", "systemctl start %s %s" % (LRS_SERVICE, LRS_FRONT)), lab_.lrs_back()),
                   lab_.outage)


def lrs_hanging(lab_, count, spread):
    row = Row("lrs-hanging", "the LRS accepting connections and never answering, %d s" % lab_.outage)
    return _during(lab_, row, count, spread, lambda: lab_.replace_lrs(HANG, "lab-fault-hang"),
                   lambda: lab_.restore_lrs("lab-fault-hang"), lab_.outage)


def lrs_5xx(lab_, count, spread):
    row = Row("lrs-502-503-429", "the LRS answering 502, 503 and 429 for %d s" % lab_.outage)
    return _during(lab_, row, count, spread, lambda: lab_.replace_lrs(_STATUS, "lab-fault-status"),
                   lambda: lab_.restore_lrs("lab-fault-status"), lab_.outage)


def lrs_401(lab_, count, spread):
    row = Row("lrs-401", "the LRS answering 401 (credentials rotated) for %d s" % lab_.outage)
    auth = "/var/lib/ralph/auth.json"
    started = []

    def inject():
        started.append(time.monotonic())
        run("lrs", "cp -p %s %s.lab-fault && /opt/ralph/venv/bin/python -c %s %s && systemctl restart %s"
            % (auth, auth, shlex.quote(_ROTATE), auth, LRS_SERVICE))
        lab_.lrs_back()
        # The admin's check names the problem while it lasts.
        row.details["check_rc"], out = lab.run_playbook("playbooks/verify.yml", "--limit", lab_.first)
        row.details["check_named_credentials"] = "LRS refused the credentials" in out

    def heal():
        time.sleep(max(0.0, lab_.outage - (time.monotonic() - started[0])))  # the rest of the fault's duration
        run("lrs", "mv %s.lab-fault %s && systemctl restart %s" % (auth, auth, LRS_SERVICE))
        lab_.lrs_back()
    _during(lab_, row, count, spread, inject, heal)
    row.notes.append("xapi_check during the fault: rc=%s, %s" % (
        row.details["check_rc"], "names 'LRS refused the credentials'" if row.details["check_named_credentials"]
        else "does NOT name the credentials"))
    return row


def lrs_redirects(lab_, count, spread):
    row = Row("lrs-redirects", "the LRS URL redirecting (301, then 302 to a login page), then fixed")
    url = lab_.lrs.url
    root = url.split("/xAPI/", 1)[0]
    moved, login = root + "/xAPI/v2/statements/", root + "/login?next=" + url[len(root):]

    def inject():
        started = time.monotonic()
        marks = lab_.log_marks()
        run("lrs", "rm -f %s %s" % (REDIRECT_FLAG, REDIRECT_RECORD))
        lab_.stand_in(_REDIRECT, "lab-fault-redirect", REDIRECT_FLAG, REDIRECT_RECORD)
        lab.until("the worker logs the 301's target", lambda: lab_.logged("(HTTP 301) to %s:" % moved, marks), 120)
        # The admin's check and a new deployment name the target, and the deployment changes nothing.
        rc, out = lab.run_playbook("playbooks/verify.yml", "--limit", lab_.first, "-e", "worker_check_probe=false")
        row.details["check"] = (rc, "XAPI_LRS_URL redirects to %s: set xapi_lrs_url to that URL" % moved in out)
        rc, out = lab.run_playbook("playbooks/site.yml")
        recap = [line for line in out.splitlines() if " : ok=" in line]
        row.details["deploy"] = (rc, "redirects to %s (HTTP 301): set that URL in xapi_lrs_url" % moved in out,
                                 bool(recap) and all(" changed=0 " in line for line in recap))
        run("lrs", "touch %s" % REDIRECT_FLAG)
        lab.until("the worker logs the 302's target", lambda: lab_.logged("(HTTP 302) to %s:" % login, marks), 180)
        row.bound = time.monotonic() - started + RETRY_BACKOFF_MAX + 60  # the fault lasted this long

    _during(lab_, row, count, spread, inject, lambda: lab_.restore_lrs("lab-fault-redirect"))
    requests = run("lrs", "cat %s" % REDIRECT_RECORD).stdout.split()
    row.details["followed"] = [path for method, path in zip(requests[::2], requests[1::2]) if method != "POST"]
    row.notes.append("xapi_check rc=%s, site.yml rc=%s, both naming the target; %d request(s) sent on" % (
        row.details["check"][0], row.details["deploy"][0], len(row.details["followed"])))
    return row


# The LRS's certificate, as the lab's TLS front serves it (tests/roles/lab_lrs: lab_lrs_tls_dir, lab_lrs_ca_dir).
TLS_DIR = "/etc/nginx/lab-tls"
LAB_CA_DIR = "/etc/lab-ca"
NGINX_CONF = "/etc/nginx/conf.d/lab-lrs.conf"
# A CA of the fault's own (faults 12), which no host trusts until the fault installs it in the encoding hosts'
# system store, as an admin installs a university's CA.
FAULT_CA_DIR = "/root/lab-fault-ca"
FAULT_CA_IN_STORE = "/usr/local/share/ca-certificates/lab-fault-ca.crt"
CERT_FAILURE = "CERTIFICATE_VERIFY_FAILED"
# Fault 14: what the TLS front takes (a statement of the batch is about 1 kB, the oversized one 64 kB).
SMALL_BODY = "16k"


def _new_cert(ca_dir, out_dir):
    """A shell command, run on lrs, that makes a new key for the LRS's name and a certificate for it signed by the CA
    in CA_DIR, in OUT_DIR (lrs.key, lrs.crt), with the extensions of the lab's own certificate."""
    return ("openssl req -newkey rsa:2048 -nodes -subj /CN=lrs -keyout {o}/lrs.key -out {o}/lrs.csr 2>/dev/null"
            " && openssl x509 -req -days 30 -in {o}/lrs.csr -CA {c}/ca.crt -CAkey {c}/ca.key -CAcreateserial"
            " -extfile {t}/lrs-cert.ext -out {o}/lrs.crt 2>/dev/null && chmod 600 {o}/lrs.key").format(
                o=out_dir, c=ca_dir, t=TLS_DIR)


def _served_fingerprint():
    """The SHA-256 fingerprint of the certificate the TLS front serves now, as the encoding host sees it."""
    return run("encoding", "echo | openssl s_client -connect lrs:%s -servername lrs 2>/dev/null"
                           " | openssl x509 -noout -fingerprint -sha256" % lab.var("lrs", "lab_lrs_tls_port")).stdout.strip()


def lrs_cert_untrusted(lab_, count, spread):
    # From before the batch, so that every statement meets the certificate: a kept-alive connection made before
    # the swap would carry statements on (nginx's reload closes the idle ones).
    row = Row("lrs-cert-untrusted", "the LRS's certificate from a CA the hosts do not trust, then the CA installed")
    marks = [lab_.log_marks()]

    def inject():
        lab.until("the worker fails to verify the certificate", lambda: lab_.logged(CERT_FAILURE, marks[0]), 120)
        rc, out = lab.run_playbook("playbooks/verify.yml", "--limit", lab_.first, "-e", "worker_check_probe=false")
        row.details["check"] = (rc, "LRS unreachable at" in out and CERT_FAILURE in out)

    def heal():
        # The admin's fix: the CA in the encoding hosts' system store. The worker is not restarted: each new
        # connection reads the store again.
        row.details["stored_before_ca"] = len(lab_.lrs.statements())  # the store was emptied before the fault
        ca = run("lrs", "cat %s/ca.crt" % FAULT_CA_DIR).stdout
        for host in lab_.encoding:
            run(host, "printf %%s %s > %s && update-ca-certificates >/dev/null" % (shlex.quote(ca), FAULT_CA_IN_STORE))
        row.details["pids_before"] = {host: lab_.worker_pids(host) for host in lab_.encoding}
        row.bound = time.monotonic() - started[0] + RETRY_BACKOFF_MAX + 60  # the fault lasted this long

    # The tests read the LRS from the lrs host, whose store never trusts that CA: straight from Ralph meanwhile.
    through_front, lab_.lrs = lab_.lrs, LRS(via="lrs", url=lab.var("lrs", "lab_lrs_http_url"))
    try:
        run("lrs", "cp -p %s/lrs.crt %s/lrs.crt.lab-fault && cp -p %s/lrs.key %s/lrs.key.lab-fault"
            % (TLS_DIR, TLS_DIR, TLS_DIR, TLS_DIR))
        run("lrs", "install -d -m 700 %s && openssl req -x509 -newkey rsa:2048 -nodes -days 30"
                   " -subj '/CN=Another CA (lab fault)' -addext basicConstraints=critical,CA:TRUE"
                   " -addext keyUsage=critical,keyCertSign,cRLSign -keyout %s/ca.key -out %s/ca.crt 2>/dev/null"
                   " && %s && cp %s/lrs.crt %s/lrs.key %s/ && systemctl reload nginx"
            % (FAULT_CA_DIR, FAULT_CA_DIR, FAULT_CA_DIR, _new_cert(FAULT_CA_DIR, FAULT_CA_DIR), FAULT_CA_DIR,
               FAULT_CA_DIR, TLS_DIR))
        started = [time.monotonic()]
        # The CA is installed once the worker met the certificate and the check named it: the fault lasts that long.
        _during(lab_, row, count, spread, inject, heal)
        row.details["pids_after"] = {host: lab_.worker_pids(host) for host in lab_.encoding}
    finally:
        lab_.lrs = through_front
        run("lrs", "if [ -e %s/lrs.crt.lab-fault ]; then mv %s/lrs.crt.lab-fault %s/lrs.crt && mv %s/lrs.key.lab-fault"
                   " %s/lrs.key && systemctl reload nginx; fi; rm -rf %s" % ((TLS_DIR,) * 5 + (FAULT_CA_DIR,)))
        for host in lab_.encoding:
            run(host, "rm -f %s && update-ca-certificates --fresh >/dev/null" % FAULT_CA_IN_STORE)
    row.details["restarted"] = row.details.get("pids_before") != row.details.get("pids_after")
    row.notes.append("%s logged by the worker; xapi_check rc=%s naming it; %s stored before the CA was installed, "
                     "the rest after, worker %s" % (
                         CERT_FAILURE, row.details.get("check", ("?",))[0], row.details.get("stored_before_ca", "?"),
                         "restarted (!)" if row.details["restarted"] else "not restarted"))
    return row


def lrs_cert_renewed(lab_, count, spread):
    row = Row("lrs-cert-renewed", "the LRS's certificate renewed (new key, same CA), nginx reloaded, while statements flow")
    renewal = "/root/lab-fault-renew"
    before = _served_fingerprint()
    # Made before the batch: the swap itself is instant.
    run("lrs", "rm -rf {r} && install -d -m 700 {r} && {new}".format(r=renewal, new=_new_cert(LAB_CA_DIR, renewal)))

    def inject():
        run("lrs", "cp %s/lrs.crt %s/lrs.key %s/ && systemctl reload nginx" % (renewal, renewal, TLS_DIR))
        row.details["renewed_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
        lab.until("the front serves the new certificate", lambda: _served_fingerprint() not in ("", before), 30)
        row.details["renewed"] = True

    try:
        # Slow enough that the second half is still flowing once the renewal and the reload are done.
        _during(lab_, row, count, max(spread, 12.0), inject, lambda: None)
    finally:
        run("lrs", "rm -rf %s" % renewal)
    # The statements the LRS stored after the reload came through the new certificate.
    row.details["stored_after"] = len(lab_.lrs.statements(since=row.details["renewed_at"])) if row.details.get(
        "renewed_at") else 0
    row.notes.append("certificate renewed mid-batch, %d of the statements stored after the reload" % row.details["stored_after"]
                     if row.details.get("renewed") else "certificate NOT renewed")
    return row


def lrs_413(lab_, count, spread):
    row = Row("lrs-413", "the LRS answering 413 to one oversized statement", expected_missing=1)
    before = {letter["statement"]["id"] for letter in lab_.dead_letters()}
    run("lrs", "sed -i.lab-fault 's/client_max_body_size .*;/client_max_body_size %s;/' %s && nginx -t -q"
               " && systemctl reload nginx" % (SMALL_BODY, NGINX_CONF))
    try:
        _during(lab_, row, count, spread, lambda: None, lambda: None, bad=count // 2, kind="oversized")
    finally:
        run("lrs", "mv %s.lab-fault %s && systemctl reload nginx" % (NGINX_CONF, NGINX_CONF))
    kept = [letter for letter in lab_.dead_letters() if letter["statement"]["id"] not in before]
    row.details["dead_letters"] = [letter["statement"]["id"] for letter in kept]
    row.details["statuses"] = [letter["status"] for letter in kept]
    row.notes.append("%d in the dead letters, as expected (HTTP %s), dropped" % (
        len(kept), ", ".join(str(status) for status in row.details["statuses"]) or "-"))
    for letter in kept:
        run(lab_.first, "%s drop %s" % (DEAD_LETTERS, letter["statement"]["id"]))
    return row


def lrs_refuses_one(lab_, count, spread):
    row = Row("lrs-refuses-one", "the LRS refusing one malformed statement", expected_missing=1)
    before = {letter["statement"]["id"] for letter in lab_.dead_letters()}
    _during(lab_, row, count, spread, lambda: None, lambda: None, bad=count // 2)
    kept = [letter for letter in lab_.dead_letters() if letter["statement"]["id"] not in before]
    row.details["dead_letters"] = [letter["statement"]["id"] for letter in kept]
    if kept:
        row.notes.append("the missing one refused with HTTP %s, kept in the dead-letter list" % kept[0]["status"])
        # The admin's check counts it and fails (worker_check_max_dead_letters: 0).
        rc, out = lab.run_playbook("playbooks/verify.yml", "--limit", lab_.first, "-e", "worker_check_probe=false")
        row.details["check_rc"] = rc
        row.details["check_named_dead_letters"] = "1 statement(s) refused by the LRS wait in xapi.dead-letters" in out
        # What docs/delivery.md tells the admin: replay it (here the LRS refuses it again), then drop it.
        wanted = kept[0]["statement"]["id"]
        run(lab_.first, "%s replay %s" % (DEAD_LETTERS, wanted))
        again = lab.until("the replayed statement is refused again", lambda: [
            letter for letter in lab_.dead_letters()
            if letter["statement"]["id"] == wanted and letter.get("attempts") == 2], 120)
        row.details["replayed_attempts"] = again[0]["attempts"]
        run(lab_.first, "%s drop %s" % (DEAD_LETTERS, wanted))
        row.details["left_after_drop"] = [letter["statement"]["id"] for letter in lab_.dead_letters()
                                          if letter["statement"]["id"] == wanted]
        row.notes.append("replayed: refused again (attempts 2); dropped")
    return row


def network_cut(lab_, count, spread):
    row = Row("network-cut", "the network between the encoding host and the LRS cut for %d s" % lab_.outage)
    pid = subprocess.run(["podman", "inspect", "-f", "{{.State.Pid}}", lab.container(lab_.first)], check=True,
                         text=True, stdout=subprocess.PIPE).stdout.strip()
    address = run(lab_.first, "getent hosts lrs | cut -d' ' -f1").stdout.split()[0]
    rules = [["OUTPUT", "-d", address, "-j", "DROP"], ["INPUT", "-s", address, "-j", "DROP"]]

    def iptables(action):
        for rule in rules:
            subprocess.run(["nsenter", "-t", pid, "-n", "iptables", action, *rule], check=True)
    return _during(lab_, row, count, spread, lambda: iptables("-I"), lambda: iptables("-D"), lab_.outage)


def broker_full(lab_, count, spread):
    row = Row("broker-full", "the broker near its memory limit")
    run(lab_.first, "systemctl stop %s.service" % WORKER_SERVICE)
    # What earlier faults left in the queue (a message whose acknowledgement a broker restart lost comes
    # back as the node stops): the batch's statements come on top of it.
    waiting = int(lab_.broker("LLEN xapi").strip())
    limit = lab_.broker("CONFIG GET maxmemory").split()[1]
    used = int(next(line.split(":")[1] for line in lab_.broker("INFO memory").splitlines()
                    if line.startswith("used_memory:")))
    # 6 MB of room above what the broker holds now, so that the reserve (the last tenth) is far larger
    # than what a node's start and the clients' own buffers take: with 1.5 MB, the node's start took
    # the broker over its limit once the earlier faults had run. The batch fills it up to the reserve.
    lab_.broker("CONFIG SET maxmemory %d" % (used + BROKER_ROOM))
    try:
        since = datetime.datetime.now(datetime.timezone.utc).isoformat()
        records = Batch(max(count, BROKER_FILL), spread, row.fault).result()
        refused = [error for _sid, _when, error in records if error]
        accepted = len(records) - len(refused)
        # What the fault refuses on purpose: the reserve's refusal, nothing else. The broker's own
        # out-of-memory answer would mean the reserve came too late: counted as lost.
        row.expected_refusals = sum(1 for error in refused if RESERVE_REFUSAL in error)
        row.notes.append("%d enqueue(s) refused by the reserve%s" % (
            row.expected_refusals, (" (%s)" % refused[0][:50]) if refused else ""))
        row.details["accepted"] = accepted
        # Still at the lowered limit: the node starts, consumes and acknowledges in the reserve, and the
        # reserve gives the frontal its enqueues back once the broker is drained.
        run(lab_.first, "systemctl start %s.service" % WORKER_SERVICE)
        lab_.nodes_active()
        lab.until("the queue drained at the lowered limit", lambda: int(lab_.broker("LLEN xapi").strip()) <= waiting,
                  RETRY_BACKOFF_MAX + 180)
        row.details["drained_at_limit"] = lab_.broker("CONFIG GET maxmemory").split()[1] == str(used + BROKER_ROOM)
        row.notes.append("the node drained the queue at the limit")
        settle(lab_, row, records, since, timeout=RETRY_BACKOFF_MAX + 180)
        lab.until("the frontal's enqueues given back", lambda: lab_.broker(
            "ACL DRYRUN %s lpush xapi x" % lab.broker_user("frontal")).strip() == "OK", 30)
        since = datetime.datetime.now(datetime.timezone.utc).isoformat()
        after = Batch(max(5, count // 10), 1, row.fault + "-after").result()
        row.details["refused_after_drain"] = sum(1 for _sid, _when, error in after if error)
        row.notes.append("drained: %d of %d enqueued" % (len(after) - row.details["refused_after_drain"], len(after)))
        settle(lab_, row, after, since, timeout=120)
    finally:
        lab_.broker("CONFIG SET maxmemory %s" % limit)
        run(lab_.first, "systemctl start %s.service" % WORKER_SERVICE)
    return row


FAULTS = [worker_killed, host_rebooted, broker_restarted, lrs_refusing, lrs_hanging, lrs_5xx, lrs_401,
          lrs_refuses_one, network_cut, broker_full, lrs_redirects, lrs_cert_untrusted, lrs_cert_renewed, lrs_413]


def by_name():
    """{fault function name: function}."""
    return {fault.__name__: fault for fault in FAULTS}


def table(rows):
    """The report: one line per fault."""
    lines = ["%-3s %-18s | %5s | %6s | %10s | %13s | %s" % ("#", "fault", "sent", "stored", "duplicates",
                                                            "longest delay", "notes")]
    lines.append("-" * 110)
    for number, row in enumerate(rows, 1):
        lines.append("%-3s %-18s | %5d | %6d | %10d | %11.1f s | %s" % (
            number, row.fault, row.sent, row.stored, row.duplicates, row.longest_delay,
            "; ".join(row.notes + (["missing: %s" % ", ".join(row.missing[:3])] if len(row.missing) > row.expected_missing else [])
                      + (["%d enqueue(s) refused unexpectedly (%s)" % (row.unexpected_refusals, row.refusals[-1][:80])]
                         if row.unexpected_refusals else []))))
    return "\n".join(lines)
