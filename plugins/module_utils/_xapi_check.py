# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module util is PRIVATE to the collection (hence the leading underscore): it is not a public
# API, it can change or go away in any release, even a bugfix one. Do not import it from another
# collection or from your own modules; use the esup_pod.xapi modules instead.
"""Pure logic of the esup_pod.xapi.xapi_check module and of the worker role's monitoring command.

Nothing here touches the network or imports celery, redis or requests: URL parsing, redaction,
the messages that name a broken link, the threshold rules, the probe statement, the
summary of the per-link checks, and the monitoring plugin's state and performance data.
_xapi_check_io.py does the I/O and calls these.
"""

from __future__ import annotations

import datetime
import json
import re
from urllib.parse import parse_qs, unquote, urljoin, urlsplit, urlunsplit

MASK = "********"

# The activity every probe statement is about: admins filter it out of their analytics with it.
PROBE_ACTIVITY_ID = "urn:esup-pod:xapi:probe"
PROBE_VERB_ID = "http://adlnet.gov/expapi/verbs/interacted"
PROBE_ACTOR_MBOX = "mailto:xapi-probe@example.org"

# Pod's one xAPI task (pod/xapi/xapi_tasks.py).
POD_TASK_NAME = "pod.xapi.xapi_tasks.send_xapi_statement_task"
# The Celery queue Pod routes it to.
QUEUE = "xapi"

# kombu's redis transport: a queue is a list named after it, and a message sent with a priority
# goes to a sibling list named QUEUE + SEP + STEP (see kombu.transport.redis.Channel).
KOMBU_PRIORITY_SEP = "\x06\x16"
KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)

REDIS_SCHEMES = ("redis", "rediss")
DEFAULT_REDIS_PORT = 6379

# Names of the links, in pipeline order: the order of the `checks` list and of the messages.
LINKS = ("broker", "memory", "consumers", "backlog", "dead_letters", "lrs", "credentials", "probe")

# Where the worker role keeps the statements the LRS refused for good (HTTP 4xx): a Redis list.
DEAD_LETTER_KEY = "xapi.dead-letters"

# The broker's used memory, in percent of its maxmemory, above which the checks warn and fail.
MEMORY_WARNING = 80.0
MEMORY_CRITICAL = 95.0
# The only eviction policy under which a broker at its maxmemory refuses writes: under the others it
# evicts keys instead, and is never "full".
NO_EVICTION = "noeviction"

# Where the worker keeps, for PROBE_ANSWER_TTL seconds, the LRS's answer to its POST of a probe statement
# (a Redis string per probe id): a probe proves delivery from it when no account may read the LRS.
PROBE_ANSWER_PREFIX = "xapi.probe-answer:"
PROBE_ANSWER_TTL = 600


class BrokerURLError(ValueError):
    """The broker URL cannot be used (empty, not redis, bad port or db)."""


def format_seconds(value):
    """Write a number of seconds without a useless '.0': 30 -> '30', 2.5 -> '2.5'."""
    return "%g" % float(value)


def parse_broker_url(url):
    """Split a redis broker URL the way kombu reads it.

    Returns a dict: scheme, host, port, db, username, password (None when absent).
    Raises BrokerURLError on an empty or non-redis URL, a bad port or a bad db number.
    """
    if not url:
        raise BrokerURLError("broker_url is empty")
    parts = urlsplit(url)
    if parts.scheme not in REDIS_SCHEMES:
        raise BrokerURLError(
            "broker_url %s is not a redis:// or rediss:// URL" % redact_url(url)
        )
    try:
        port = parts.port or DEFAULT_REDIS_PORT
    except ValueError:
        raise BrokerURLError("broker_url %s has a bad port" % redact_url(url))
    path = parts.path.strip("/")
    if not path:
        db = 0
    elif path.isdigit():
        db = int(path)
    else:
        raise BrokerURLError(
            "broker_url %s has a bad database number %r" % (redact_url(url), path)
        )
    return {
        "scheme": parts.scheme,
        "host": parts.hostname or "localhost",
        "port": port,
        "db": db,
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password is not None else None,
        "ca_file": (parse_qs(parts.query).get("ssl_ca_certs") or [None])[-1],
    }


