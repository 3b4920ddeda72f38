"""Throughput of the deployed pipeline against the LRS's own ceiling, on the lab (tests/bench/throughput.py).

Every phase starts on an empty Ralph store (its fs backend slows as its files grow), so that the
LRS alone and the pipeline meet the same LRS:

- the ceiling: statements POSTed from the encoding host by parallel posters (one process each), each
  keeping one connection alive (a requests.Session, as the worker's threads), one statement a request,
  basic auth; level after level until the rate stops climbing; the rate of the best level. The same
  posters with a new connection each statement (requests.post, as Pod's own task) give the gain of
  kept-alive connections;
- the pipeline: statements enqueued on the frontal through Pod's task (send_xapi_statement_task.delay);
  its time runs from the first enqueue to the LRS's own `stored` time of the last statement.

Latency is added by a delaying TCP proxy on the LRS host (the kernel's netem is not available
everywhere): each encoding host's traffic to the LRS's port is redirected to the proxy (iptables DNAT
in the host's network namespace), so the worker's configuration is unchanged.
"""

import json
import os
import shlex
import statistics
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from . import faults, lab, pod

RALPH_STORE = "/var/lib/ralph/fs_lrs.jsonl"
# The worker role's documented setting for a far LRS (docs/benchmarks.md, "Throughput"): worker_concurrency by
# added round-trip time; below 20 ms, the role's default.
FAR_LRS_CONCURRENCY = ((20, 32),)
PROXY_NAME = "lab-bench-delay"

# Runs on an encoding host, in the worker's virtualenv (the requests the worker uses): COUNT statements
# POSTed by POSTERS processes, each taking the next statement as soon as it is free (one shared counter),
# so that no poster idles while another still holds a share. MODE "keep": each poster has one
# requests.Session, its connection opened (TLS handshake included) before the clock starts and kept
# alive between statements, as a good client and the worker post; "new": requests.post, a new
# connection (and handshake) for every statement, as Pod's own task posts. Prints the time from the
# common start to the last answer, the answers' statuses and the connections each side opened.
# The URL and the credentials come through stdin with the script.
_POSTERS = pod.STATEMENT + r"""
import json, multiprocessing, sys, time
import requests
from requests.auth import HTTPBasicAuth

URL, LOGIN, PASSWORD = json.loads(sys.stdin_config)
CA = "/etc/ssl/certs/ca-certificates.crt"
HEARTBEAT = URL.split("/xAPI/", 1)[0] + "/__heartbeat__"
count, posters, tag, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
statements = [make_statement(number, tag) for number in range(count)]
context = multiprocessing.get_context("fork")
ready, taken, results = context.Barrier(posters + 1), context.Value("i", 0), context.Queue()

def opened(session):
    return sum(pool.num_connections for pool in session.adapters["https://"].poolmanager.pools._container.values()) + \
        sum(pool.num_connections for pool in session.adapters["http://"].poolmanager.pools._container.values())

def poster():
    auth, statuses, connections = HTTPBasicAuth(LOGIN, PASSWORD), {}, 0
    session = requests.Session() if mode == "keep" else None
    if session is not None:
        # The connection and its handshake, before the clock: the steady state of a kept-alive client.
        assert session.get(HEARTBEAT, verify=CA).status_code == 200
    ready.wait()
    while True:
        with taken.get_lock():
            number = taken.value
            taken.value += 1
        if number >= count:
            break
        if session is not None:
            status = session.post(URL, json=statements[number], auth=auth, verify=CA).status_code
        else:
            # As Pod's task: requests.post, a new connection each, basic auth; the certificate checked
            # against the host's CAs, as the worker checks it.
            status = requests.post(URL, json=statements[number], auth=auth, verify=CA).status_code
            connections += 1
        statuses[status] = statuses.get(status, 0) + 1
    if session is not None:
        connections = opened(session)
    results.put((time.time(), statuses, connections))

if __name__ == "__main__":
    processes = [context.Process(target=poster) for _ in range(posters)]
    for process in processes:
        process.start()
    ready.wait()
    start = time.time()
    answers = [results.get() for _ in processes]
    for process in processes:
        process.join()
    statuses = {}
    for _, result, _ in answers:
        for status, number in result.items():
            statuses[str(status)] = statuses.get(str(status), 0) + number
    print(json.dumps({"start": start, "end": max(a[0] for a in answers), "statuses": statuses,
                      "connections": sum(a[2] for a in answers)}))
"""

