# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure logic of the worker's delivery hooks (roles/worker/files/xapi_delivery.py).

What an LRS answer means for a statement, the per-node broker keys, the dead-letter record, the
delivery that Pod's task is annotated with (Pod's settings read, its module never changed, each
thread's session, the CA the LRS is verified against), and how the worker's kombu transport is built
and named. The transport and the delivery run against a real Redis, real Celery nodes and a real HTTP
LRS in tests/contract, and on the lab's worker (molecule/default/tests/test_faults.py).
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
        self.headers = headers or {}


class Session(object):
    """Stands for a requests.Session: records the POSTs, answers STATUS."""

    def __init__(self, status, headers=None, text='{"detail": "nope"}'):
        self.status, self.headers, self.text = status, headers, text
        self.calls = []

    def post(self, url, **kwargs):
        self.calls.append((url, kwargs))
        return Answer(self.status, self.text, self.headers)


SETTINGS = (LRS_URL, "pod", "secret")
POD_LOG = xapi_delivery.logging.getLogger("pod.xapi.xapi_tasks")


def judged(status, headers=None, text='{"detail": "nope"}'):
    """(outcome, what was kept as a dead letter) of one answer."""
    kept = []
    outcome = xapi_delivery.judge(Answer(status, text, headers), {"id": "a"}, LRS_URL, lambda *args: kept.append(args), POD_LOG)
    return outcome, kept


def test_the_statement_is_posted_as_pods_task_posts_it_with_a_timeout_and_no_redirect_followed():
    session = Session(200)
    xapi_delivery.post_statement(session, SETTINGS, {"id": "a"}, 20, "/etc/ssl/lrs-ca.pem")
    # Pod's contract (JSON, basic auth: requests turns the pair into HTTPBasicAuth), and the worker's own.
    assert session.calls == [(LRS_URL, {"json": {"id": "a"}, "auth": ("pod", "secret"), "timeout": 20,
                                        "allow_redirects": False, "verify": "/etc/ssl/lrs-ca.pem"})]


def test_an_error_that_is_not_requests_own_is_retried_naming_it():
    class Broken(Session):
        def post(self, url, **kwargs):
            raise OSError("Could not find a suitable TLS CA certificate bundle, invalid path: /gone.pem")

    with pytest.raises(xapi_delivery.LRSTemporaryError, match="statement a not sent: OSError: Could not find"):
        xapi_delivery.post_statement(Broken(200), SETTINGS, {"id": "a"})


def test_a_temporary_answer_raises_for_the_autoretry():
    with pytest.raises(xapi_delivery.LRSTemporaryError, match="HTTP 503 for statement a"):
        judged(503)


def test_refused_credentials_are_named_and_retried(caplog):
    with caplog.at_level("ERROR", logger="xapi_delivery"), pytest.raises(xapi_delivery.LRSTemporaryError):
        judged(401)
    assert "LRS refused the worker's credentials (HTTP 401) for statement a: kept and retried" in caplog.text


@pytest.mark.parametrize("status, location, named", [
    (301, "/xAPI/statements/", "http://lrs:8100/xAPI/statements/"),
    (302, "https://u:secret@sso.example.org/login", "https://u:********@sso.example.org/login"),
    (308, "https://lrs:8443/xAPI/statements/", "https://lrs:8443/xAPI/statements/"),
])
def test_a_redirect_is_retried_naming_its_target(caplog, status, location, named):
    with caplog.at_level("ERROR", logger="xapi_delivery"):
        with pytest.raises(xapi_delivery.LRSTemporaryError, match="HTTP %s\\) to %s" % (status, re.escape(named))):
            judged(status, headers={"Location": location})
    assert "LRS redirected statement a (HTTP %s) to %s: kept and retried, never sent there; set XAPI_LRS_URL to that URL " \
           "(xapi_lrs_url)" % (status, named) in caplog.text
    assert "secret" not in caplog.text


def test_a_stored_statement_gets_pods_own_line_on_pods_logger(caplog):
    with caplog.at_level("INFO"):
        outcome, kept = judged(200, text='["a"]')
    assert outcome == xapi_delivery.DELIVERED and kept == []
    assert [(r.name, r.getMessage()) for r in caplog.records] == [("pod.xapi.xapi_tasks", 'statement id: ["a"]')]


