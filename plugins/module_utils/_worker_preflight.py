# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module util is PRIVATE to the collection (hence the leading underscore): it is not a public
# API, it can change or go away in any release, even a bugfix one. Do not import it from another
# collection or from your own modules; use the esup_pod.xapi modules instead.
"""The worker role's preflight look at the broker and the LRS (esup_pod.xapi.worker_preflight): a Redis
conversation through the collection's own Redis client (_resp: the standard library only, the host's own
Python, before any virtualenv exists), and the messages that name what to fix."""

from __future__ import annotations

import re
import socket
import time
from urllib.parse import urlsplit

from ._resp import Client, RedisError, ReplyError
from ._xapi_check import parse_broker_url

# BLMOVE, with which a node takes each message, came with Redis 6.2.
REDIS_MIN = (6, 2)
# The LRS's answers to an empty list that fail the preflight; others (400: an empty list refused) pass.
LRS_BAD_STATUSES = (401, 403, 404, 405, 407, 408, 413, 429)


class BrokerRefused(Exception):
    """The broker answered, but not as the worker needs: the message says what it answered."""


def wait_port(host, port, timeout, clock=time.monotonic, sleep=time.sleep):
    """True once HOST:PORT accepts a TCP connection, False when TIMEOUT seconds pass first."""
    deadline = clock() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=max(0.5, min(timeout, 5))).close()
            return True
        except OSError:
            if clock() >= deadline:
                return False
            sleep(1)


def _info(client, section):
    """{key: value} of INFO SECTION; {} when the server refuses it."""
    try:
        body = client.execute("INFO", section).decode(errors="replace")
    except ReplyError:
        return {}
    return dict(line.split(":", 1) for line in body.splitlines() if ":" in line and not line.startswith("#"))


def redis_look(url, timeout=5.0):
    """Connect to the redis:// or rediss:// URL, authenticate with its credentials, PING, then read what the
    worker depends on: {"version", "policy", "used", "limit"}. Raises BrokerRefused naming what went wrong,
    never the password."""
    parts = parse_broker_url(url)
    host, port = parts["host"], parts["port"]
    try:
        with Client(host, port, tls=parts["scheme"] == "rediss", ca_file=parts["ca_file"], timeout=timeout) as client:
            if parts["password"]:
                args = [parts["username"]] if parts["username"] else []
                try:
                    client.execute("AUTH", *(args + [parts["password"]]))
                except ReplyError as exc:
                    raise BrokerRefused("AUTH answered -%s" % str(exc).split(" ", maxsplit=1)[0])
            try:
                client.execute("PING")
            except ReplyError as exc:
                raise BrokerRefused("PING answered %s" % ("-%s" % exc)[:60])
            server, memory = _info(client, "server"), _info(client, "memory")
    except RedisError as exc:
        raise BrokerRefused("cannot talk to %s:%s: %s" % (host, port, exc.__cause__ or exc))
    return {"version": server.get("redis_version", ""), "policy": memory.get("maxmemory_policy", ""),
            "used": int(memory.get("used_memory", 0)), "limit": int(memory.get("maxmemory", 0))}


def version_tuple(version):
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])


def broker_problem(address, look):
    """Why the broker LOOK found at ADDRESS cannot carry the worker's queue, or None. An unknown version or
    policy (INFO refused) is left to the worker's own check."""
    if look["version"] and version_tuple(look["version"]) < REDIS_MIN:
        return ("broker at %s runs Redis %s, which has no BLMOVE: the worker needs Redis 6.2 or later (worker_broker_url)"
                % (address, look["version"]))
    if look["policy"].startswith("allkeys-"):
        return ("broker at %s evicts any key when full (maxmemory-policy %s), queued statements included: set "
                "maxmemory-policy noeviction on it, or use the broker of esup_pod.xapi.broker (worker_broker_url)"
                % (address, look["policy"]))
    return None


def broker_warning(address, look):
    if look["policy"].startswith("volatile-"):
        return ("the broker at %s evicts keys with an expiry when full (maxmemory-policy %s): the worker's keys have "
                "none, but the site's other data there may go" % (address, look["policy"]))
    return None


def redirect_target(url, location):
    """Where a redirect leads, its password masked: LOCATION made absolute when it is a path."""
    if not location:
        target = "an unnamed location"
    elif re.match(r"/[^/]", location):
        parts = urlsplit(url)
        target = "%s://%s%s" % (parts.scheme, parts.netloc, location)
    else:
        target = location
    return re.sub(r"^([a-z][a-z0-9+.-]*://[^/:@]*):[^/@]*@", r"\1:********@", target)


def lrs_problem(url, login, status, location=None, error=None):
    """Why the LRS's answer STATUS to an empty list of statements stops the preflight, or None (-1: no answer)."""
    if 300 <= status < 400:
        return ("worker_lrs_url (XAPI_LRS_URL) redirects to %s (HTTP %d): set that URL in xapi_lrs_url"
                % (redirect_target(url, location), status))
    if status in (401, 403):
        return "LRS refused the credentials (worker_lrs_login '%s', worker_lrs_password): HTTP %d" % (login, status)
    if status <= 0:
        return "LRS unreachable at %s (worker_lrs_url): %s" % (url, error or "no answer")
    if status in LRS_BAD_STATUSES or status >= 500:
        return ("LRS at %s (worker_lrs_url) answered HTTP %d to an empty list of statements: is it the LRS's statements "
                "URL?" % (url, status))
    return None
