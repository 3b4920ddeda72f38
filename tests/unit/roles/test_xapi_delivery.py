# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure logic of the worker's delivery hooks (roles/worker/files/xapi_delivery.py).

What an LRS answer means for a statement, the per-node broker keys, the dead-letter record, the
stand-in for `requests` inside Pod's task, and how the worker's kombu transport is built and named.
The transport runs against a real Redis in tests/contract; the hooks run for real on the lab's
worker (molecule/default/tests/test_faults.py).
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import re
import types
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[3] / "roles" / "worker" / "files" / "xapi_delivery.py"
SPEC = importlib.util.spec_from_file_location("xapi_delivery", PATH)
xapi_delivery = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(xapi_delivery)

LRS_URL = "http://lrs:8100/xAPI/statements/"


@pytest.mark.parametrize("status", [200, 204, 409])
def test_stored_and_already_stored_are_delivered(status):
    assert xapi_delivery.verdict(status) == xapi_delivery.DELIVERED


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308, 401, 403, 408, 425, 429, 500, 502, 503, 504])
def test_answers_that_can_change_are_retried(status):
    assert xapi_delivery.verdict(status) == xapi_delivery.RETRY


@pytest.mark.parametrize("status", [400, 404, 405, 410, 413, 415, 422])
def test_other_answers_are_dead_letters(status):
    assert xapi_delivery.verdict(status) == xapi_delivery.DEAD


def test_each_node_has_keys_of_its_own():
    one = xapi_delivery.transport_options(600, node="xapi@encoding")
    two = xapi_delivery.transport_options(600, node="xapi@encoding2")
    assert one["visibility_timeout"] == 600
    assert one["unacked_key"] == "unacked:xapi@encoding"
    assert one["unacked_index_key"] == "unacked_index:xapi@encoding"
    assert one["priority_steps"] == [0]  # one list to move from (the transport's Channel)
    keys = ("unacked_key", "unacked_index_key", "unacked_mutex_key")
    assert {one[k] for k in keys}.isdisjoint({two[k] for k in keys})


def test_the_transport_subclasses_kombus_redis_transport_and_patches_nothing():
    from kombu.transport import redis as kombu_redis

    assert issubclass(xapi_delivery.Transport, kombu_redis.Transport)
    assert xapi_delivery.Transport.Channel is xapi_delivery.Channel
    assert issubclass(xapi_delivery.Channel, kombu_redis.Channel) and xapi_delivery.Channel.QoS is xapi_delivery.QoS
    assert issubclass(xapi_delivery.QoS, kombu_redis.QoS)
    # kombu's own classes are kombu's: nothing of the process is patched.
    assert kombu_redis.Channel._brpop_start.__module__ == kombu_redis.__name__
    assert kombu_redis.Channel._brpop_read.__module__ == kombu_redis.__name__
    assert kombu_redis.QoS.restore_visible.__module__ == kombu_redis.__name__
    assert not hasattr(xapi_delivery, "atomic_consume") and not hasattr(xapi_delivery, "tolerate_full_broker")
    # Not one of kombu's connection errors, which Celery would retry forever at start.
    assert not issubclass(xapi_delivery.UnsupportedBroker, kombu_redis.Transport.connection_errors)


def test_the_celery_config_names_the_transport(monkeypatch):
    from kombu.transport import resolve_transport

    template = (PATH.parents[1] / "templates" / "xapi_celeryconfig.py.j2").read_text()
    assert '\nbroker_transport = "xapi_delivery:Transport"\n' in template
    assert "atomic_consume" not in template and "tolerate_full_broker" not in template
    monkeypatch.setitem(__import__("sys").modules, "xapi_delivery", xapi_delivery)
    assert resolve_transport("xapi_delivery:Transport") is xapi_delivery.Transport


@pytest.mark.parametrize("version, supported", [("5.3.7", True), ("5.4.2", True), ("5.5.4", True), ("5.6.0", False),
                                                ("5.2.4", False), ("6.0.0", False)])
def test_only_the_kombu_releases_whose_channel_is_overridden_are_supported(monkeypatch, version, supported):
    monkeypatch.setattr(xapi_delivery.kombu, "__version__", version)
    if supported:
        xapi_delivery.refuse_unsupported_kombu()
    else:
        with pytest.raises(xapi_delivery.UnsupportedBroker, match="^kombu %s is not a release" % version.replace(".", r"\.")):
            xapi_delivery.refuse_unsupported_kombu()