def broker_address(url):
    """HOST:PORT of a broker URL (what the messages show)."""
    parsed = parse_broker_url(url)
    return "%s:%s" % (parsed["host"], parsed["port"])


def redact_url(url):
    """The URL with the password of its userinfo replaced by ********.

    redis://:secret@host:6379/6 -> redis://:********@host:6379/6. A URL without a password is
    returned as is; anything that does not parse is masked whole.
    """
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if "@" not in parts.netloc:
        return url
    userinfo, hostport = parts.netloc.rsplit("@", 1)
    if ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        userinfo = "%s:%s" % (user, MASK)
    return urlunsplit(
        (parts.scheme, "%s@%s" % (userinfo, hostport), parts.path, parts.query, parts.fragment)
    )


def scrub(text, secrets):
    """Replace every non-empty secret of `secrets` found in `text` by ********."""
    if text is None:
        return text
    text = str(text)
    # Longest first: a secret that contains another one is masked whole.
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def backlog_keys(queue, sep=KOMBU_PRIORITY_SEP, steps=KOMBU_PRIORITY_STEPS):
    """The redis keys that hold the messages waiting in `queue` (kombu's redis transport)."""
    keys = []
    for step in steps:
        key = queue if not step else "%s%s%s" % (queue, sep, step)
        if key not in keys:
            keys.append(key)
    return keys


def consumers_of(active_queues, queue):
    """Sorted names of the worker nodes whose active queues include `queue`.

    `active_queues` is what celery's inspect().active_queues() returns: None when no worker
    answered, else {node: [{"name": queue, ...}, ...]}.
    """
    nodes = []
    for node, queues in (active_queues or {}).items():
        if any(isinstance(q, dict) and q.get("name") == queue for q in queues or []):
            nodes.append(node)
    return sorted(nodes)


# Messages: each names the broken link, then, after a colon, what to do next. Tests and admins grep
# for the words before the colon.
def msg_broker_unreachable(address):
    return ("broker unreachable at %s: check that the broker runs (systemctl status redis-server@xapi on the "
            "broker host) and that this host reaches that port (docs/admin-guide.md, network flows)" % address)


def msg_broker_auth():
    return ("broker refused the password: set xapi_broker_worker_password to the password of the workers' broker user "
            "(in the vault), then run site.yml")


def msg_missing_nodes(missing, queue):
    """None when every expected node consumes the queue, else the message naming those that do not."""
    if not missing:
        return None
    return ("node(s) %s do not consume queue %s: start them (systemctl start celeryd-xapi on their host) and read "
            "their log in /var/log/celeryd-xapi/" % (", ".join(sorted(missing)), queue))


def msg_consumers(count, minimum, queue):
    """None when `count` workers are enough, else the message naming the shortfall."""
    if count >= minimum:
        return None
    if count == 0:
        return ("no worker consumes queue %s: start the worker (systemctl start celeryd-xapi on the encoding hosts), "
                "then read its log in /var/log/celeryd-xapi/" % queue)
    return ("only %d worker(s) consume queue %s, expected at least %d: start the others (systemctl status "
            "celeryd-xapi on each encoding host)" % (count, queue, minimum))


def size_text(size):
    """Bytes for people: 1536 -> '1.5 KiB', 268435456 -> '256 MiB'."""
    value, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            break
        value /= 1024
    return "%s %s" % (perf_number(round(value, 1)), unit)


