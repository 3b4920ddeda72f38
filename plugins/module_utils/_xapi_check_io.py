# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module util is PRIVATE to the collection (hence the leading underscore): it is not a public
# API, it can change or go away in any release, even a bugfix one. Do not import it from another
# collection or from your own modules; use the esup_pod.xapi modules instead.
"""The checks of esup_pod.xapi.xapi_check that touch the network, and how they get their inputs.

Shared by the module (plugins/modules/xapi_check.py) and by the monitoring command that the worker
role installs on the encoding hosts (roles/worker/files/check_xapi.py), which runs with a copy of
this file and of _xapi_check.py: both run the same checks, link by link. Nothing here depends on
Ansible; celery, redis and requests come from the worker's virtualenv, and a missing one is
reported by the caller through the *_IMPORT_ERROR names.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import socket
import time
import traceback
import uuid
from urllib.parse import urlsplit

from ._xapi_check import (
    POD_TASK_NAME,
    PROBE_ACTIVITY_ID,
    BrokerURLError,
    backlog_keys,
    broker_memory,
    consumers_of,
    credentials_verdict,
    format_seconds,
    is_redirect,
    msg_backlog,
    msg_broker_auth,
    msg_broker_unreachable,
    msg_consumers,
    msg_dead_letters,
    msg_lrs_redirect,
    msg_lrs_refused,
    msg_lrs_status,
    msg_lrs_unreachable,
    msg_missing_nodes,
    msg_probe_read_refused,
    msg_probe_timeout,
    new_check,
    parse_broker_url,
    probe_answer_key,
    probe_answer_verdict,
    probe_statement,
    redact_url,
    scrub,
    statement_in_answer,
)

try:
    import redis

    REDIS_IMPORT_ERROR = None
except ImportError:
    redis = None
    REDIS_IMPORT_ERROR = traceback.format_exc()

try:
    import requests

    REQUESTS_IMPORT_ERROR = None
except ImportError:
    requests = None
    REQUESTS_IMPORT_ERROR = traceback.format_exc()

try:
    from celery import Celery

    CELERY_IMPORT_ERROR = None
except ImportError:
    Celery = None
    CELERY_IMPORT_ERROR = traceback.format_exc()

# Pod's settings that stand for the options, when these are not given.
SETTINGS_NAMES = {
    "broker_url": "XAPI_CELERY_BROKER_URL",
    "lrs_url": "XAPI_LRS_URL",
    "lrs_login": "XAPI_LRS_LOGIN",
    "lrs_password": "XAPI_LRS_PWD",
}
XAPI_VERSION = "1.0.3"
# The system's CA bundle, as Debian and Red Hat build it (with a site's own CAs), which the worker's delivery
# verifies the LRS against too: requests alone would use certifi's list.
SYSTEM_CA_FILES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
# The probe's lookups: 50 ms apart at first (a fine latency), then twice as far apart each time, up to 1 s.
PROBE_POLL_FIRST = 0.05
PROBE_POLL_MAX = 1.0


def ms(seconds):
    return round(seconds * 1000.0, 1)


def lrs_verify(params, candidates=SYSTEM_CA_FILES):
    """requests' verify for the LRS: False (validate_certs off), lrs_ca_file, else the system's CA bundle, else
    True (requests' own list), as the worker's delivery does."""
    if not params["validate_certs"]:
        return False
    if params.get("lrs_ca_file"):
        return params["lrs_ca_file"]
    for path in candidates:
        if os.path.isfile(path):
            return path
    return True


class SettingsError(ValueError):
    """A setting that the checks need cannot be read without running Pod's settings. The message names the
    setting and the file, never a value."""


# Statements whose bodies are another scope: what they assign is not the module's.
_OTHER_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def _literal(node):
    """A literal's value (ast.literal_eval), strings joined with + included."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _literal(node.left), _literal(node.right)
        if isinstance(left, str) and isinstance(right, str):
            return left + right
        raise ValueError("only strings are joined with +")
    return ast.literal_eval(node)


def _bound_names(statement):
    """The module-level names that a statement other than a plain assignment binds ('*' for a star import)."""
    names = set()
    stack = [statement]
    while stack:
        node = stack.pop()
        if isinstance(node, _OTHER_SCOPES):
            if not isinstance(node, ast.Lambda):
                names.add(node.name)
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(getattr(node, "name", None), str):
            names.add(node.name)  # except ... as name, and match's captures
        elif isinstance(getattr(node, "rest", None), str):
            names.add(node.rest)
        stack.extend(ast.iter_child_nodes(node))
    return names


def read_pod_settings(path, names):
    """The values of NAMES in Pod's settings file PATH, parsed, never run: {name: value}, a name that the
    file never assigns left out.

    Only assignments at the top of the module count, the last one winning, as when Python runs the file;
    pod_settings' managed block is such assignments. A name whose last binding is not a literal (a
    call, another name, an import, an assignment inside an if or a try...) raises SettingsError: running
    the file to learn its value would run whatever else it holds, as the user the check runs as.
    """
    with open(path, "rb") as handle:
        source = handle.read()
    try:
        tree = ast.parse(source, filename=path)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise SettingsError("%s is not valid Python (line %s): %s" % (path, getattr(exc, "lineno", "?"),
                                                                      getattr(exc, "msg", exc)))
    wanted = set(names)
    values, problems = {}, {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign):
            targets, value = statement.targets, statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            targets, value = [statement.target], statement.value
        else:
            targets, value = None, None
        if targets is not None and all(isinstance(target, ast.Name) for target in targets):
            assigned = wanted & set(target.id for target in targets)
            try:
                found = _literal(value) if assigned else None
                why = None
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                why = "is not assigned a literal value"
        else:
            bound = _bound_names(statement)
            assigned = wanted if "*" in bound else wanted & bound
            why = "may be set by a star import" if "*" in bound else "is not set by a plain assignment"
        for name in assigned:
            values.pop(name, None)
            problems.pop(name, None)
            if why:
                problems[name] = "%s (line %d)" % (why, statement.lineno)
            else:
                values[name] = found
    if problems:
        name = min(problems)
        raise SettingsError("%s in %s %s: the checks read Pod's settings without running them; set it there "
                            "as a literal (a string)" % (name, path, problems[name]))
    return values


class Checker(object):
    """Runs the checks one link after the other and keeps the results."""

    def __init__(self, params, secrets, check_mode=False):
        self.check_mode = check_mode
        self.p = params
        self.secrets = secrets
        self.checks = []
        self.app = None
        self.parsed = parse_broker_url(params["broker_url"])
        self.result = {
            "changed": False,
            "broker": {"url": redact_url(params["broker_url"]), "address": None, "memory": None,
                       "reachable": False, "authenticated": False},
            "consumers": [],
            "consumer_count": None,
            "consumer_attempts": 0,
            "backlog": None,
            "dead_letters": None,
            "lrs": {"url": redact_url(params["lrs_url"]), "reachable": False, "status": None,
                    "latency_ms": None, "credentials": None},
            "probe": {"id": None, "activity_id": PROBE_ACTIVITY_ID, "enqueued": False,
                      "stored": False, "latency_ms": None, "polls": 0, "proof": None},
        }

    def add(self, name, status, msg=None, detail=None):
        self.checks.append(new_check(name, status, scrub(msg, self.secrets), scrub(detail, self.secrets)))

    def error_text(self, exc):
        return scrub("%s: %s" % (type(exc).__name__, exc), self.secrets)

    # broker ---------------------------------------------------------------------------------
    def redis_client(self):
        timeout = self.p["timeout"]
        return redis.Redis.from_url(self.p["broker_url"], socket_connect_timeout=timeout, socket_timeout=timeout)

    def check_broker(self):
        address = "%s:%s" % (self.parsed["host"], self.parsed["port"])
        self.result["broker"]["address"] = address
        client = self.redis_client()
        try:
            client.ping()
        except redis.AuthenticationError as exc:
            self.result["broker"]["reachable"] = True
            self.add("broker", "failed", msg_broker_auth(), self.error_text(exc))
            return False
        except redis.ResponseError as exc:
            if "AUTH" in str(exc).upper() or "NOPERM" in str(exc).upper():
                self.result["broker"]["reachable"] = True
                self.add("broker", "failed", msg_broker_auth(), self.error_text(exc))
            else:
                self.add("broker", "failed", msg_broker_unreachable(address), self.error_text(exc))
            return False
        except (redis.RedisError, OSError) as exc:
            self.add("broker", "failed", msg_broker_unreachable(address), self.error_text(exc))
            return False
        finally:
            client.close()
        self.result["broker"].update(reachable=True, authenticated=True)
        self.add("broker", "ok", "broker at %s answered PING" % address)
        return True

    # memory ---------------------------------------------------------------------------------
    def check_memory(self):
        """The broker's used memory against its maxmemory. A broker that refuses INFO (an ACL user without it)
        leaves it unknown: skipped, not failed."""
        client = self.redis_client()
        try:
            info = client.info("memory")
        except redis.ResponseError as exc:
            self.add("memory", "skipped", "skipped: the broker refused INFO memory", self.error_text(exc))
            return True
        except (redis.RedisError, OSError) as exc:
            self.add("memory", "failed", "broker memory unreadable", self.error_text(exc))
            return False
        finally:
            client.close()
        memory = broker_memory(info, self.p.get("broker_memory_warning"), self.p.get("broker_memory_critical"))
        self.result["broker"]["memory"] = memory
        if memory["level"] == "critical":
            self.add("memory", "failed", memory["msg"])
            return False
        self.add("memory", "ok", ("warning: " if memory["level"] == "warning" else "") + memory["msg"])
        return True

    # consumers ------------------------------------------------------------------------------
    def celery_app(self):
        if self.app is None:
            app = Celery("xapi_check", broker=self.p["broker_url"], set_as_current=False)
            app.conf.update(
                broker_connection_timeout=self.p["timeout"],
                broker_connection_retry_on_startup=False,
                broker_connection_max_retries=1,
                broker_transport_options={"socket_connect_timeout": self.p["timeout"]},
            )
            self.app = app
        return self.app

    def check_consumers(self):
        queue, minimum = self.p["queue"], self.p["min_consumers"]
        nodes, error = [], None
        attempts = 1 + max(self.p["consumer_retries"], 0)
        for attempt in range(1, attempts + 1):
            self.result["consumer_attempts"] = attempt
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    answer = self.celery_app().control.inspect(timeout=self.p["inspect_timeout"]).active_queues()
                nodes, error = consumers_of(answer, queue), None
            except Exception as exc:  # pylint: disable=broad-except
                nodes, error = [], self.error_text(exc)
            missing = sorted(set(self.p["nodes"]) - set(nodes))
            if (len(nodes) >= minimum and not missing) or attempt == attempts:
                break
            time.sleep(self.p["consumer_delay"])
        self.result["consumers"] = nodes
        self.result["consumer_count"] = len(nodes)
        problem = msg_consumers(len(nodes), minimum, queue) or msg_missing_nodes(
            set(self.p["nodes"]) - set(nodes), queue)
        if problem:
            self.add("consumers", "failed", problem, error)
            return False
        self.add("consumers", "ok", "%d worker(s) consume queue %s: %s" % (len(nodes), queue, ", ".join(nodes)))
        return True

    # backlog --------------------------------------------------------------------------------
    def check_backlog(self):
        client = self.redis_client()
        try:
            pipe = client.pipeline(transaction=False)
            for key in backlog_keys(self.p["queue"]):
                pipe.llen(key)
            backlog = sum(pipe.execute())
        except (redis.RedisError, OSError) as exc:
            self.add("backlog", "failed", "backlog of queue %s unreadable" % self.p["queue"], self.error_text(exc))
            return False
        finally:
            client.close()
        self.result["backlog"] = backlog
        problem = msg_backlog(backlog, self.p["max_backlog"])
        if problem:
            self.add("backlog", "failed", problem)
            return False
        self.add("backlog", "ok", "%d message(s) wait in queue %s" % (backlog, self.p["queue"]))
        return True

    # dead letters ---------------------------------------------------------------------------
    def check_dead_letters(self):
        key = self.p["dead_letter_key"]
        client = self.redis_client()
        try:
            count = client.llen(key)
        except (redis.RedisError, OSError) as exc:
            self.add("dead_letters", "failed", "dead letters %s unreadable" % key, self.error_text(exc))
            return False
        finally:
            client.close()
        self.result["dead_letters"] = count
        problem = msg_dead_letters(count, self.p["max_dead_letters"], key)
        if problem:
            self.add("dead_letters", "failed", problem)
            return False
        self.add("dead_letters", "ok", "%d statement(s) refused by the LRS in %s" % (count, key))
        return True

    # LRS ------------------------------------------------------------------------------------
    def lrs_options(self, auth=None):
        """What every request of the checks to the LRS carries, as the worker's own: its credentials (or AUTH), a
        timeout, the CAs it verifies against, and no redirect followed."""
        return dict(
            auth=auth or (self.p["lrs_login"] or "", self.p["lrs_password"] or ""),
            headers={"X-Experience-API-Version": XAPI_VERSION, "Accept": "application/json"},
            timeout=self.p["timeout"],
            verify=lrs_verify(self.p),
            allow_redirects=False,
        )

    def lrs_get(self, params):
        """GET with the read account (the writer's key may only write)."""
        auth = (self.p["lrs_read_login"], self.p.get("lrs_read_password") or "")
        return requests.get(self.p["lrs_url"], params=params, **self.lrs_options(auth))

    def lrs_post_nothing(self):
        """POST an empty list of statements: it stores nothing, and the answer tells about the
        credentials, even a key that may only write."""
        return requests.post(self.p["lrs_url"], json=[], **self.lrs_options())

    def check_lrs(self):
        url = self.p["lrs_url"]
        start = time.monotonic()
        try:
            answer = self.lrs_post_nothing()
        except requests.exceptions.RequestException as exc:
            self.add("lrs", "failed", msg_lrs_unreachable(url), self.error_text(exc))
            self.add("credentials", "skipped", "skipped: the LRS is unreachable")
            return False
        latency = ms(time.monotonic() - start)
        status = answer.status_code
        verdict = credentials_verdict(status)
        self.result["lrs"].update(reachable=True, status=status, latency_ms=latency, credentials=verdict)
        if is_redirect(status):
            self.add("lrs", "failed", msg_lrs_redirect(answer.headers.get("Location"), url), "HTTP %s" % status)
            self.add("credentials", "skipped", "skipped: the LRS redirects")
            return False
        self.add("lrs", "ok", "LRS answered HTTP %s to an empty list of statements in %s ms" % (status, latency))
        if verdict is True:
            self.add("credentials", "ok", "LRS accepted the credentials of %s" % self.p["lrs_login"])
            return True
        if verdict is False:
            self.add("credentials", "failed", msg_lrs_refused(), "HTTP %s" % status)
        else:
            self.add("credentials", "failed", msg_lrs_status(status, url), scrub(answer.text[:200], self.secrets))
        return False

    # probe ----------------------------------------------------------------------------------
    def run_probe(self):
        probe = self.result["probe"]
        statement_id = str(uuid.uuid4())
        statement = probe_statement(statement_id, host=socket.gethostname())
        probe["id"] = statement_id
        start = time.monotonic()
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                self.celery_app().send_task(
                    POD_TASK_NAME, args=[statement], queue=self.p["queue"], retry=True,
                    retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
                )
        except Exception as exc:  # pylint: disable=broad-except
            self.add("probe", "failed", "probe could not be enqueued on queue %s" % self.p["queue"],
                     self.error_text(exc))
            return False
        probe["enqueued"] = True
        self.result["changed"] = True
        read_back = bool(self.p.get("lrs_read_login"))
        probe["proof"] = "read_back" if read_back else "lrs_answer"
        deadline = start + self.p["probe_timeout"]
        last_error = None
        while True:
            probe["polls"] += 1
            found, last_error = self.read_probe(statement_id) if read_back else self.probe_answer(statement_id)
            now = time.monotonic()
            if found is False:
                self.add("probe", "failed", last_error)
                return False
            if found:
                probe.update(stored=True, latency_ms=ms(now - start))
                if read_back:
                    self.add("probe", "ok", "probe %s stored by the LRS in %s ms (read back with the read account '%s')"
                             % (statement_id, probe["latency_ms"], self.p["lrs_read_login"]))
                else:
                    self.add("probe", "ok", "probe %s delivered in %s ms, on the LRS's word: %s (not read back: "
                             "no read account, set xapi_lrs_read_login and xapi_lrs_read_password to read it back)"
                             % (statement_id, probe["latency_ms"], last_error))
                return True
            if now >= deadline:
                break
            interval = min(PROBE_POLL_FIRST * 2 ** min(probe["polls"] - 1, 16), PROBE_POLL_MAX)
            time.sleep(min(interval, max(deadline - now, 0)))
        self.add("probe", "failed", msg_probe_timeout(self.p["probe_timeout"]), last_error)
        return False

    def read_probe(self, statement_id):
        """(found, detail) of one lookup of the probe with the read account: found is None when not yet, False
        when the LRS refuses that account (then detail is the message)."""
        try:
            answer = self.lrs_get({"statementId": statement_id})
        except (requests.exceptions.RequestException, ValueError) as exc:
            return None, self.error_text(exc)
        if answer.status_code in (401, 403):
            return False, msg_probe_read_refused(self.p["lrs_read_login"], answer.status_code)
        try:
            body = answer.json() if answer.status_code == 200 else None
        except ValueError as exc:
            return None, self.error_text(exc)
        if statement_in_answer(body, statement_id):
            return True, None
        return None, None if answer.status_code in (200, 404) else "HTTP %s" % answer.status_code

    def probe_answer(self, statement_id):
        """(found, detail) from the worker's record, on the broker, of the LRS's answer to its POST of the probe:
        found is None when there is no answer yet, False when the answer lacks the probe's id."""
        client = self.redis_client()
        try:
            record = client.get(probe_answer_key(statement_id))
        except (redis.RedisError, OSError) as exc:
            return None, self.error_text(exc)
        finally:
            client.close()
        found, text = probe_answer_verdict(record, statement_id)
        return found, text if found is not None else "no answer of the LRS to the worker's POST of the probe yet"

    def close(self):
        if self.app is not None:
            with contextlib.suppress(Exception):
                self.app.close()

    def run(self):
        broker_ok = self.check_broker()
        if broker_ok:
            self.check_memory()
            consumers_ok = self.check_consumers()
            backlog_ok = self.check_backlog()
            self.check_dead_letters()
        else:
            consumers_ok = backlog_ok = False
            self.add("memory", "skipped", "skipped: the broker is not usable")
            self.add("consumers", "skipped", "skipped: the broker is not usable")
            self.add("backlog", "skipped", "skipped: the broker is not usable")
            self.add("dead_letters", "skipped", "skipped: the broker is not usable")
        lrs_ok = self.check_lrs()
        if not self.p["probe"]:
            self.add("probe", "skipped", "skipped: probe=false")
        elif self.check_mode:
            self.add("probe", "skipped", "skipped: check mode")
        elif not (broker_ok and consumers_ok and backlog_ok and lrs_ok):
            self.add("probe", "skipped", "skipped: another link is broken")
        else:
            self.run_probe()
        self.close()
        return self.checks


class CheckInputError(ValueError):
    """The check cannot start: a missing or bad input. The message holds no secret."""

    def __init__(self, msg, settings_used=None):
        super(CheckInputError, self).__init__(msg)
        self.settings_used = settings_used or []


def missing_libraries():
    """(library, traceback) of each library of the worker's virtualenv that cannot be imported."""
    return [(library, error) for library, error in (
        ("redis", REDIS_IMPORT_ERROR), ("requests", REQUESTS_IMPORT_ERROR), ("celery", CELERY_IMPORT_ERROR))
        if error]


def prepare(params):
    """Fill the options that were not given from Pod's settings (params["settings_path"]), check them.

    Returns (params, secrets, settings_used): a new dict of params; the secrets to mask in any
    output (the broker URL, its password as written and decoded, the LRS password); the options
    read from the settings. Raises CheckInputError with a message that holds no secret.
    """
    params = dict(params)
    missing = [option for option in SETTINGS_NAMES if params.get(option) is None]
    settings_used = []
    if missing:
        path = params["settings_path"]
        try:
            found = read_pod_settings(path, [SETTINGS_NAMES[option] for option in missing])
        except FileNotFoundError:
            raise CheckInputError("%s not given, and settings_path %s does not exist" % (", ".join(missing), path))
        except SettingsError as exc:
            raise CheckInputError("%s not given, and %s" % (", ".join(missing), exc))
        except (OSError, UnicodeError) as exc:
            raise CheckInputError("%s not given, and settings_path %s could not be read: %s: %s"
                                  % (", ".join(missing), path, type(exc).__name__, exc))
        for option in missing:
            if found.get(SETTINGS_NAMES[option]) is not None:
                params[option] = str(found[SETTINGS_NAMES[option]])
                settings_used.append(option)

    secrets = [params["broker_url"], params["lrs_password"]]
    try:
        broker_password = parse_broker_url(params["broker_url"])["password"]
    except BrokerURLError as exc:
        raise CheckInputError("%s (option broker_url, or XAPI_CELERY_BROKER_URL in settings_path)" % exc,
                              settings_used)
    # The password as written in the URL (percent-encoded) and as sent to Redis.
    secrets += [broker_password, urlsplit(params["broker_url"]).password]
    secrets = [secret for secret in secrets if secret]
    params.setdefault("lrs_read_login", None)
    params.setdefault("lrs_read_password", None)
    if bool(params["lrs_read_login"]) != bool(params["lrs_read_password"]):
        raise CheckInputError("lrs_read_login and lrs_read_password go together: set both (an account that may read "
                              "statements) or neither", settings_used)
    if params["lrs_read_password"]:
        secrets.append(params["lrs_read_password"])
    if not params["lrs_url"]:
        raise CheckInputError("lrs_url is empty (option lrs_url, or XAPI_LRS_URL in settings_path)", settings_used)
    if params.get("validate_certs") and params.get("lrs_ca_file") and not os.path.isfile(params["lrs_ca_file"]):
        raise CheckInputError("lrs_ca_file %s does not exist: the LRS's certificate cannot be verified against it"
                              % params["lrs_ca_file"], settings_used)
    for option in ("probe_timeout", "timeout", "inspect_timeout"):
        if params[option] <= 0:
            raise CheckInputError("%s must be greater than 0, got %s" % (option, format_seconds(params[option])),
                                  settings_used)
    warning, critical = params.get("broker_memory_warning"), params.get("broker_memory_critical")
    if (warning is not None and warning > 100) or (critical is not None and critical > 100):
        raise CheckInputError("broker_memory_warning and broker_memory_critical are percentages of the broker's "
                              "maxmemory: at most 100 (a negative value is no threshold)", settings_used)
    if params["min_consumers"] < 0 or params["consumer_retries"] < 0 or params["consumer_delay"] < 0:
        raise CheckInputError("min_consumers, consumer_retries and consumer_delay must not be negative", settings_used)
    return params, secrets, settings_used
