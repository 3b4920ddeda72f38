"""Test lab only: the stand-in for a Pod site's web service (uwsgi-pod).

Like Pod, every request uses the site's Redis without a password: the cache on db 3 and the
session store on db 4. A request answers 200 only if both worked, else 500 with Redis's error. It
serves the socket systemd passes (uwsgi-pod.socket), so a restart of the service refuses no
connection, as uwsgi's graceful reload does.
"""

import http.server
import os
import socket
import sys

REDIS = ("127.0.0.1", 6379)


def command(stream, sock, *words):
    sock.sendall(("*%d\r\n" % len(words) + "".join("$%d\r\n%s\r\n" % (len(str(w)), w) for w in words)).encode())
    line = stream.readline().decode().rstrip("\r\n")
    if line.startswith("$") and line != "$-1":
        line = stream.read(int(line[1:]) + 2).decode().rstrip("\r\n")
    if line.startswith("-"):
        raise RuntimeError("redis: " + line[1:])
    return line


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        try:
            with socket.create_connection(REDIS, timeout=5) as sock:
                stream = sock.makefile("rb")
                command(stream, sock, "SELECT", 3)
                hits = command(stream, sock, "INCR", "lab:web:hits").lstrip(":")
                command(stream, sock, "SELECT", 4)
                command(stream, sock, "SETEX", "lab:session:" + hits, 3600, "session-" + hits)
                if command(stream, sock, "GET", "lab:session:" + hits) != "session-" + hits:
                    raise RuntimeError("the session store lost a session")
            status, body = 200, "ok %s\n" % hits
        except (OSError, RuntimeError) as exc:
            status, body = 500, "error %s\n" % exc
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


def main():
    if os.environ.get("LISTEN_FDS") != "1":
        sys.exit("lab_pod_web: start it through uwsgi-pod.socket (no socket from systemd)")
    server = http.server.ThreadingHTTPServer(("", 0), Handler, bind_and_activate=False)
    server.socket = socket.socket(fileno=3)
    server.serve_forever()


if __name__ == "__main__":
    main()
