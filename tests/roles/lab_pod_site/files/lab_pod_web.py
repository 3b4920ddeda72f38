"""Test lab only: the stand-in for a Pod site's web service (uwsgi-pod).

Like Pod, every request uses the site's Redis without a password: the cache on db 3 and the
session store on db 4. A request answers 200 only if both worked, else 500 with Redis's error. It
serves the socket systemd passes (uwsgi-pod.socket), so a restart of the service refuses no
connection. SIGHUP reloads it as uwsgi's SIGHUP does: it stops accepting, finishes the requests in
flight, and executes itself again in the same process, on the same socket. GET /loaded answers the
time at which this process last started or reloaded, as Pod would have read its settings then.
"""

import http.server
import os
import signal
import socket
import sys
import threading
import time

REDIS = ("127.0.0.1", 6379)
LOADED = time.time()


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
        if self.path == "/loaded":
            status, body = 200, "%.6f\n" % LOADED
        else:
            status, body = self.use_redis()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(body.encode())

    @staticmethod
    def use_redis():
        try:
            with socket.create_connection(REDIS, timeout=5) as sock:
                stream = sock.makefile("rb")
                command(stream, sock, "SELECT", 3)
                hits = command(stream, sock, "INCR", "lab:web:hits").lstrip(":")
                command(stream, sock, "SELECT", 4)
                command(stream, sock, "SETEX", "lab:session:" + hits, 3600, "session-" + hits)
                if command(stream, sock, "GET", "lab:session:" + hits) != "session-" + hits:
                    raise RuntimeError("the session store lost a session")
            return 200, "ok %s\n" % hits
        except (OSError, RuntimeError) as exc:
            return 500, "error %s\n" % exc

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    """Counts the connections it accepted and has not answered yet, so that a reload can wait for them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.in_flight = 0
        self.idle = threading.Condition()

    def process_request(self, request, client_address):
        with self.idle:
            self.in_flight += 1
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.idle:
                self.in_flight -= 1
                self.idle.notify_all()


def main():
    if os.environ.get("LISTEN_FDS") != "1":
        sys.exit("lab_pod_web: start it through uwsgi-pod.socket (no socket from systemd)")
    server = Server(("", 0), Handler, bind_and_activate=False)
    server.socket = socket.socket(fileno=3)
    reload_asked = threading.Event()
    signal.signal(signal.SIGHUP, lambda *_: reload_asked.set())
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    reload_asked.wait()
    # The socket stays open: connections that arrive meanwhile wait in its backlog for the next process.
    server.shutdown()
    with server.idle:
        server.idle.wait_for(lambda: server.in_flight == 0)
    os.set_inheritable(3, True)
    os.execv(sys.executable, [sys.executable] + sys.argv)


if __name__ == "__main__":
    main()