def broker_memory(info, warning=MEMORY_WARNING, critical=MEMORY_CRITICAL):
    """The broker's memory from its INFO memory: a dict of used, limit (bytes, 0: none), policy, percent
    (None without a limit), level (ok, warning or critical) and msg.

    A threshold that is None or negative is no threshold. Only under noeviction is a broker at its
    limit full (it refuses the frontal's enqueues): under another policy it evicts, so its memory
    is reported but raises no level.
    """
    used, limit = int(info.get("used_memory") or 0), int(info.get("maxmemory") or 0)
    policy = str(info.get("maxmemory_policy") or "")
    memory = {"used": used, "limit": limit, "policy": policy, "percent": None, "level": "ok"}
    if not limit:
        memory["msg"] = "broker has no memory limit (maxmemory 0), %s used" % size_text(used)
        return memory
    percent = round(100.0 * used / limit, 1)
    memory["percent"] = percent
    figures = "%s%% of its maxmemory (%s of %s)" % (perf_number(percent), size_text(used), size_text(limit))
    if policy != NO_EVICTION:
        memory["msg"] = ("broker memory at %s; it evicts at its limit (maxmemory-policy %s), it is never full"
                         % (figures, policy or "unknown"))
        return memory
    for level, threshold in (("critical", limit_of(critical)), ("warning", limit_of(warning))):
        if threshold is not None and percent >= threshold:
            memory["level"] = level
            memory["msg"] = ("broker memory at %s, over %s%%: when full it refuses new statements (noeviction), so "
                             "look at the backlog and the dead letters, or raise broker_maxmemory and run site.yml"
                             % (figures, perf_number(threshold)))
            return memory
    memory["msg"] = "broker memory at %s" % figures
    return memory


def msg_backlog(backlog, maximum):
    """None when the backlog is within `maximum` (a negative maximum disables the rule)."""
    if maximum is None or maximum < 0 or backlog <= maximum:
        return None
    return ("backlog %d exceeds %d: look at the LRS checks and the workers' logs in /var/log/celeryd-xapi/ (the "
            "workers deliver slower than Pod enqueues, or not at all)" % (backlog, maximum))


def msg_dead_letters(count, maximum, key=DEAD_LETTER_KEY):
    """None when the dead letters are within `maximum` (a negative maximum disables the rule)."""
    if maximum is None or maximum < 0 or count <= maximum:
        return None
    return ("%d statement(s) refused by the LRS wait in %s (more than %d): list them (celeryd-xapi-dead-letters list), "
            "fix the cause, then replay them (celeryd-xapi-dead-letters replay --all)" % (count, key, maximum))


def msg_lrs_unreachable(url):
    return ("LRS unreachable at %s: check xapi_lrs_url, that this host resolves and reaches it (DNS, firewall, "
            "proxy), and that the LRS is up" % redact_url(url))


def msg_lrs_refused():
    return ("LRS refused the credentials: set xapi_lrs_login and xapi_lrs_password (in the vault) to an account "
            "the LRS accepts, then run site.yml")


def msg_lrs_status(status, url):
    return ("LRS answered HTTP %s at %s: check that xapi_lrs_url is the LRS's statements URL, and the LRS's own "
            "log" % (status, redact_url(url)))


def msg_lrs_redirect(location, url):
    """An LRS that redirects its statements URL: a POST is never delivered through a redirect."""
    target = urljoin(url or "", location or "") if location else "an unnamed location"
    return "XAPI_LRS_URL redirects to %s: set xapi_lrs_url to that URL, then run site.yml" % redact_url(target)


def msg_probe_timeout(timeout):
    return ("probe not stored within %s s: read the workers' logs in /var/log/celeryd-xapi/ (a slow LRS: raise "
            "worker_check_probe_timeout)" % format_seconds(timeout))


def msg_probe_read_refused(login, status):
    """The read account cannot read: its own problem, never the writer's credentials."""
    return ("LRS refused to read the probe back to the read account '%s' (HTTP %s): check xapi_lrs_read_login "
            "and xapi_lrs_read_password, and that this account may read statements" % (login, status))


def msg_probe_answer_without_id(status):
    return ("LRS answered the probe's POST with HTTP %s but without the probe's id: check what answers at xapi_lrs_url, "
            "or set xapi_lrs_read_login to read the probe back" % status)


