# Reads a redis:// or rediss:// URL on stdin, connects, authenticates with the URL's credentials,
# sends PING, then reads what the worker depends on: the server's version and its eviction policy.
# Prints what went wrong (never the password) and exits 1 on a refusal; else one JSON line.
import json
import socket
import ssl
import sys
from urllib.parse import unquote, urlsplit

url = urlsplit(sys.stdin.read().strip())
timeout = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
host, port = url.hostname, url.port or 6379


def command(*words):
    out = b"*%d\r\n" % len(words)
    for word in words:
        data = word.encode()
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    return out


def info(sock, stream, section):
    """{key: value} of INFO SECTION; {} when the server refuses it."""
    sock.sendall(command("INFO", section))
    header = stream.readline().decode(errors="replace").strip()
    if not header.startswith("$"):
        return {}
    body = stream.read(int(header[1:]) + 2).decode(errors="replace")
    return dict(line.split(":", 1) for line in body.splitlines() if ":" in line and not line.startswith("#"))


try:
    sock = socket.create_connection((host, port), timeout=timeout)
    if url.scheme == "rediss":
        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
    stream = sock.makefile("rb")
    if url.password:
        args = [unquote(url.username)] if url.username else []
        sock.sendall(command("AUTH", *(args + [unquote(url.password)])))
        reply = stream.readline().decode(errors="replace").strip()
        if not reply.startswith("+"):
            print("AUTH answered %s" % reply.split(" ")[0])
            sys.exit(1)
    sock.sendall(command("PING"))
    reply = stream.readline().decode(errors="replace").strip()
    if not reply.startswith("+"):
        print("PING answered %s" % reply[:60])
        sys.exit(1)
    server, memory = info(sock, stream, "server"), info(sock, stream, "memory")
except (OSError, ssl.SSLError) as exc:
    print("cannot talk to %s:%s: %s" % (host, port, exc))
    sys.exit(1)
print(json.dumps({"version": server.get("redis_version", ""), "policy": memory.get("maxmemory_policy", ""),
                  "used": int(memory.get("used_memory", 0)), "limit": int(memory.get("maxmemory", 0))}))