@pytest.mark.parametrize("status", [204, 409])
def test_a_conflict_or_another_2xx_is_delivered_and_logged(caplog, status):
    with caplog.at_level("INFO"):
        outcome, kept = judged(status, text="")
    assert outcome == xapi_delivery.DELIVERED and kept == []
    assert ("xapi_delivery", "statement a already stored or accepted by the LRS (HTTP %s): delivered" % status) in [
        (r.name, r.getMessage()) for r in caplog.records]


def test_a_refused_statement_is_kept_and_pod_logs_its_error(caplog):
    with caplog.at_level("INFO"):
        outcome, kept = judged(400)
    assert outcome == xapi_delivery.DEAD
    assert kept == [({"id": "a"}, 400, '{"detail": "nope"}')]
    assert ("pod.xapi.xapi_tasks", 'Error during sending statement: {"detail": "nope"}') in [
        (r.name, r.getMessage()) for r in caplog.records]


def pod_module(monkeypatch, name="fakepod.xapi_tasks", **settings):
    module = types.ModuleType(name)
    module.__dict__.update(settings)
    monkeypatch.setitem(__import__("sys").modules, name, module)

    def send_xapi_statement_task(statement):
        raise AssertionError("Pod's own function is never called: %r" % statement)

    send_xapi_statement_task.__module__ = name
    module.send_xapi_statement_task = send_xapi_statement_task
    return module, send_xapi_statement_task


@pytest.mark.parametrize("settings", [{}, {"XAPI_LRS_URL": ""}, {"XAPI_LRS_URL": None}])
def test_pods_module_without_an_lrs_url_is_refused_when_celery_binds_the_task(monkeypatch, settings):
    _module, run = pod_module(monkeypatch, **settings)
    refused = "^fakepod.xapi_tasks has no XAPI_LRS_URL to deliver the statements to: set it in Pod's settings_local.py"
    with pytest.raises(xapi_delivery.PodSettingsError, match=refused):
        xapi_delivery.deliver(run)


class Task(object):
    """Pod's task as Celery annotates it: the annotations' attributes, its request, its app."""

    xapi_lrs_timeout = 7
    xapi_lrs_verify = "/etc/ssl/lrs-ca.pem"
    xapi_dead_letter_key = "site.dead"
    app = object()

    def __init__(self, **request):
        self.request = types.SimpleNamespace(id="t1", hostname="xapi@encoding", headers=None, **request)


def test_the_delivery_reads_pods_settings_and_changes_nothing_in_pods_module(monkeypatch):
    module, run = pod_module(monkeypatch, XAPI_LRS_URL=LRS_URL, XAPI_LRS_LOGIN="pod", XAPI_LRS_PWD="secret",
                             requests="Pod's requests")
    before = dict(vars(module))
    session = Session(200, text='["a"]')
    monkeypatch.setattr(xapi_delivery, "lrs_session", lambda: session)
    delivery = xapi_delivery.deliver(run)
    assert delivery(Task(), {"id": "a"}) is None
    assert session.calls == [(LRS_URL, {"json": {"id": "a"}, "auth": ("pod", "secret"), "timeout": 7,
                                        "allow_redirects": False, "verify": "/etc/ssl/lrs-ca.pem"})]
    assert vars(module) == before and all(vars(module)[name] is value for name, value in before.items())


PROBE = {"id": "p1", "object": {"objectType": "Activity", "id": "urn:esup-pod:xapi:probe"}}


class JSONAnswer(Answer):
    def json(self):
        return json.loads(self.text)