def probe_answer_key(statement_id, prefix=PROBE_ANSWER_PREFIX):
    """The broker key where the worker keeps the LRS's answer to its POST of the probe STATEMENT_ID."""
    return "%s%s" % (prefix, statement_id)


def probe_answer_record(status, body):
    """What the worker keeps of the LRS's answer to a probe's POST: its status and the ids it names (None when
    the body is not a list of ids)."""
    ids = None
    if isinstance(body, list) and all(isinstance(item, str) for item in body):
        ids = body
    return {"status": status, "ids": ids}


def probe_answer_verdict(record, statement_id):
    """What the worker's record of the LRS's answer to the probe's POST says: (None, None) no answer yet;
    (True, text) the LRS took the probe; (False, message) it answered without the probe's id.

    RECORD is the JSON text (or bytes) of probe_answer_record(). The worker records only answers it counts
    as delivered (2xx, or 409: the LRS already holds that id)."""
    if record is None:
        return None, None
    try:
        record = json.loads(record.decode("utf-8") if isinstance(record, bytes) else record)
        status, ids = int(record["status"]), record.get("ids")
    except (ValueError, TypeError, KeyError, AttributeError):
        return False, "the worker's record of the LRS's answer to the probe's POST is unreadable"
    if status == 409:
        return True, "the LRS answered HTTP 409: it already holds the probe's id"
    if not 200 <= status < 300:
        return False, "LRS answered the probe's POST with HTTP %s" % status
    if ids is None:
        return True, "the LRS answered HTTP %s, without a list of ids" % status
    if statement_id in ids:
        return True, "the LRS answered HTTP %s with the probe's id" % status
    return False, msg_probe_answer_without_id(status)


def credentials_verdict(status):
    """What the LRS's answer to an empty list of statements says about the credentials: True, False or
    None (cannot tell).

    That POST stores nothing, so a key that may only write proves itself with it. An LRS
    authenticates before it validates a body: 401 and 403 refuse the credentials, and a 2xx or a
    refusal of the body (400, 422...) accepts them. 404 and 405 say the URL is not a statements
    resource, 3xx that it moved, 408, 413 and 429 nothing: none of these tells.
    """
    if status is None:
        return None
    if status in (401, 403):
        return False
    if 200 <= status < 300 or (400 <= status < 500 and status not in (404, 405, 407, 408, 413, 429)):
        return True
    return None


def is_redirect(status):
    """Whether an HTTP status is a redirect (3xx)."""
    return status is not None and 300 <= status < 400


def statement_in_answer(body, statement_id):
    """True when an LRS answer to GET statements holds the statement `statement_id`.

    The xAPI spec answers ?statementId=ID with the statement itself, or 404. Ralph 5.1 (fs
    backend) honours statementId but answers 200 {"statements": [...]}, empty until the
    statement is stored. An LRS that ignores the filter answers a page of statements. The
    statement is therefore looked for by id in whichever shape came back.
    """
    if not isinstance(body, dict):
        return False
    if body.get("id") == statement_id:
        return True
    statements = body.get("statements")
    if isinstance(statements, list):
        return any(isinstance(s, dict) and s.get("id") == statement_id for s in statements)
    return False


