# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Keep a reserve of the broker's memory that the frontal cannot fill.

Under noeviction, a broker at its maxmemory refuses every command that may grow memory, and every
command queued in a MULTI: the workers' consume (BLMOVE) and their acknowledgements too, so a flood
of enqueues would stop the delivery that frees the memory. This service takes the enqueue command
away from the frontal's broker user when used memory crosses HIGH percent of maxmemory, and gives it
back under LOW percent. Pod's enqueues are then refused with NOPERM (each one raised in Pod's task,
counted in the broker's ACL LOG), while the workers, whose users keep their rights, drain the queue.

It reads the state of the user from the broker itself (ACL DRYRUN) at each look, so an ACL LOAD by
the role, or a restart of the broker, never leaves the two out of step.

Configuration, from the environment (the unit's EnvironmentFile):
  XAPI_RESERVE_PORT, XAPI_RESERVE_USER (the broker's admin user), XAPI_RESERVE_PASSWORD_FILE,
  XAPI_RESERVE_FRONTAL_USER, XAPI_RESERVE_COMMAND (lpush), XAPI_RESERVE_HIGH, XAPI_RESERVE_LOW (percent),
  XAPI_RESERVE_INTERVAL (seconds between looks), XAPI_RESERVE_SOCKET (the broker's Unix socket, used instead
  of 127.0.0.1:XAPI_RESERVE_PORT when set: a broker serving TLS has no plaintext TCP port).
"""

from __future__ import annotations

import os
import signal
import sys
import time

from _resp import Client, RedisError  # the collection's Redis client, installed next to this file


def info_fields(text):
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


def percent_used(fields):
    """Used memory in percent of maxmemory, or None without a limit."""
    limit = int(fields.get("maxmemory") or 0)
    if limit <= 0:
        return None
    return 100.0 * int(fields.get("used_memory") or 0) / limit


def decide(percent, closed, high, low):
    """Whether the frontal's enqueues should be refused now (hysteresis between LOW and HIGH)."""
    if percent is None:
        return False
    if percent >= high:
        return True
    if percent < low:
        return False
    return closed


class Reserve(object):
    def __init__(self, client, frontal_user, command, high, low, log=print):
        self.client, self.user, self.command = client, frontal_user, command.lower()
        self.high, self.low, self.log = high, low, log
        self.closed_since = None
        self.refused_at_close = 0
        self.warned = False

    def allowed(self):
        """Whether the frontal's user may run the enqueue command now, as the broker says: OK, or the reason
        why not (an error when the user does not exist: the service never creates it)."""
        return self.client.execute("ACL", "DRYRUN", self.user, self.command, "xapi", "x") == "OK"

    def refused(self):
        """The frontal's enqueues that the broker refused, as its ACL LOG counts them (Redis 7.0 has no
        per-reason counter in INFO)."""
        total = 0
        for entry in self.client.execute("ACL", "LOG") or []:
            fields = dict(zip(entry[0::2], entry[1::2]))
            if fields.get(b"username") == self.user.encode() and fields.get(b"object") == self.command.encode():
                total += int(fields.get(b"count") or 0)
        return total

    def look(self):
        fields = info_fields(self.client.execute("INFO", "memory"))
        percent = percent_used(fields)
        allowed = self.allowed()
        refuse = decide(percent, not allowed, self.high, self.low)
        # The monitoring command is polled every few minutes: a flood can cross from LOW to HIGH between two polls.
        if percent is not None and percent >= self.low and allowed and not refuse and not self.warned:
            self.log("warning: broker memory at %.1f%% of its maxmemory (over %g%%): the frontal's enqueues will be refused "
                     "from %g%%" % (percent, self.low, self.high))
        self.warned = percent is not None and percent >= self.low
        if refuse and allowed:
            self.client.execute("ACL", "SETUSER", self.user, "-" + self.command)
            self.closed_since, self.refused_at_close = time.monotonic(), self.refused()
            self.log("broker memory at %.1f%% of its maxmemory (over %g%%): the frontal's enqueues (user %s) are refused "
                     "until it is under %g%%, so that the workers keep draining" % (percent, self.high, self.user, self.low))
        elif not refuse and not allowed:
            self.client.execute("ACL", "SETUSER", self.user, "+" + self.command)
            if self.closed_since is None:
                self.log("the frontal's user %s could not %s: given back (broker memory at %s)"
                         % (self.user, self.command.upper(), "no limit" if percent is None else "%.1f%%" % percent))
            else:
                closed_for, refused = time.monotonic() - self.closed_since, self.refused() - self.refused_at_close
                self.log("broker memory at %.1f%% of its maxmemory: the frontal's enqueues are accepted again after %.0f s, "
                         "%d LPUSH refused meanwhile (Celery may retry one enqueue)" % (percent, closed_for, refused))
            self.closed_since = None
        return refuse


def main(environ=None):
    environ = os.environ if environ is None else environ
    port = int(environ.get("XAPI_RESERVE_PORT", "6380"))
    with open(environ["XAPI_RESERVE_PASSWORD_FILE"], encoding="utf-8") as secret:
        password = secret.read().rstrip("\n")
    high, low = float(environ.get("XAPI_RESERVE_HIGH", "90")), float(environ.get("XAPI_RESERVE_LOW", "80"))
    interval = float(environ.get("XAPI_RESERVE_INTERVAL", "0.2"))
    signal.signal(signal.SIGTERM, lambda *args: sys.exit(0))
    while True:
        try:
            with Client(environ.get("XAPI_RESERVE_SOCKET") or "127.0.0.1", port, username=environ["XAPI_RESERVE_USER"], password=password, timeout=5) as client:
                reserve = Reserve(client, environ["XAPI_RESERVE_FRONTAL_USER"], environ.get("XAPI_RESERVE_COMMAND", "lpush"),
                                  high, low, log=lambda text: print(text, flush=True))
                try:
                    while True:
                        reserve.look()
                        time.sleep(interval)
                finally:
                    # Stopped alone, the service never leaves the frontal shut out; with the broker, its
                    # users come back from the ACL file anyway.
                    if reserve.closed_since is not None:
                        client.execute("ACL", "SETUSER", reserve.user, "+" + reserve.command)
                        print("stopped: the frontal's enqueues are accepted again", flush=True)
        except RedisError as exc:
            # The broker restarting: look again soon, and say so once per failure.
            print("broker on port %d: %s; trying again" % (port, exc), flush=True)
            time.sleep(1)


if __name__ == "__main__":
    main()
