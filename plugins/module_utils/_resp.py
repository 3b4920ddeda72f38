# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module util is PRIVATE to the collection (hence the leading underscore): it is not a public
# API, it can change or go away in any release, even a bugfix one. Do not import it from another
# collection or from your own modules; use the esup_pod.xapi modules instead.
"""A small Redis client (the RESP protocol) on the standard library alone.

The modules that run as root on a Pod host use it rather than the site's redis package: root never
imports anything from the site's virtualenv or runs the site's Python. It speaks RESP2, which every
Redis since 2.0 understands, one command at a time or several at once (pipeline).
"""

from __future__ import annotations

import socket
import ssl


class RedisError(Exception):
    """The connection failed or the server closed it."""


class ReplyError(RedisError):
    """The server answered a command with an error (-ERR, -WRONGTYPE, -NOAUTH ...)."""


def _word(arg):
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, bool):
        raise TypeError("a boolean is not a Redis argument")
    if isinstance(arg, (int, float)):
        return str(arg).encode("ascii")
    if isinstance(arg, str):
        return arg.encode("utf-8")
    raise TypeError("%s is not a Redis argument" % type(arg).__name__)


def encode(*args):
    """One command as RESP: an array of bulk strings (str as UTF-8, bytes as they are, numbers in decimal)."""
    words = [_word(arg) for arg in args]
    parts = [b"*%d\r\n" % len(words)]
    for word in words:
        parts.append(b"$%d\r\n" % len(word))
        parts.append(word)
        parts.append(b"\r\n")
    return b"".join(parts)


def read_reply(stream):
    """Read one reply from a binary file-like STREAM: str (status), int, bytes or None (bulk), list, or a
    ReplyError instance for an error reply (returned, not raised, so that a pipeline reads every reply)."""
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise RedisError("the server closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode("utf-8", "replace")
    if kind == b"-":
        return ReplyError(rest.decode("utf-8", "replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = stream.read(size + 2)
        if len(data) != size + 2:
            raise RedisError("the server closed the connection")
        return data[:-2]
    if kind == b"*":
        size = int(rest)
        if size < 0:
            return None
        return [read_reply(stream) for index in range(size)]
    raise RedisError("not a Redis reply: %r" % line[:40])


class Client(object):
    """One connection to one Redis database: AUTH (with a user name from Redis 6 on) and SELECT at connect.
    With TLS, the server's certificate and name are verified against CA_FILE, else the system's CA store.
    A HOST that is a path (starting with '/') is the server's Unix socket; PORT is then ignored."""

    def __init__(self, host, port=6379, db=0, username=None, password=None, tls=False, timeout=10.0, ca_file=None):
        self.address = host if host.startswith("/") else "%s:%s" % (host, port)
        try:
            if host.startswith("/"):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                try:
                    sock.connect(host)
                except OSError:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection((host, int(port)), timeout)
            if tls:
                sock = ssl.create_default_context(cafile=ca_file).wrap_socket(sock, server_hostname=host)
        except (OSError, ValueError) as exc:
            raise RedisError("cannot connect to %s: %s" % (self.address, exc)) from exc
        self._sock = sock
        self._stream = sock.makefile("rb")
        if password:
            self.execute(*(("AUTH", username, password) if username else ("AUTH", password)))
        if db:
            self.execute("SELECT", db)

    def pipeline(self, commands):
        """Send every command of COMMANDS (tuples of arguments) at once, then read their replies in order;
        raise the first error reply after reading them all."""
        commands = list(commands)
        if not commands:
            return []
        try:
            self._sock.sendall(b"".join(encode(*command) for command in commands))
            replies = [read_reply(self._stream) for command in commands]
        except (OSError, ValueError) as exc:
            raise RedisError("%s: %s" % (self.address, exc)) from exc
        for reply in replies:
            if isinstance(reply, ReplyError):
                raise reply
        return replies

    def execute(self, *args):
        """Send one command and return its reply; an error reply raises ReplyError."""
        return self.pipeline([args])[0]

    def close(self):
        for thing in (self._stream, self._sock):
            try:
                thing.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