def probe_statement(statement_id, host=None, now=None):
    """A Pod-like statement about PROBE_ACTIVITY_ID, with the given id.

    Admins exclude probes from their analytics with the activity id (or the actor's mbox).
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    statement = {
        "id": statement_id,
        "actor": {
            "objectType": "Agent",
            "name": "Esup-Pod xAPI probe",
            "mbox": PROBE_ACTOR_MBOX,
        },
        "verb": {"id": PROBE_VERB_ID, "display": {"en-US": "interacted"}},
        "object": {
            "objectType": "Activity",
            "id": PROBE_ACTIVITY_ID,
            "definition": {
                "name": {"en-US": "Esup-Pod xAPI pipeline probe"},
                "description": {
                    "en-US": "Sent by esup_pod.xapi.xapi_check to prove that statements reach the LRS."
                },
            },
        },
        "context": {"platform": "esup_pod.xapi.xapi_check"},
        "timestamp": now.isoformat(),
    }
    if host:
        statement["context"]["extensions"] = {PROBE_ACTIVITY_ID + ":host": host}
    return statement


def new_check(name, status, msg=None, detail=None):
    """One entry of the `checks` list: name, status (ok, failed or skipped), msg, detail."""
    return {"name": name, "status": status, "ok": status != "failed", "msg": msg, "detail": detail}


def failures(checks):
    """The messages of the failed checks, in pipeline order."""
    order = {name: i for i, name in enumerate(LINKS)}
    failed = [c for c in checks if c["status"] == "failed"]
    failed.sort(key=lambda c: order.get(c["name"], len(order)))
    return [c["msg"] for c in failed]


def summary_msg(checks):
    """The module's msg: the broken links joined by '; ', or a one-line success."""
    broken = failures(checks)
    if broken:
        return "; ".join(broken)
    done = [c["name"] for c in checks if c["status"] == "ok"]
    return "xAPI pipeline healthy: %s ok" % ", ".join(done)


# --- The monitoring command ------------------------------------------------------------------------
# The worker role's <worker_service_name>-check runs the checks above and answers as a Nagios plugin
# (also Icinga, Centreon, Shinken, Naemon): one line, "XAPI STATE - text | perfdata", and the exit
# status 0, 1, 2 or 3.
OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE_NAMES = ("OK", "WARNING", "CRITICAL", "UNKNOWN")
PLUGIN_LABEL = "XAPI"

# user:password@ in any URL of a text (an error message that quotes a URL, say).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*:)[^@\s]*@")


def redact_text(text, secrets=()):
    """TEXT with every secret of SECRETS, and the password of every URL in it, replaced by ********.

    For what no check foresaw (an exception of a library, of Pod's settings): the URLs' passwords go
    even when the secrets are not known yet.
    """
    if text is None:
        return text
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", scrub(text, secrets))


def limit_of(value):
    """A limit of the command's options: None or a negative value is no limit."""
    if value is None or value < 0:
        return None
    return value


def perf_number(value):
    """A number as performance data wants it: no exponent, no useless zeros (0.0123 -> '0.0123')."""
    text = ("%.6f" % float(value)).rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def perfdata(label, value, warn=None, crit=None, minimum=None, maximum=None, uom=""):
    """'label'=value[UOM];[warn];[crit];[min];[max], the empty fields at the end left out.

    A value of None is 'U' (undetermined, the broker or the LRS did not answer). warn and crit are
    numbers (alert above them) or ready-made ranges such as '1:' (alert below 1).
    """
    if re.search(r"[\s'=]", label):
        label = "'%s'" % label.replace("'", "''")
    fields = ["U" if value is None else perf_number(value) + uom]
    for field in (warn, crit, minimum, maximum):
        fields.append("" if field is None else field if isinstance(field, str) else perf_number(field))
    while fields[-1] == "":
        fields.pop()
    return "%s=%s" % (label, ";".join(fields))


def _count(value, one, unknown):
    return unknown if value is None else one % value