def test_the_in_flight_list_names_the_node_and_the_queue():
    assert xapi_delivery.inflight_key("xapi@encoding", "xapi") == "inflight:xapi@encoding:xapi"


def test_without_a_node_the_keys_are_kombus(monkeypatch):
    monkeypatch.delenv("XAPI_WORKER_NODE", raising=False)
    assert xapi_delivery.transport_options(600) == {"visibility_timeout": 600}
    monkeypatch.setenv("XAPI_WORKER_NODE", "xapi@encoding")
    assert xapi_delivery.transport_options(600)["unacked_key"] == "unacked:xapi@encoding"


def test_dead_letter_record_keeps_the_statement_and_the_answer():
    now = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.timezone.utc)
    record = json.loads(xapi_delivery.dead_letter_record(
        {"id": "abc", "verb": {}}, 400, "bad\n statement " + "x" * 2000, "task-1", "xapi@encoding", 2, now))
    assert record["statement"] == {"id": "abc", "verb": {}}
    assert record["status"] == 400 and record["attempts"] == 2
    assert record["failed_at"] == "2026-11-27T12:00:00+00:00"
    assert record["answer"].startswith("bad statement x") and len(record["answer"]) == 1003


class Answer(object):
    def __init__(self, status, text="[]", headers=None):
        self.status_code = status
        self.text = text
        self._content = text.encode()
        self.headers = headers or {}


class Real(object):
    """Stands for the requests module: records the calls, answers STATUS."""

    def __init__(self, status, headers=None):
        self.status = status
        self.headers = headers
        self.calls = []
        self.codes = types.SimpleNamespace(ok=200)

    def post(self, url, *args, **kwargs):
        self.calls.append((url, kwargs))
        return Answer(self.status, '{"detail": "nope"}', self.headers)


def hooked(status, timeout=20, headers=None):
    kept = []
    real = Real(status, headers)
    proxy = xapi_delivery.LRSRequests(real, LRS_URL, timeout, lambda *args: kept.append(args))
    return real, proxy, kept


def test_only_the_post_to_the_configured_lrs_is_judged():
    real, proxy, kept = hooked(503)
    answer = proxy.post("http://elsewhere/api", json={"id": "a"})
    assert answer.status_code == 503 and kept == []
    assert real.calls == [("http://elsewhere/api", {"json": {"id": "a"}})]
    assert proxy.codes.ok == 200  # every other attribute is the real module's


def test_a_temporary_answer_raises_for_the_autoretry_and_gets_a_timeout():
    real, proxy, kept = hooked(503)
    with pytest.raises(xapi_delivery.LRSTemporaryError, match="HTTP 503 for statement a"):
        proxy.post(LRS_URL, json={"id": "a"})
    assert real.calls[0][1]["timeout"] == 20 and kept == []


@pytest.mark.parametrize("status, location, named", [
    (301, "/xAPI/statements/", "http://lrs:8100/xAPI/statements/"),
    (302, "https://u:secret@sso.example.org/login", "https://u:********@sso.example.org/login"),
    (308, "https://lrs:8443/xAPI/statements/", "https://lrs:8443/xAPI/statements/"),
])
def test_a_redirect_is_never_followed_and_is_retried_naming_its_target(caplog, status, location, named):
    real, proxy, kept = hooked(status, headers={"Location": location})
    with caplog.at_level("ERROR", logger="xapi_delivery"):
        with pytest.raises(xapi_delivery.LRSTemporaryError, match="HTTP %s\\) to %s" % (status, re.escape(named))):
            proxy.post(LRS_URL, json={"id": "a"})
    assert real.calls[0][1]["allow_redirects"] is False and kept == []
    assert named in caplog.text and "set XAPI_LRS_URL to that URL" in caplog.text
    assert "secret" not in caplog.text


def test_a_stored_statement_is_posted_without_following_redirects():
    real, proxy, _kept = hooked(200)
    proxy.post(LRS_URL, json={"id": "a"}, allow_redirects=True)
    assert real.calls[0][1]["allow_redirects"] is False