@pytest.mark.parametrize("status, text, kept", [
    (200, '["p1"]', {"status": 200, "ids": ["p1"]}),
    (409, '{"detail": "exists"}', {"status": 409, "ids": None}),
    (204, "", {"status": 204, "ids": None}),
])
def test_the_lrss_answer_to_a_probe_is_kept_on_the_broker_for_the_check(monkeypatch, status, text, kept):
    """The same key and record as the check reads (plugins/module_utils/_xapi_check.py)."""
    _module, run = pod_module(monkeypatch, XAPI_LRS_URL=LRS_URL)
    session = Session(status, text=text)
    session.post = lambda url, **kwargs: JSONAnswer(status, text)
    monkeypatch.setattr(xapi_delivery, "lrs_session", lambda: session)
    stored = []

    class Client(object):
        def set(self, key, value, ex=None):
            stored.append((key, json.loads(value), ex))

    class Connection(object):
        default_channel = types.SimpleNamespace(client=Client())

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(xapi_delivery, "_connect", lambda app: Connection())
    xapi_delivery.deliver(run)(Task(), PROBE)
    xapi_delivery.deliver(run)(Task(), {"id": "a", "object": {"id": "http://frontal/video/1/"}})
    assert stored == [("xapi.probe-answer:p1", kept, 600)]


def test_a_probe_delivered_is_delivered_even_when_its_answer_cannot_be_kept(monkeypatch, caplog):
    _module, run = pod_module(monkeypatch, XAPI_LRS_URL=LRS_URL)
    session = Session(200)
    session.post = lambda url, **kwargs: JSONAnswer(200, '["p1"]')
    monkeypatch.setattr(xapi_delivery, "lrs_session", lambda: session)

    def down(app):
        raise OSError("broker unreachable")

    monkeypatch.setattr(xapi_delivery, "_connect", down)
    assert xapi_delivery.deliver(run)(Task(), PROBE) is None
    assert "probe p1 delivered, but the LRS's answer could not be kept in xapi.probe-answer:p1" in caplog.text


def test_the_names_are_those_of_the_check():
    """The delivery runs in the worker's virtualenv, without the collection: it holds copies, kept the same here."""
    from ansible_collections.esup_pod.xapi.plugins.module_utils import _xapi_check as xc
    from ansible_collections.esup_pod.xapi.plugins.module_utils import _xapi_check_io as checks_io

    assert (xapi_delivery.PROBE_ACTIVITY_ID, xapi_delivery.PROBE_ANSWER_PREFIX, xapi_delivery.PROBE_ANSWER_TTL) == (
        xc.PROBE_ACTIVITY_ID, xc.PROBE_ANSWER_PREFIX, xc.PROBE_ANSWER_TTL)
    assert (xapi_delivery.TASK_NAME, xapi_delivery.QUEUE, xapi_delivery.DEAD_LETTER_KEY) == (
        xc.POD_TASK_NAME, xc.QUEUE, xc.DEAD_LETTER_KEY)
    assert xapi_delivery.SYSTEM_CA_FILES == checks_io.SYSTEM_CA_FILES


@pytest.mark.parametrize("validate_certs, ca_file", [(False, ""), (False, "ca"), (True, "ca"), (True, "")])
@pytest.mark.parametrize("system_bundle", [True, False])
def test_the_delivery_and_the_check_verify_the_lrs_alike(tmp_path, monkeypatch, validate_certs, ca_file, system_bundle):
    """The same choice, each in its own process: the check's is a module_utils, the delivery's is not."""
    from ansible_collections.esup_pod.xapi.plugins.module_utils import _xapi_check_io as checks_io

    ca_file = str(tmp_path / "lrs-ca.pem") if ca_file else ""
    system = tmp_path / "ca-certificates.crt"
    for path in [ca_file] + ([str(system)] if system_bundle else []):
        if path:
            Path(path).write_text("PEM")
    candidates = (str(tmp_path / "absent.crt"), str(system))
    monkeypatch.setattr(xapi_delivery.system_ca_file, "__defaults__", (candidates,))
    delivery = xapi_delivery.lrs_verify(validate_certs, ca_file)
    check = checks_io.lrs_verify({"validate_certs": validate_certs, "lrs_ca_file": ca_file}, candidates)
    assert delivery == check