def nagios_report(result, checks, limits):
    """(state, line) of the monitoring command, from a Checker's result and checks.

    `limits`: min_consumers, warning_backlog, critical_backlog, warning_dead_letters,
    critical_dead_letters, warning_lrs_latency and critical_lrs_latency (seconds),
    warning_broker_memory and critical_broker_memory (percent); None or a negative value is no limit.
    The Checker ran with the critical limits: each failed link is CRITICAL, with the module's message.
    A backlog or dead letters above their warning limit, an LRS slower than its warning limit, a
    broker under noeviction above its memory warning, are WARNING; slower than the critical limit,
    CRITICAL.
    The text names the problems, worst first, then the figures.
    """
    problems = []  # (state, message), pipeline order
    failed = set()
    for check in checks:
        if check["status"] == "failed":
            problems.append((CRITICAL, check["msg"]))
            failed.add(check["name"])
    backlog, dead, lrs = result.get("backlog"), result.get("dead_letters"), result.get("lrs") or {}
    latency_ms = lrs.get("latency_ms")
    latency = None if latency_ms is None else latency_ms / 1000.0
    warning_backlog = limit_of(limits.get("warning_backlog"))
    if backlog is not None and "backlog" not in failed:
        problem = msg_backlog(backlog, warning_backlog)
        if problem:
            problems.append((WARNING, problem))
    warning_dead = limit_of(limits.get("warning_dead_letters"))
    if dead is not None and "dead_letters" not in failed:
        problem = msg_dead_letters(dead, warning_dead, limits.get("dead_letter_key") or DEAD_LETTER_KEY)
        if problem:
            problems.append((WARNING, problem))
    memory = (result.get("broker") or {}).get("memory")
    if memory and memory.get("level") in ("warning", "critical") and "memory" not in failed:
        problems.append((WARNING if memory["level"] == "warning" else CRITICAL, memory["msg"]))
    warning_latency = limit_of(limits.get("warning_lrs_latency"))
    critical_latency = limit_of(limits.get("critical_lrs_latency"))
    if latency is not None:
        for state, limit in ((CRITICAL, critical_latency), (WARNING, warning_latency)):
            if limit is not None and latency > limit:
                msg = "LRS answered in %s s, more than %s s" % (perf_number(round(latency, 3)), format_seconds(limit))
                problems.append((state, msg))
                break
    state = max([OK] + [problem[0] for problem in problems])

    consumers = result.get("consumer_count")
    figures = [
        _count(consumers, "%d consumer(s)", "consumers unknown"),
        _count(backlog, "backlog %d", "backlog unknown"),
        "LRS did not answer" if latency_ms is None else "LRS answered in %.0f ms" % latency_ms,
        _count(dead, "%d dead letter(s)", "dead letters unknown"),
    ]
    if not memory:
        figures.append("broker memory unknown")
    elif memory.get("percent") is None:
        figures.append("broker without memory limit")
    else:
        figures.append("broker memory %s%%" % perf_number(memory["percent"]))
    probe = result.get("probe") or {}
    if probe.get("stored"):
        figures.append("probe %s in %.0f ms" % (
            "delivered on the LRS's word" if probe.get("proof") == "lrs_answer" else "stored", probe["latency_ms"]))
    text = ", ".join(figures)
    if problems:
        ordered = [problem[1] for problem in sorted(problems, key=lambda p: -p[0])]
        text = "%s (%s)" % ("; ".join(ordered), text)

    minimum = limit_of(limits.get("min_consumers"))
    perf = [
        perfdata("consumers", consumers, None, "%d:" % minimum if minimum else None, 0),
        perfdata("backlog", backlog, warning_backlog, limit_of(limits.get("critical_backlog")), 0),
        perfdata("lrs_latency", None if latency is None else round(latency, 4), warning_latency, critical_latency,
                 0, uom="s"),
        perfdata("dead_letters", dead, warning_dead, limit_of(limits.get("critical_dead_letters")), 0),
    ]
    # Thresholds only where they mean something: under noeviction (elsewhere the broker evicts).
    bounded = bool(memory) and memory.get("policy") == NO_EVICTION
    perf.append(perfdata("broker_memory", (memory or {}).get("percent"),
                         limit_of(limits.get("warning_broker_memory")) if bounded else None,
                         limit_of(limits.get("critical_broker_memory")) if bounded else None, 0, 100, uom="%"))
    if probe.get("stored"):
        perf.append(perfdata("probe_latency", round(probe["latency_ms"] / 1000.0, 4), None,
                             limits.get("probe_timeout"), 0, uom="s"))
    return state, "%s %s - %s | %s" % (PLUGIN_LABEL, STATE_NAMES[state], text, " ".join(perf))


def unknown_report(msg):
    """(UNKNOWN, line): the check could not run (a bad input, a missing library, the wrong user)."""
    return UNKNOWN, "%s %s - %s" % (PLUGIN_LABEL, STATE_NAMES[UNKNOWN], msg)