def test_quiet_statement_logs_drops_the_lines_of_each_statement_and_keeps_the_others(monkeypatch):
    connected = []
    signals = types.SimpleNamespace(after_setup_logger=types.SimpleNamespace(
        connect=lambda handler, weak=True: connected.append(handler)))
    success = "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s"
    trace = types.SimpleNamespace(LOG_SUCCESS=success)
    modules = __import__("sys").modules
    monkeypatch.setitem(modules, "celery", types.SimpleNamespace(signals=signals))
    monkeypatch.setitem(modules, "celery.app", types.SimpleNamespace(trace=trace))
    logging = xapi_delivery.logging
    quiet_loggers = [logging.getLogger(name) for name in xapi_delivery.QUIET_LOGGERS]
    trace_logger = logging.getLogger(xapi_delivery.TRACE_LOGGER)
    saved = [logger.level for logger in quiet_loggers], list(trace_logger.filters), trace_logger.level
    written = []

    class Keep(logging.Handler):
        def emit(self, record):
            written.append(record.getMessage())

    handler = Keep()
    trace_logger.addHandler(handler)
    trace_logger.setLevel(logging.INFO)
    try:
        quiet = xapi_delivery.quiet_statement_logs()
        assert connected == [quiet]  # again after Celery sets its logging up
        quiet()  # twice: still one filter
        assert len(trace_logger.filters) == len(saved[1]) + 1
        assert [logger.level for logger in quiet_loggers] == [logging.WARNING] * 2
        args = {"name": "send", "id": "t1", "runtime": 0.01, "return_value": None}
        trace_logger.info(success, args)
        trace_logger.info("Task %(name)s[%(id)s] retry: %(exc)s", dict(args, exc="Retry in 1s: ReadTimeout()"))
        trace_logger.error("Task %(name)s[%(id)s] %(description)s: %(exc)s", dict(args, description="raised", exc="X"))
        assert written == ["Task send[t1] retry: Retry in 1s: ReadTimeout()", "Task send[t1] raised: X"]
    finally:
        trace_logger.removeHandler(handler)
        trace_logger.filters[:] = saved[1]
        trace_logger.setLevel(saved[2])
        for logger, level in zip(quiet_loggers, saved[0]):
            logger.setLevel(level)


def test_a_timeout_given_by_the_caller_wins():
    real, proxy, _kept = hooked(200)
    proxy.post(LRS_URL, json={"id": "a"}, timeout=3)
    assert real.calls[0][1]["timeout"] == 3


def test_a_conflict_is_shown_to_pod_as_stored():
    _real, proxy, kept = hooked(409)
    answer = proxy.post(LRS_URL, json={"id": "a"})
    assert answer.status_code == 200 and answer._content == b'["a"]' and kept == []


def test_a_refused_statement_is_kept_then_answered_as_is():
    _real, proxy, kept = hooked(400)
    answer = proxy.post(LRS_URL, json={"id": "a"})
    assert answer.status_code == 400
    assert kept == [({"id": "a"}, 400, '{"detail": "nope"}')]


class Broker(object):
    """The few Redis commands pending() sends, over a dict of lists and hashes."""

    def __init__(self, data):
        self.data = data

    def llen(self, key):
        return len(self.data.get(key.decode() if isinstance(key, bytes) else key, []))

    def hlen(self, key):
        return len(self.data.get(key.decode() if isinstance(key, bytes) else key, {}))

    def scan_iter(self, match, count=None):
        import fnmatch
        return [key.encode() for key in self.data if fnmatch.fnmatchcase(key, match)]


def test_pending_counts_queued_unacknowledged_and_in_flight_but_not_dead_letters():
    broker = Broker({
        "xapi": ["a", "b"],
        "unacked:xapi@encoding": {"t1": "m", "t2": "m"},
        "unacked": {"t3": "m"},
        "unacked_index:xapi@encoding": ["t1", "t2"],
        "unacked_mutex": "x",
        "inflight:xapi@encoding2:xapi": ["c"],
        "xapi.dead-letters": ["d"],
    })
    assert xapi_delivery.pending(broker) == {"queued": 2, "unacked": 3, "inflight": 1}
    assert xapi_delivery.pending(Broker({})) == {"queued": 0, "unacked": 0, "inflight": 0}
