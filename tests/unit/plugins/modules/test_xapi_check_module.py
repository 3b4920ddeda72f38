# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""esup_pod.xapi.xapi_check end to end against fake redis, requests and Celery.

The fakes stand for the libraries of the worker's virtualenv, so these tests need none of them:
they check the order of the links, what is skipped, `changed`, check mode, the messages and that
no secret reaches the output.
"""

from __future__ import annotations

import json
import types

import pytest


from ansible_collections.esup_pod.xapi.plugins.modules import xapi_check
# The checks that the module runs live in this module util (shared with the worker's monitoring command).
from ansible_collections.esup_pod.xapi.plugins.module_utils import _xapi_check_io as checks_io

# ansible-core's patch_module_args, or its stand-in on 2.18.
from ansible_collections.esup_pod.xapi.tests.unit.compat import cause, patch_module_args, run_module


BROKER_SECRET = "planted-unit-broker-5e1f"
LRS_SECRET = "planted-unit-lrs-77a0"
READ_SECRET = "planted-unit-reader-3c9d"
READER = dict(lrs_read_login="pod-reader", lrs_read_password=READ_SECRET)
BROKER_URL = "redis://:%s@frontal:6379/6" % BROKER_SECRET
LRS_URL = "http://lrs:8100/xAPI/statements/"


# --- fakes --------------------------------------------------------------------------------------
class RedisError(Exception):
    pass


class RedisConnectionError(RedisError):
    pass


class AuthenticationError(RedisConnectionError):
    pass


class ResponseError(RedisError):
    pass


class RequestException(IOError):
    pass


class Lab(object):
    """What the fake pipeline answers; tests change its fields."""

    def __init__(self):
        self.errors = {}  # "ping" or "lrs": the exception that call raises
        self.lengths = {"xapi": 0}
        self.answers = [{"xapi@encoding": [{"name": "xapi"}]}]
        self.inspected = 0
        self.lrs_status = 200
        self.lrs_redirect = None  # (status, Location) the LRS answers every request with
        self.write_only = False  # the credentials may write, not read
        self.stores_after = 1  # lookups of the probe before the LRS has it (None: never)
        self.sent = []
        self.lookups = 0
        self.redis_urls = []
        self.posts = []  # the bodies POSTed to the LRS
        self.verify = []  # what each request to the LRS verified the certificate with
        self.memory = {"used_memory": 16 * 2 ** 20, "maxmemory": 256 * 2 ** 20, "maxmemory_policy": "noeviction"}
        self.reader_may_read = True  # the read account holds statements/read
        # What the worker kept of the LRS's answer to its POST of the probe, once stored (None: nothing kept).
        self.probe_answer = lambda sid: json.dumps({"status": 200, "ids": [sid]})
        self.answer_lookups = []  # the broker keys the probe looked for the LRS's answer in


@pytest.fixture
def lab(monkeypatch):
    state = Lab()

    class Pipeline(object):
        def __init__(self):
            self.keys = []

        def llen(self, key):
            self.keys.append(key)

        def execute(self):
            return [state.lengths.get(key, 0) for key in self.keys]

    class Client(object):
        def ping(self):
            if "ping" in state.errors:
                raise state.errors["ping"]
            return True

        def pipeline(self, transaction=True):
            return Pipeline()

        def info(self, section):
            assert section == "memory"
            if "info" in state.errors:
                raise state.errors["info"]
            return dict(state.memory)

        def llen(self, key):
            if "llen" in state.errors:
                raise state.errors["llen"]
            return state.lengths.get(key, 0)

        def get(self, key):
            state.answer_lookups.append(key)
            state.lookups += 1
            sid = key.split(":")[-1]
            stored = state.stores_after is not None and state.lookups > state.stores_after
            return state.probe_answer(sid).encode() if stored and state.probe_answer(sid) else None

        def close(self):
            pass

    class Redis(object):
        @staticmethod
        def from_url(url, **kwargs):
            state.redis_urls.append(url)
            assert kwargs["socket_connect_timeout"] > 0
            return Client()

    fake_redis = types.SimpleNamespace(
        Redis=Redis, RedisError=RedisError, ConnectionError=RedisConnectionError,
        AuthenticationError=AuthenticationError, ResponseError=ResponseError,
    )

    class Response(object):
        def __init__(self, status, body, headers=None):
            self.status_code = status
            self.body = body
            self.text = json.dumps(body)
            self.headers = headers or {}

        def json(self):
            return self.body

    def answer_first(url, auth, headers, allow_redirects):
        """What the LRS answers before it looks at the request's purpose (like Ralph behind a front)."""
        assert url == LRS_URL
        assert headers["X-Experience-API-Version"].startswith("1.0")
        assert allow_redirects is False
        if "lrs" in state.errors:
            raise state.errors["lrs"]
        if state.lrs_redirect:
            return Response(state.lrs_redirect[0], "moved", {"Location": state.lrs_redirect[1]})
        if auth not in (("pod-xapi", LRS_SECRET), ("pod-reader", READ_SECRET)):
            return Response(401, {"detail": "Invalid authentication credentials"})
        if state.lrs_status != 200:
            return Response(state.lrs_status, {"detail": "boom"})
        return None

    def post(url, json=None, auth=None, headers=None, timeout=None, verify=True, allow_redirects=True):
        state.posts.append(json)
        state.verify.append(verify)
        first = answer_first(url, auth, headers, allow_redirects)
        if first is not None:
            return first
        if json == []:
            return Response(400, {"detail": "The list of statements cannot be empty"})
        return Response(200, [statement["id"] for statement in json])

    def get(url, params=None, auth=None, headers=None, timeout=None, verify=True, allow_redirects=True):
        state.verify.append(verify)
        first = answer_first(url, auth, headers, allow_redirects)
        if first is not None:
            return first
        if (state.write_only and auth[0] == "pod-xapi") or (not state.reader_may_read and auth[0] == "pod-reader"):
            return Response(401, {"detail": "Invalid authentication credentials"})
        if "statementId" in params:
            state.lookups += 1
            sid = params["statementId"]
            stored = state.stores_after is not None and state.lookups > state.stores_after
            return Response(200, {"statements": [{"id": sid}] if stored else []})
        return Response(200, {"statements": [], "more": ""})

    fake_requests = types.SimpleNamespace(
        get=get, post=post, exceptions=types.SimpleNamespace(RequestException=RequestException),
    )

    class Inspect(object):
        def active_queues(self):
            answer = state.answers[min(state.inspected, len(state.answers) - 1)]
            state.inspected += 1
            return answer

    class Control(object):
        def inspect(self, timeout=None):
            assert timeout > 0
            return Inspect()

    class Celery(object):
        def __init__(self, main, broker=None, set_as_current=True):
            assert broker.startswith("redis://:")
            assert set_as_current is False
            self.conf = types.SimpleNamespace(update=lambda **kw: None)
            self.control = Control()

        def send_task(self, name, args=None, queue=None, **kwargs):
            state.sent.append({"name": name, "args": args, "queue": queue})

        def close(self):
            pass

    monkeypatch.setattr(checks_io, "redis", fake_redis)
    monkeypatch.setattr(checks_io, "requests", fake_requests)
    monkeypatch.setattr(checks_io, "Celery", Celery)
    for name in ("REDIS_IMPORT_ERROR", "REQUESTS_IMPORT_ERROR", "CELERY_IMPORT_ERROR"):
        monkeypatch.setattr(checks_io, name, None)
    monkeypatch.setattr(checks_io.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(checks_io, "PROBE_POLL_FIRST", 0.001)
    return state


def run(capsys, **args):
    params = dict(broker_url=BROKER_URL, lrs_url=LRS_URL, lrs_login="pod-xapi", lrs_password=LRS_SECRET)
    params.update(args)
    result = run_module(xapi_check.main, capsys, params)
    out = json.dumps(result)
    assert BROKER_SECRET not in out
    assert LRS_SECRET not in out
    assert READ_SECRET not in out
    return result


def statuses(result):
    return dict((c["name"], c["status"]) for c in result["checks"])


# --- tests --------------------------------------------------------------------------------------
def test_healthy_pipeline_with_probe(capsys, lab):
    result = run(capsys)
    assert not result.get("failed")
    assert result["changed"] is True
    assert statuses(result) == dict.fromkeys(
        ("broker", "memory", "consumers", "backlog", "dead_letters", "lrs", "credentials", "probe"), "ok")
    memory = result["broker"].pop("memory")
    assert result["broker"] == {"url": "redis://:********@frontal:6379/6", "address": "frontal:6379",
                                "reachable": True, "authenticated": True}
    assert memory["percent"] == 6.2 and memory["level"] == "ok" and memory["policy"] == "noeviction"
    assert memory["msg"] == "broker memory at 6.2% of its maxmemory (16 MiB of 256 MiB)"
    assert result["consumers"] == ["xapi@encoding"] and result["consumer_count"] == 1
    assert result["backlog"] == 0 and result["dead_letters"] == 0
    assert result["lrs"]["status"] == 400 and result["lrs"]["credentials"] is True
    assert result["lrs"]["latency_ms"] >= 0
    probe = result["probe"]
    assert probe["stored"] is True and probe["enqueued"] is True and probe["polls"] == 2
    assert probe["activity_id"] == "urn:esup-pod:xapi:probe"
    assert probe["latency_ms"] >= 0
    assert lab.sent == [{"name": "pod.xapi.xapi_tasks.send_xapi_statement_task",
                         "args": [lab.sent[0]["args"][0]], "queue": "xapi"}]
    assert lab.sent[0]["args"][0]["id"] == probe["id"]
    assert result["msg"].startswith("xAPI pipeline healthy")
    assert result["elapsed_ms"] >= 0
    assert result["lines"][0] == "broker       ok      " + result["checks"][0]["msg"]
    assert result["lines"][-1] == "whole check took %s ms" % result["elapsed_ms"] and len(result["lines"]) == 9


def test_check_mode_skips_the_probe(capsys, lab):
    result = run(capsys, _ansible_check_mode=True)
    assert result["changed"] is False
    assert statuses(result)["probe"] == "skipped"
    assert lab.sent == []


def test_probe_false_changes_nothing(capsys, lab):
    result = run(capsys, probe=False)
    assert result["changed"] is False and lab.sent == []
    assert not result.get("failed")


def test_broker_refuses_password(capsys, lab):
    lab.errors["ping"] = AuthenticationError("invalid username-password pair")
    result = run(capsys)
    assert result["failed"] is True
    assert cause(result["msg"]) == "broker refused the password"
    assert result["broker"]["reachable"] is True and result["broker"]["authenticated"] is False
    assert statuses(result) == {"broker": "failed", "memory": "skipped", "consumers": "skipped", "backlog": "skipped",
                                "dead_letters": "skipped", "lrs": "ok", "credentials": "ok", "probe": "skipped"}
    assert result["changed"] is False and lab.sent == []


def test_broker_noauth_response_is_a_password_problem(capsys, lab):
    lab.errors["ping"] = ResponseError("NOAUTH Authentication required.")
    assert cause(run(capsys)["msg"]) == "broker refused the password"


def test_broker_unreachable(capsys, lab):
    lab.errors["ping"] = RedisConnectionError("Error 111 connecting to frontal:6379. Connection refused.")
    result = run(capsys)
    assert cause(result["msg"]) == "broker unreachable at frontal:6379"
    assert result["broker"]["reachable"] is False
    assert "Connection refused" in result["checks"][0]["detail"]


def test_no_consumer_after_retries(capsys, lab):
    lab.answers = [None]
    result = run(capsys, consumer_retries=3)
    assert cause(result["msg"]) == "no worker consumes queue xapi"
    assert result["consumer_attempts"] == 4 and lab.inspected == 4
    assert result["consumer_count"] == 0 and result["consumers"] == []
    assert statuses(result)["probe"] == "skipped" and lab.sent == []


def test_worker_still_starting_is_retried(capsys, lab):
    lab.answers = [None, {"celery@enc": [{"name": "celery"}]}, {"xapi@enc": [{"name": "xapi"}]}]
    result = run(capsys, probe=False)
    assert not result.get("failed")
    assert result["consumer_attempts"] == 3 and result["consumers"] == ["xapi@enc"]


def test_a_missing_node_of_this_host_fails_although_others_consume(capsys, lab):
    lab.answers = [{"xapi@encoding1": [{"name": "xapi"}], "xapi@encoding3": [{"name": "xapi"}]}]
    result = run(capsys, nodes=["xapi@encoding2"], consumer_retries=1, consumer_delay=0)
    assert result["failed"] and cause(result["msg"]) == "node(s) xapi@encoding2 do not consume queue xapi"
    assert result["consumer_attempts"] == 2 and result["consumer_count"] == 2
    result = run(capsys, nodes=["xapi@encoding1"], probe=False)
    assert not result.get("failed") and result["consumer_attempts"] == 1


def test_too_few_consumers(capsys, lab):
    result = run(capsys, min_consumers=2, consumer_retries=0)
    assert cause(result["msg"]) == "only 1 worker(s) consume queue xapi, expected at least 2"


def test_backlog_counts_priority_lists(capsys, lab):
    lab.lengths = {"xapi": 4, "xapi\x06\x169": 2, "celery": 100}
    result = run(capsys, max_backlog=5)
    assert result["backlog"] == 6
    assert cause(result["msg"]) == "backlog 6 exceeds 5"
    result = run(capsys, max_backlog=6, probe=False)
    assert not result.get("failed") and result["backlog"] == 6


def test_lrs_unreachable(capsys, lab):
    lab.errors["lrs"] = RequestException("Connection refused")
    result = run(capsys)
    assert cause(result["msg"]) == "LRS unreachable at %s" % LRS_URL
    assert statuses(result)["credentials"] == "skipped"
    assert result["lrs"]["reachable"] is False and result["lrs"]["status"] is None


def test_lrs_refuses_credentials(capsys, lab):
    result = run(capsys, lrs_password="wrong-password")
    assert cause(result["msg"]) == "LRS refused the credentials"
    assert result["lrs"]["status"] == 401 and result["lrs"]["credentials"] is False
    assert lab.sent == []


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_lrs_that_redirects_fails_naming_the_target(capsys, lab, status):
    lab.lrs_redirect = (status, "https://pod-xapi:hunter2@lrs.example.org/xAPI/statements/")
    result = run(capsys)
    assert cause(result["msg"]) == "XAPI_LRS_URL redirects to https://pod-xapi:********@lrs.example.org/xAPI/statements/"
    assert "hunter2" not in json.dumps(result)
    assert statuses(result)["credentials"] == "skipped"


def test_a_relative_redirect_is_named_in_full(capsys, lab):
    lab.lrs_redirect = (302, "/login?next=/xAPI/statements")
    result = run(capsys, probe=False)
    assert cause(result["msg"]) == "XAPI_LRS_URL redirects to http://lrs:8100/login?next=/xAPI/statements"


def test_credentials_are_proven_by_a_post_that_stores_nothing(capsys, lab):
    lab.write_only = True
    result = run(capsys, probe=False)
    assert not result.get("failed"), result
    assert statuses(result)["credentials"] == "ok"
    assert result["lrs"]["status"] == 400 and result["lrs"]["credentials"] is True
    assert lab.posts == [[]]


def test_lrs_other_status(capsys, lab):
    lab.lrs_status = 500
    result = run(capsys)
    assert cause(result["msg"]) == "LRS answered HTTP 500 at %s" % LRS_URL
    assert result["lrs"]["credentials"] is None


def test_several_broken_links_in_pipeline_order(capsys, lab):
    lab.answers = [None]
    lab.errors["lrs"] = RequestException("down")
    result = run(capsys, consumer_retries=0)
    assert cause(result["msg"]) == "no worker consumes queue xapi; LRS unreachable at %s" % LRS_URL


def test_without_a_read_account_the_probe_relies_on_the_lrss_answer_and_says_so(capsys, lab):
    lab.write_only = True
    result = run(capsys)
    assert not result.get("failed"), result
    probe = result["probe"]
    assert probe["stored"] is True and probe["proof"] == "lrs_answer" and probe["polls"] == 2
    assert lab.answer_lookups == ["xapi.probe-answer:%s" % probe["id"]] * 2
    msg = [c["msg"] for c in result["checks"] if c["name"] == "probe"][0]
    assert msg == ("probe %s delivered in %s ms, on the LRS's word: the LRS answered HTTP 200 with the probe's id "
                   "(not read back: no read account, set xapi_lrs_read_login and xapi_lrs_read_password to read it "
                   "back)" % (probe["id"], probe["latency_ms"]))
    assert lab.lookups == 2  # no GET of the LRS


def test_an_lrs_answer_without_the_probes_id_fails_naming_it(capsys, lab):
    lab.probe_answer = lambda sid: json.dumps({"status": 200, "ids": ["another-id"]})
    result = run(capsys)
    assert result["failed"] is True and result["probe"]["stored"] is False
    assert cause(result["msg"]) == "LRS answered the probe's POST with HTTP 200 but without the probe's id"


def test_with_a_read_account_the_probe_is_read_back_with_it(capsys, lab):
    lab.write_only = True
    result = run(capsys, **READER)
    assert not result.get("failed"), result
    probe = result["probe"]
    assert probe["stored"] is True and probe["proof"] == "read_back" and probe["polls"] == 2
    assert lab.answer_lookups == []
    msg = [c["msg"] for c in result["checks"] if c["name"] == "probe"][0]
    assert msg.endswith("(read back with the read account 'pod-reader')"), msg


def test_a_read_refused_to_the_read_account_names_it_never_the_writers_password(capsys, lab):
    lab.reader_may_read = False
    result = run(capsys, **READER)
    assert result["failed"] is True
    assert result["msg"] == ("LRS refused to read the probe back to the read account 'pod-reader' (HTTP 401): check "
                             "xapi_lrs_read_login and xapi_lrs_read_password, and that this account may read statements")
    assert statuses(result)["credentials"] == "ok" and result["lrs"]["credentials"] is True
    assert "refused the credentials" not in json.dumps(result)


@pytest.mark.parametrize("given", [dict(lrs_read_login="pod-reader"), dict(lrs_read_password=READ_SECRET)])
def test_a_read_account_needs_both_login_and_password(capsys, lab, given):
    result = run(capsys, **given)
    assert result["msg"] == ("lrs_read_login and lrs_read_password go together: set both (an account that may read "
                             "statements) or neither")
    assert lab.sent == []


def test_probe_not_stored(capsys, lab):
    lab.stores_after = None
    result = run(capsys, probe_timeout=0.05)
    assert result["failed"] is True
    assert cause(result["msg"]) == "probe not stored within 0.05 s"
    assert result["changed"] is True  # the probe was enqueued: it may still reach the LRS
    assert result["probe"]["enqueued"] is True and result["probe"]["stored"] is False
    assert result["probe"]["polls"] >= 1


def test_bad_broker_url_is_refused_before_any_check(capsys, lab):
    result = run(capsys, broker_url="amqp://guest:%s@rabbit//" % BROKER_SECRET)
    assert result["failed"] is True
    assert "is not a redis:// or rediss:// URL" in result["msg"]
    assert lab.redis_urls == []


def test_percent_encoded_broker_password_is_masked(capsys, lab):
    result = run(capsys, broker_url="redis://:a%2Fb-planted@frontal:6379/6", probe=False)
    text = json.dumps(result)
    assert "a%2Fb-planted" not in text and "a/b-planted" not in text
    assert result["broker"]["url"] == "redis://:********@frontal:6379/6"


def test_empty_lrs_url(capsys, lab):
    result = run(capsys, lrs_url="")
    assert result["msg"].startswith("lrs_url is empty")


def test_missing_library_says_where_to_run(capsys, lab, monkeypatch):
    monkeypatch.setattr(checks_io, "CELERY_IMPORT_ERROR", "Traceback: No module named celery")
    result = run(capsys)
    assert result["failed"] is True
    assert "celery" in result["msg"] and "ansible_python_interpreter" in result["msg"]
    assert "virtualenv" in result["msg"]


def test_values_from_pod_settings(capsys, lab, tmp_path):
    custom = tmp_path / "pod" / "custom"
    custom.mkdir(parents=True)
    settings = custom / "settings_local.py"
    settings.write_text(
        "SECRET_KEY = 'x'\nprint('noise on stdout')\n"
        "XAPI_CELERY_BROKER_URL = %r\nXAPI_LRS_URL = %r\nXAPI_LRS_LOGIN = 'pod-xapi'\nXAPI_LRS_PWD = %r\n"
        % (BROKER_URL, LRS_URL, LRS_SECRET)
    )
    params = dict(settings_path=str(settings), _ansible_tmpdir=None, probe=False)
    with patch_module_args(params):
        with pytest.raises(SystemExit):
            xapi_check.main()
    out = capsys.readouterr().out
    assert BROKER_SECRET not in out and LRS_SECRET not in out
    result = json.loads(out)
    assert not result.get("failed"), result["msg"]
    assert result["settings_used"] == ["broker_url", "lrs_url", "lrs_login", "lrs_password"]
    assert result["broker"]["url"] == "redis://:********@frontal:6379/6"
    assert not (custom / "__pycache__").exists()  # read-only: no bytecode next to the site's file


def test_explicit_options_win_over_settings(capsys, lab, tmp_path):
    settings = tmp_path / "settings_local.py"
    settings.write_text("XAPI_LRS_URL = 'http://elsewhere/'\nXAPI_LRS_LOGIN = 'pod-xapi'\n")
    result = run(capsys, settings_path=str(settings), lrs_login=None, probe=False)
    assert result["settings_used"] == ["lrs_login"]
    assert result["lrs"]["url"] == LRS_URL


def test_missing_settings_file(capsys, lab, tmp_path):
    result = run(capsys, broker_url=None, settings_path=str(tmp_path / "nope.py"))
    assert result["failed"] is True
    assert result["msg"] == "broker_url not given, and settings_path %s does not exist" % (tmp_path / "nope.py")


@pytest.mark.parametrize("option", ["probe_timeout", "timeout", "inspect_timeout"])
def test_timeouts_must_be_positive(capsys, lab, option):
    result = run(capsys, **{option: 0})
    assert result["msg"] == "%s must be greater than 0, got 0" % option


def test_dead_letters_above_the_limit_fail_and_are_counted(capsys, lab):
    lab.lengths["xapi.dead-letters"] = 2
    result = run(capsys)
    assert result["failed"] is True and result["dead_letters"] == 2
    assert cause(result["msg"]) == "2 statement(s) refused by the LRS wait in xapi.dead-letters (more than 0)"
    # Dead letters do not stop the probe: the rest of the pipeline works.
    assert statuses(result)["probe"] == "ok"


def test_dead_letters_within_the_limit_or_unlimited_pass(capsys, lab):
    lab.lengths["site.dead"] = 3
    result = run(capsys, dead_letter_key="site.dead", max_dead_letters=3)
    assert not result.get("failed") and result["dead_letters"] == 3
    result = run(capsys, dead_letter_key="site.dead", max_dead_letters=-1)
    assert not result.get("failed") and statuses(result)["dead_letters"] == "ok"


def test_unreadable_dead_letters_fail(capsys, lab):
    lab.errors["llen"] = ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")
    result = run(capsys)
    assert result["failed"] is True and result["msg"] == "dead letters xapi.dead-letters unreadable"


def test_the_lrss_certificate_is_verified_against_the_system_store_by_default(capsys, lab, tmp_path, monkeypatch):
    system = tmp_path / "ca-certificates.crt"
    system.write_text("PEM")
    monkeypatch.setattr(checks_io.lrs_verify, "__defaults__", ((str(tmp_path / "absent.crt"), str(system)),))
    result = run(capsys)
    assert not result.get("failed")
    # The credentials' POST and the probe's lookups alike: not requests' own list (certifi).
    assert lab.verify and set(lab.verify) == {str(system)}


def test_without_a_system_store_requests_default_is_used(capsys, lab, tmp_path, monkeypatch):
    monkeypatch.setattr(checks_io.lrs_verify, "__defaults__", ((str(tmp_path / "absent.crt"),),))
    run(capsys, probe=False)
    assert lab.verify == [True]


def test_lrs_ca_file_is_what_the_lrs_is_verified_against(capsys, lab, tmp_path):
    ca_file = tmp_path / "university-ca.pem"
    ca_file.write_text("PEM")
    result = run(capsys, lrs_ca_file=str(ca_file))
    assert not result.get("failed") and lab.verify and set(lab.verify) == {str(ca_file)}


def test_validate_certs_false_verifies_nothing_whatever_the_ca_file(capsys, lab, tmp_path):
    result = run(capsys, validate_certs=False, lrs_ca_file=str(tmp_path / "absent.pem"), probe=False)
    assert not result.get("failed") and lab.verify == [False]


def test_a_missing_lrs_ca_file_fails_before_any_request(capsys, lab, tmp_path):
    result = run(capsys, lrs_ca_file=str(tmp_path / "absent.pem"))
    assert result["failed"] is True and lab.verify == [] and lab.sent == []
    assert result["msg"] == ("lrs_ca_file %s does not exist: the LRS's certificate cannot be verified against it"
                             % (tmp_path / "absent.pem"))


# --- the broker's memory --------------------------------------------------------------------------
def test_a_broker_near_its_limit_under_noeviction_warns_then_fails(capsys, lab):
    lab.memory.update(used_memory=210 * 2 ** 20)
    result = run(capsys, probe=False)
    assert not result.get("failed")
    assert result["broker"]["memory"]["level"] == "warning" and result["broker"]["memory"]["percent"] == 82.0
    step = ", so look at the backlog and the dead letters, or raise broker_maxmemory and run site.yml"
    warning = ("broker memory at 82% of its maxmemory (210 MiB of 256 MiB), over 80%: when full it refuses new "
               "statements (noeviction)" + step)
    assert result["broker"]["memory"]["msg"] == warning
    assert warning in json.dumps(result["warnings"])  # a plain string or a WarningSummary, by ansible-core release
    lab.memory.update(used_memory=250 * 2 ** 20)
    result = run(capsys, probe=False)
    assert result["failed"] is True
    assert result["msg"] == ("broker memory at 97.7% of its maxmemory (250 MiB of 256 MiB), over 95%: when full it "
                             "refuses new statements (noeviction)" + step)
    assert statuses(result)["memory"] == "failed"


def test_the_memory_thresholds_are_options(capsys, lab):
    lab.memory.update(used_memory=210 * 2 ** 20)
    result = run(capsys, probe=False, broker_memory_warning=90, broker_memory_critical=-1)
    assert not result.get("failed") and result["broker"]["memory"]["level"] == "ok"
    result = run(capsys, probe=False, broker_memory_critical=50)
    assert result["failed"] is True and "over 50%" in result["msg"]


def test_a_broker_that_evicts_is_never_full(capsys, lab):
    lab.memory.update(used_memory=256 * 2 ** 20, maxmemory_policy="volatile-lru")
    result = run(capsys, probe=False)
    assert not result.get("failed")
    assert result["broker"]["memory"]["level"] == "ok" and result["broker"]["memory"]["percent"] == 100.0
    assert "it evicts at its limit (maxmemory-policy volatile-lru), it is never full" in result["broker"]["memory"]["msg"]


def test_a_broker_without_limit_is_said_so(capsys, lab):
    lab.memory.update(maxmemory=0)
    result = run(capsys, probe=False)
    assert not result.get("failed")
    assert result["broker"]["memory"]["percent"] is None
    assert result["broker"]["memory"]["msg"] == "broker has no memory limit (maxmemory 0), 16 MiB used"


def test_a_broker_that_refuses_info_leaves_the_memory_unknown(capsys, lab):
    lab.errors["info"] = ResponseError("NOPERM this user has no permissions to run the 'info' command")
    result = run(capsys, probe=False)
    assert not result.get("failed")
    assert statuses(result)["memory"] == "skipped" and result["broker"]["memory"] is None


def test_memory_thresholds_above_100_are_refused(capsys, lab):
    result = run(capsys, broker_memory_critical=120)
    assert result["failed"] is True and "at most 100" in result["msg"]
