"""TLS on the broker link on the converged lab: the worker is on another host than the broker, so the broker
serves TLS only, its certificate signed by the lab CA, and both Pods (the site's on the frontal, the worker's
on the encoding host) reach it with rediss://, verifying that certificate with their own pinned kombu.

The capture runs tcpdump in the frontal's network namespace (the broker's host): it sees the worker's
connections from the encoding host and the frontal's own enqueues.
"""

import base64
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))

from lablib import lab, lrs, pod  # noqa: E402

BROKER_HOST, BROKER_PORT = "frontal", 6380  # the broker role's host and default port (xapi_broker_port)
WRONG_CA = "/tmp/lab-wrong-ca.crt"  # made on each client host by the test

# Pod's own broker URL (settings_local), its ssl_ca_certs swapped for argv[1] when given, through kombu: PING.
# The system store (which holds the lab CA) is swapped for a CA that did not sign the broker's certificate:
# only the URL's ssl_ca_certs can then make the certificate trusted.
_KOMBU_PING = r"""
import os, sys
os.environ["SSL_CERT_FILE"], os.environ["SSL_CERT_DIR"] = "/tmp/lab-wrong-ca.crt", "/nonexistent"
from urllib.parse import quote
from kombu import Connection
from pod.custom import settings_local as s
url = s.XAPI_CELERY_BROKER_URL
if len(sys.argv) > 1:
    url = url.split("?")[0] + "?ssl_cert_reqs=required&ssl_ca_certs=" + quote(sys.argv[1], safe="")
try:
    with Connection(url, connect_timeout=5) as connection:
        connection.ensure_connection(max_retries=1)
        print("PING", connection.default_channel.client.ping())
except Exception as exc:
    print("FAILED", type(exc).__name__, exc)
"""


def kombu_ping(via, ca_file=None):
    """What kombu in the Pod of VIA answers when it pings the broker with Pod's URL (and CA_FILE instead of its CA)."""
    process = pod.run_in_pod(via, _KOMBU_PING, *([ca_file] if ca_file else []))
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return out.strip().splitlines()[-1]


def test_the_broker_has_no_plaintext_tcp_port():
    listeners = lab.host(BROKER_HOST).check_output("ss -Hltn")
    config = lab.host(BROKER_HOST).check_output("grep -E '^(port|tls-port) ' /etc/redis/redis-xapi.conf")
    assert config.split("\n") == ["port 0", "tls-port %d" % BROKER_PORT]
    assert re.search(r":%d\s" % BROKER_PORT, listeners), listeners


def test_a_plaintext_client_on_another_host_is_refused():
    """From the encoding host, Redis's protocol in clear on the broker's port gets no answer: the server
    expects a TLS handshake and drops the connection."""
    script = ("import socket; s = socket.create_connection(('%s', %d), 5); s.sendall(b'PING\\r\\n');\n"
              "try:\n    print(repr(s.recv(100)))\nexcept OSError as exc:\n    print(type(exc).__name__)\n") % (BROKER_HOST, BROKER_PORT)
    out = lab.host("encoding").check_output("python3 -c %s" % quote_shell(script))
    assert "PONG" not in out and out in ("b''", "ConnectionResetError"), out


def make_wrong_ca(via):
    """A self-signed CA on the lab host VIA that signed nothing of the lab's, at WRONG_CA."""
    made = lab.host(via).run("test -s {0} || openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj '/CN=Not the lab CA' "
                             "-keyout /tmp/lab-wrong-ca.key -out {0} 2>/dev/null; chmod 0644 {0}".format(WRONG_CA))
    assert made.rc == 0, made.stderr


@pytest.mark.parametrize("via", ["frontal", "encoding"])
def test_pods_kombu_verifies_the_broker_certificate(via):
    """The same URL, the same kombu: the lab CA connects, a CA that did not sign the broker's certificate fails."""
    make_wrong_ca(via)
    assert kombu_ping(via) == "PING True"  # Pod's own URL: its ssl_ca_certs is the lab CA
    refused = kombu_ping(via, WRONG_CA)
    assert refused.startswith("FAILED") and "certificate verify failed" in refused, refused


