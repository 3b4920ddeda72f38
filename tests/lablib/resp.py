"""Raw Redis conversations from inside a lab host: the hosts need no redis-cli or client library.

talk() runs a tiny RESP client with the host's python3 (podman exec, as root) against HOST:PORT and
returns the first line of each answer ("+OK", "-NOAUTH ...", ":3", "$5" ...), or the value itself for
a bulk string.
"""

import subprocess

from . import lab

_CLIENT = r"""
import socket, ssl, sys
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), 5)
if sys.argv[3] == "tls":
    sock = ssl.create_default_context().wrap_socket(sock, server_hostname=sys.argv[1])
answers = sock.makefile("rb")
for command in sys.argv[4:]:
    words = command.split(" ")
    sock.sendall(("*%d\r\n" % len(words) + "".join("$%d\r\n%s\r\n" % (len(w), w) for w in words)).encode())
    line = answers.readline().decode().rstrip("\r\n")
    if line.startswith("$") and line != "$-1":
        line = answers.read(int(line[1:]) + 2).decode().rstrip("\r\n")
    print(line)
"""


def talk(via, host, port, *commands, tls=False):
    """Send each command (words separated by one space) to Redis at HOST:PORT from the lab host VIA; with TLS,
    the server's certificate verified against the host's system CA store (where the lab CA is)."""
    done = subprocess.run(
        ["podman", "exec", "-i", lab.container(via), "python3", "-c", _CLIENT, host, str(port), "tls" if tls else "plain", *commands],
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()