# Runs on the frontal in the site's Pod: COUNT statements through Pod's task, as fast as Pod's views
# would send a burst; prints the time of the first enqueue and the ids.
_ENQUEUE = pod.STATEMENT + r"""
import json, sys, time
from pod.xapi.xapi_tasks import send_xapi_statement_task

count, tag = int(sys.argv[1]), sys.argv[2]
statements = [make_statement(number, tag) for number in range(count)]
start = time.time()
for statement in statements:
    send_xapi_statement_task.delay(statement)
print(json.dumps({"start": start, "end": time.time(), "ids": [s["id"] for s in statements]}))
"""

# Runs on the LRS host: waits until Ralph's store holds COUNT statements (one line each), reading the
# file's new bytes locally every 0.1 s: the wait costs the lab almost nothing. Bounded by TIMEOUT.
_WAIT_STORE = r"""
import os, sys, time
path, count, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline, lines, offset = time.monotonic() + timeout, 0, 0
while True:
    try:
        with open(path, "rb") as store:
            store.seek(offset)
            chunk = store.read()
    except FileNotFoundError:
        chunk = b""
    offset += len(chunk)
    lines += chunk.count(b"\n")
    if lines >= count:
        print(lines)
        sys.exit(0)
    if time.monotonic() > deadline:
        print(lines)
        sys.exit(1)
    time.sleep(0.1)
"""

# The delaying proxy, on the LRS host: LISTEN -> 127.0.0.1:UPSTREAM with RTT_MS of added round-trip
# time: one round trip before a new connection goes through (the TCP handshake a far LRS costs), and
# half of it on each chunk, each way, in order, without limiting the throughput of a connection.
PROXY = r"""
import asyncio, sys

listen, upstream, rtt = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000.0

async def pump(reader, writer, delay):
    loop = asyncio.get_running_loop()
    chunks = asyncio.Queue()

    async def read():
        while True:
            data = await reader.read(65536)
            await chunks.put((loop.time() + delay, data))
            if not data:
                return

    async def write():
        while True:
            due, data = await chunks.get()
            pause = due - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            if not data:
                try:
                    writer.write_eof()
                except OSError:
                    pass
                return
            writer.write(data)
            await writer.drain()

    try:
        await asyncio.gather(read(), write())
    except (ConnectionError, OSError):
        pass

async def handle(client_reader, client_writer):
    await asyncio.sleep(rtt)
    try:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", upstream)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pump(client_reader, server_writer, rtt / 2), pump(server_reader, client_writer, rtt / 2))
    for writer in (server_writer, client_writer):
        writer.close()

async def main():
    server = await asyncio.start_server(handle, "0.0.0.0", listen, backlog=1024)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


def _remote(via, script, *args, stdin_config=None, timeout=900):
    """Run SCRIPT in the Pod of VIA (pod.run_in_pod); its last line of output, parsed as JSON."""
    if stdin_config is not None:
        script = "import sys\nsys.stdin_config = %r\n%s" % (json.dumps(stdin_config), script)
    process = pod.run_in_pod(via, script, *args)
    out, err = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError("bench script on %s failed: %s" % (via, err.strip()[-2000:]))
    return json.loads(out.strip().splitlines()[-1])


def lab_containers():
    """The running containers of the lab: <lab>-frontal, <lab>-encoding, <lab>-lrs..."""
    names = subprocess.run(["podman", "ps", "--format", "{{.Names}}"], check=True, text=True,
                           stdout=subprocess.PIPE).stdout.split()
    return [name for name in names if name.startswith(lab.lab_name() + "-")]


def encoding_hosts():
    """The lab's encoding hosts: its containers <lab>-encoding, <lab>-encoding2..."""
    prefix = lab.container("encoding")
    hosts = sorted(name[len(lab.lab_name()) + 1:] for name in lab_containers() if name.startswith(prefix))
    assert hosts, "no encoding host in the lab %s: create it with scripts/lab.sh" % lab.lab_name()
    return hosts


def netns_pid(host):
    return subprocess.run(["podman", "inspect", "-f", "{{.State.Pid}}", lab.container(host)], check=True, text=True,
                          stdout=subprocess.PIPE).stdout.strip()


@dataclass
class Phase:
    """One measured phase: COUNT statements in SECONDS."""

    count: int
    seconds: float
    detail: dict = field(default_factory=dict)

    @property
    def rate(self):
        return self.count / self.seconds if self.seconds > 0 else 0.0