def quote_shell(text):
    return "'" + text.replace("'", "'\"'\"'") + "'"


def test_a_capture_during_delivery_shows_no_password_and_no_statement():
    """tcpdump in the broker host's network namespace while Pod enqueues and the worker delivers: the
    broker passwords and the statements' ids never cross the wire in clear. A marker sent in clear to the
    same port shows that the capture does see payloads."""
    if shutil.which("tcpdump") is None:
        pytest.fail("tcpdump is missing on this machine: scripts/setup.sh installs it")
    pid = subprocess.run(["podman", "inspect", "-f", "{{.State.Pid}}", lab.container(BROKER_HOST)], check=True,
                         text=True, stdout=subprocess.PIPE).stdout.strip()
    marker = "lab-clear-marker-%s" % uuid.uuid4().hex
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "broker.pcap"
        capture = subprocess.Popen(["nsenter", "-t", pid, "-n", "tcpdump", "-i", "any", "-U", "-s", "0", "-w", str(pcap),
                                    "tcp", "port", str(BROKER_PORT)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert lab.until("tcpdump listening", lambda: "listening on" in capture.stderr.readline(), timeout=30, interval=0)
            ids = pod.enqueue(5, tag="broker-tls-capture")
            lrs.LRS().wait_for(ids, timeout=120)
            lab.host("encoding").run("python3 -c %s" % quote_shell(
                "import socket; s = socket.create_connection(('%s', %d), 5); s.sendall(b'%s'); s.close()"
                % (BROKER_HOST, BROKER_PORT, marker)))
            lab.until("the marker in the capture", lambda: marker.encode() in pcap.read_bytes(), timeout=30, interval=0.2)
        finally:
            capture.terminate()
            capture.wait(timeout=30)
        data = pcap.read_bytes()
    assert marker.encode() in data, "the capture saw no payload: it proves nothing"
    for secret in lab.broker_secrets():
        assert secret.encode() not in data, "a broker password crossed the network in clear"
    # Redis's commands and Celery's headers are plain text; kombu puts the body in base64: each id is
    # looked for as it is and in base64 at its three alignments.
    for word in (b"AUTH", b"LPUSH", b"BRPOP", b"send_xapi_statement"):
        assert word not in data, "%r crossed the network in clear" % word
    for statement_id in ids:
        forms = [statement_id.encode()] + [base64.b64encode(b"x" * pad + statement_id.encode())[4:-4] for pad in range(3)]
        assert not [form for form in forms if form in data], "statement %s crossed the network in clear" % statement_id


@pytest.mark.once
@pytest.mark.parametrize("variable, value, message", [
    ("xapi_broker_tls_cert_file", "/nonexistent/broker.crt",
     "broker_tls_cert_file (/nonexistent/broker.crt) is not a readable file on frontal"),
    ("xapi_broker_tls_key_file", "/nonexistent/broker.key",
     "broker_tls_key_file (/nonexistent/broker.key) is not a readable file on frontal"),
    ("xapi_broker_tls_ca_file", WRONG_CA,
     "broker_tls_ca_file %s does not sign broker_tls_cert_file /etc/ssl/lab-broker/broker.crt" % WRONG_CA),
])
def test_bad_tls_input_stops_the_run_before_any_change(variable, value, message):
    make_wrong_ca(BROKER_HOST)
    rc, out = lab.run_playbook("playbooks/site.yml", "-e", "%s=%s" % (variable, value))
    assert rc != 0, out[-3000:]
    assert message in " ".join(out.split()), out[-3000:]
    recap = lab.changed_by_host(out)
    assert recap and set(recap.values()) == {0}, recap