def test_a_refused_statement_is_pushed_with_its_attempts_from_the_replay_header(monkeypatch):
    _module, run = pod_module(monkeypatch, XAPI_LRS_URL=LRS_URL)
    monkeypatch.setattr(xapi_delivery, "lrs_session", lambda: Session(422))
    pushed = []
    monkeypatch.setattr(xapi_delivery, "_push_dead_letter", lambda app, key, record: pushed.append((app, key, record)))
    xapi_delivery.deliver(run)(Task(**{xapi_delivery.REPLAY_HEADER: 2}), {"id": "a"})
    (app, key, record), = pushed
    record = json.loads(record)
    assert app is Task.app and key == "site.dead"
    assert (record["status"], record["attempts"], record["task_id"], record["node"]) == (422, 3, "t1", "xapi@encoding")
    headers = types.SimpleNamespace(id="t2", hostname="n", headers={xapi_delivery.REPLAY_HEADER: 1})
    task = Task()
    task.request = headers
    xapi_delivery.deliver(run)(task, {"id": "b"})
    assert json.loads(pushed[1][2])["attempts"] == 2


def test_a_dead_letter_the_broker_refuses_raises_for_the_autoretry(monkeypatch):
    _module, run = pod_module(monkeypatch, XAPI_LRS_URL=LRS_URL)
    monkeypatch.setattr(xapi_delivery, "lrs_session", lambda: Session(400))

    def refuse(app, key, record):
        raise OSError("broker unreachable")

    monkeypatch.setattr(xapi_delivery, "_push_dead_letter", refuse)
    with pytest.raises(xapi_delivery.DeadLetterError, match="statement a refused by the LRS \\(HTTP 400\\) could not be "
                                                            "kept in site.dead: broker unreachable"):
        xapi_delivery.deliver(run)(Task(), {"id": "a"})


def test_each_thread_keeps_a_session_of_its_own(monkeypatch):
    import threading

    class FakeSession(object):
        pass

    monkeypatch.setitem(__import__("sys").modules, "requests", types.SimpleNamespace(Session=FakeSession))
    monkeypatch.setattr(xapi_delivery, "_LOCAL", threading.local())
    mine = xapi_delivery.lrs_session()
    assert isinstance(mine, FakeSession) and xapi_delivery.lrs_session() is mine
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(xapi_delivery.lrs_session()))
    thread.start()
    thread.join()
    assert isinstance(theirs[0], FakeSession) and theirs[0] is not mine
    # A pool process forked from this one does not reuse its parent's connection.
    monkeypatch.setattr(xapi_delivery.os, "getpid", lambda: -1)
    assert xapi_delivery.lrs_session() is not mine


def test_the_lrs_is_verified_against_the_ca_file_the_system_store_or_not_at_all(tmp_path, monkeypatch):
    ca_file = tmp_path / "university-ca.pem"
    ca_file.write_text("PEM")
    assert xapi_delivery.lrs_verify(False, str(tmp_path / "absent.pem")) is False
    assert xapi_delivery.lrs_verify(True, str(ca_file)) == str(ca_file)
    with pytest.raises(xapi_delivery.PodSettingsError, match="the LRS's CA file .*absent.pem \\(worker_lrs_ca_file\\) "
                                                             "does not exist"):
        xapi_delivery.lrs_verify(True, str(tmp_path / "absent.pem"))
    assert xapi_delivery.system_ca_file((str(tmp_path / "absent"), str(ca_file))) == str(ca_file)
    assert xapi_delivery.system_ca_file((str(tmp_path / "absent"),)) is None
    monkeypatch.setattr(xapi_delivery.system_ca_file, "__defaults__", ((str(ca_file),),))
    assert xapi_delivery.lrs_verify(True, "") == str(ca_file)
    # No system store: requests' own list.
    monkeypatch.setattr(xapi_delivery.system_ca_file, "__defaults__", ((str(tmp_path / "absent"),),))
    assert xapi_delivery.lrs_verify(True, "") is True


def test_the_celery_config_annotates_pods_task_and_swaps_nothing():
    template = (PATH.parents[1] / "templates" / "xapi_celeryconfig.py.j2").read_text()
    assert '        "@run": xapi_delivery.deliver,\n' in template
    assert "xapi_delivery.install(" not in template and not hasattr(xapi_delivery, "install")
    assert not hasattr(xapi_delivery, "LRSRequests")
    assert '"xapi_lrs_verify": xapi_delivery.lrs_verify(' in template
    assert "xapi_delivery.PodSettingsError" in template  # retried, should Pod's module only be found at run time


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