class Bench:
    """The lab's LRS, broker and worker, as the benchmark drives them."""

    def __init__(self):
        self.faults = faults.Lab()
        self.lrs = self.faults.lrs
        # Where the encoding hosts reach the LRS (the TLS front's port when the URL is https).
        self.port = urlsplit(self.lrs.url).port or {"https": 443, "http": 80}[urlsplit(self.lrs.url).scheme]
        self.hosts = encoding_hosts()
        self.latency = 0

    # the worker's setting ---------------------------------------------------------------------
    def inventories(self):
        """The lab's inventories: inventory/lab, and tests/lab/encoding2.yml with a second encoding host."""
        extra = ("tests/lab/encoding2.yml",) if "encoding2" in self.hosts else ()
        return ("inventory/lab",) + extra

    def set_concurrency(self, concurrency):
        """Deploy the worker with worker_concurrency CONCURRENCY (None: the role's default), the way an
        admin does: site.yml, tag worker."""
        extra = ("-e", "worker_concurrency=%d" % concurrency) if concurrency else ()
        rc, output = lab.run_playbook("playbooks/site.yml", "--tags", "worker", *extra, inventories=self.inventories())
        assert rc == 0, "site.yml failed: %s" % output[-3000:]
        self.faults.nodes_active()

    def use_hosts(self, count):
        """Run the worker on the first COUNT encoding hosts only (the others' service stopped)."""
        for number, host in enumerate(self.hosts):
            action = "start" if number < count else "stop"
            faults.run(host, "systemctl %s %s.service" % (action, faults.WORKER_SERVICE))
        for host in self.hosts[:count]:
            lab.until("the worker's nodes on %s run" % host, lambda host=host: faults.run(
                host, "/etc/init.d/%s status" % faults.WORKER_SERVICE, check=False).rc == 0, 120)

    # the machine's CPUs ---------------------------------------------------------------------
    # On a site the frontal, the encoding hosts and the LRS are separate machines. With ISOLATE
    # (the default of the benchmark), the lab comes as close as the machine's CPUs allow:
    # - the LRS host alone on the last CPU (cpuset): both phases meet the same LRS, which the
    #   pipeline's frontal, broker and worker do not slow down;
    # - the other hosts on the others, where the encoding hosts weigh ENCODING_CPU_WEIGHT against
    #   the frontal's default 1024 (cpu-shares): the frontal's burst of enqueues (Pod's .delay(),
    #   about 1.4 ms of CPU each) would otherwise take half of the worker's CPU while it runs;
    # - this process, and the podman commands it starts, off the LRS's CPU too.
    # Without ISOLATE, every host on every CPU at the same weight.
    ENCODING_CPU_WEIGHT = 4096

    def place_hosts(self, isolate):
        """Place the lab's hosts on the machine's CPUs (above); returns a line that says how."""
        cpus = os.cpu_count() or 1
        every = "0-%d" % (cpus - 1) if cpus > 1 else "0"
        rest = "0-%d" % (cpus - 2) if cpus > 2 else "0"
        hosts = lab_containers()
        encoding = {lab.container(host) for host in self.hosts}
        isolate = isolate and cpus > 1
        os.sched_setaffinity(0, range(cpus - 1) if isolate else range(cpus))
        for name in hosts:
            cpuset = (str(cpus - 1) if name == lab.container("lrs") else rest) if isolate else every
            weight = self.ENCODING_CPU_WEIGHT if isolate and name in encoding else 1024
            subprocess.run(["podman", "update", "--cpuset-cpus", cpuset, "--cpu-shares", str(weight), name],
                           check=True, stdout=subprocess.DEVNULL)
        if isolate:
            return ("the LRS host alone on CPU %d; the other hosts on CPU %s, the encoding hosts weighing %d "
                    "against the frontal's 1024" % (cpus - 1, rest, self.ENCODING_CPU_WEIGHT))
        return "every host on CPUs %s, at the same weight" % every

    # the LRS's conditions -------------------------------------------------------------------
    def fresh_store(self):
        """An empty Ralph store, and a Ralph restarted on it and warmed: a restarted Ralph checks the
        first request's password with bcrypt (then caches it); parallel first requests would each pay
        for it, and the phase would measure Ralph's start, not its rate."""
        self.faults.fresh_store()
        status, body = self.lrs.request("GET", self.lrs.url + "?limit=1")
        assert status == 200, "the LRS answered %s: %s" % (status, body[:200])

    def set_latency(self, rtt_ms):
        """Route every encoding host's traffic to the LRS through the delaying proxy (RTT_MS added), or
        directly (0)."""
        self.clear_latency(reconnect=False)
        if not rtt_ms:
            self.reconnect_workers()
            return
        proxy_port = self.port + 1
        subprocess.run(["podman", "exec", "-d", lab.container("lrs"), "python3", "-c", PROXY, str(proxy_port),
                        str(self.port), str(rtt_ms), PROXY_NAME], check=True, stdout=subprocess.DEVNULL)
        lab.until("the delaying proxy listens",
                  lambda: lab.host("lrs").socket("tcp://0.0.0.0:%d" % proxy_port).is_listening, 30)
        address = faults.run(self.hosts[0], "getent hosts lrs").stdout.split()[0]
        for host in self.hosts:
            subprocess.run(["nsenter", "-t", netns_pid(host), "-n", "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp",
                            "-d", address, "--dport", str(self.port), "-j", "DNAT",
                            "--to-destination", "%s:%d" % (address, proxy_port), "-m", "comment", "--comment",
                            PROXY_NAME], check=True)
        self.latency = rtt_ms
        self.reconnect_workers()
        # Measured, not assumed: one request's time through the proxy.
        self.check_latency(rtt_ms)

    def reconnect_workers(self):
        """Restart the running worker nodes: their threads' kept-alive connections to the LRS keep the path
        they were opened on (the kernel's connection tracking NATs a connection at its first packet only),
        so after a change of latency they would bypass the proxy, or keep using a proxy that is gone."""
        running = [host for host in self.hosts
                   if faults.run(host, "systemctl is-active --quiet %s.service" % faults.WORKER_SERVICE, check=False).rc == 0]
        for host in running:
            faults.run(host, "systemctl restart %s.service" % faults.WORKER_SERVICE)
        for host in running:
            lab.until("the worker's nodes on %s run" % host, lambda host=host: faults.run(
                host, "/etc/init.d/%s status" % faults.WORKER_SERVICE, check=False).rc == 0, 120)

    def check_latency(self, rtt_ms):
        script = ("import time, urllib.request\nstart = time.time()\n"
                  "urllib.request.urlopen(%r, timeout=10).read()\nprint(round((time.time() - start) * 1000))"
                  % (self.lrs.root + "/__heartbeat__"))
        took = int(faults.run(self.hosts[0], "python3 -c %s" % shlex.quote(script)).stdout.strip())
        # A new connection and one request: two round trips at least.
        assert took >= 2 * rtt_ms, "the proxy added %d ms, not 2 x %d ms" % (took, rtt_ms)
        return took

    def clear_latency(self, reconnect=True):
        removed = 0
        for host in self.hosts:
            pid = netns_pid(host)
            rules = subprocess.run(["nsenter", "-t", pid, "-n", "iptables", "-t", "nat", "-S", "OUTPUT"], check=True,
                                   text=True, stdout=subprocess.PIPE).stdout.splitlines()
            for rule in rules:
                if PROXY_NAME in rule and rule.startswith("-A "):
                    subprocess.run(["nsenter", "-t", pid, "-n", "iptables", "-t", "nat", "-D"] + rule.split()[1:],
                                   check=True)
                    removed += 1
        faults.run("lrs", "pkill -f %s || true" % (PROXY_NAME[:-1] + "[" + PROXY_NAME[-1] + "]"))
        if reconnect and (removed or self.latency):
            self.reconnect_workers()
        self.latency = 0

    # the phases -----------------------------------------------------------------------------
    def ceiling_level(self, count, posters, tag, mode="keep"):
        """COUNT statements POSTed by POSTERS parallel posters on the first encoding host, on a fresh
        store; MODE "keep": a kept-alive connection each, "new": a new connection for each statement."""
        self.fresh_store()
        result = _remote(self.hosts[0], _POSTERS, count, posters, tag, mode,
                         stdin_config=[self.lrs.url, self.lrs.login, self.lrs.password])
        assert result["statuses"] == {"200": count}, "the LRS answered %s" % result["statuses"]
        if mode == "keep":
            # Proof that the posters kept their connections: one each, opened before the clock.
            assert result["connections"] == posters, "%d posters opened %d connections" % (
                posters, result["connections"])
        return Phase(count, result["end"] - result["start"], {"posters": posters, "connections": result["connections"]})

    # A level climbs when it beats the best rate so far by this share; the sweep stops after two levels in
    # a row that do not (one alone may be noise).
    CLIMB = 1.05

    def ceiling(self, count, levels, tag):
        """The LRS's ceiling: kept-alive posters, level after level of LEVELS until the rate stops climbing.
        Returns (best phase, {posters: rate}, whether it stopped climbing before the last level)."""
        phases, flat = [], 0
        for posters in levels:
            phase = self.ceiling_level(count, posters, "%s-p%d" % (tag, posters))
            best = max((p.rate for p in phases), default=0.0)
            phases.append(phase)
            flat = 0 if phase.rate > best * self.CLIMB else flat + 1
            if flat == 2:
                break
        return max(phases, key=lambda p: p.rate), {p.detail["posters"]: p.rate for p in phases}, flat > 0

    def pipeline(self, count, tag, timeout):
        """COUNT statements through Pod's task on the frontal, on a fresh store: the time from the first
        enqueue to the LRS's `stored` time of the last one. The worker is warm first, as the posters are:
        twice its slots of statements delivered just before, so that its threads run and hold their
        connections to the LRS (open across Ralph's restart: nginx holds them)."""
        # Nothing left from an earlier run: it would reach this phase's store.
        lab.until("the broker holds nothing pending", self.nothing_pending, 120)
        _remote("frontal", _ENQUEUE, 2 * self.worker_concurrency(), tag + "-warm")
        lab.until("the worker delivered its warm-up statements", self.nothing_pending, 120)
        self.fresh_store()
        before = self.tasks_by_node()
        sent = _remote("frontal", _ENQUEUE, count, tag)
        waited = faults.run("lrs", "python3 -c %s %s %d %d" % (shlex.quote(_WAIT_STORE), RALPH_STORE, count, timeout),
                            check=False)
        stored = {s["id"]: s for s in self.lrs.statements()}
        missing = [i for i in sent["ids"] if i not in stored]
        assert waited.rc == 0 and not missing, "%d of %d statements stored after %d s, e.g. missing %s" % (
            count - len(missing), count, timeout, missing[:3])
        last = max(datetime.fromisoformat(stored[i]["stored"].replace("Z", "+00:00")).timestamp() for i in sent["ids"])
        after = self.tasks_by_node()
        split = {node: after.get(node, 0) - before.get(node, 0) for node in after}
        return Phase(count, last - sent["start"], {"enqueue_s": sent["end"] - sent["start"], "split": split})

    def nothing_pending(self):
        """Whether no statement waits in the broker: queued, unacknowledged or in flight (the worker's
        delivery command)."""
        out = faults.run(self.hosts[0], "/usr/local/sbin/%s-dead-letters pending" % faults.WORKER_SERVICE).stdout
        return sum(json.loads(out.strip().splitlines()[-1]).values()) == 0

    def tasks_by_node(self):
        """{node: tasks run since it started}, from Celery's own stats (celery inspect stats)."""
        stats = pod.inspect_json("stats")
        return {node: sum((answer.get("total") or {}).values()) for node, answer in stats.items()}

    def worker_concurrency(self):
        """The worker's --concurrency on the first encoding host, as deployed."""
        out = faults.run(self.hosts[0], "grep ^CELERYD_OPTS= /etc/default/%s" % faults.WORKER_SERVICE).stdout
        return int(out.split("--concurrency=", 1)[1].split()[0].strip('"'))

    # the worker's memory --------------------------------------------------------------------
    def worker_memory(self):
        """{host: (processes, RSS KiB, PSS KiB)} of every process of the worker's node units."""
        script = r"""
set -e
total_rss=0; total_pss=0; n=0
for unit in $(systemctl list-units --plain --no-legend 'celeryd-xapi@*.service' | awk '{print $1}'); do
  main=$(systemctl show -p MainPID --value "$unit")
  [ "$main" != 0 ] || continue
  for pid in $main $(pgrep -P "$main" || true); do
    rss=$(awk '/^Rss:/ {print $2}' "/proc/$pid/smaps_rollup")
    pss=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup")
    total_rss=$((total_rss + rss)); total_pss=$((total_pss + pss)); n=$((n + 1))
  done
done
echo "$n $total_rss $total_pss"
"""
        memory = {}
        for host in self.hosts:
            n, rss, pss = faults.run(host, "bash -c %s" % shlex.quote(script)).stdout.split()
            memory[host] = (int(n), int(rss), int(pss))
        return memory


def spread(values, form="%.2f"):
    """'median (min to max)' of VALUES."""
    return (form + " (" + form + " to " + form + ")") % (statistics.median(values), min(values), max(values))
