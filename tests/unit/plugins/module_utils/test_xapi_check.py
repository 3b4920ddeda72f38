# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure logic of esup_pod.xapi.xapi_check: URL parsing, redaction, messages, thresholds."""

from __future__ import annotations

import datetime

import re

import pytest

from ansible_collections.esup_pod.xapi.plugins.module_utils import _xapi_check as xc
from ansible_collections.esup_pod.xapi.tests.unit.compat import cause


# --- broker URL ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url, expected",
    [
        ("redis://:s3cret@frontal:6379/6", ("redis", "frontal", 6379, 6, None, "s3cret")),
        ("redis://frontal/6", ("redis", "frontal", 6379, 6, None, None)),
        ("redis://frontal", ("redis", "frontal", 6379, 0, None, None)),
        ("redis://:p@broker.example.org:6380", ("redis", "broker.example.org", 6380, 0, None, "p")),
        ("rediss://user:pw@h:6390/2", ("rediss", "h", 6390, 2, "user", "pw")),
        ("redis://:a%2Fb%40c@h/6", ("redis", "h", 6379, 6, None, "a/b@c")),
        ("redis://:@h/6", ("redis", "h", 6379, 6, None, "")),
        ("redis:///6", ("redis", "localhost", 6379, 6, None, None)),
    ],
)
def test_parse_broker_url(url, expected):
    parsed = xc.parse_broker_url(url)
    got = tuple(parsed[k] for k in ("scheme", "host", "port", "db", "username", "password"))
    assert got == expected


@pytest.mark.parametrize(
    "url, expected",
    [
        ("rediss://u:p@h:6380/6?ssl_cert_reqs=required&ssl_ca_certs=%2Fetc%2Fssl%2Fsite-ca.crt", "/etc/ssl/site-ca.crt"),
        ("rediss://u:p@h:6380/6?ssl_cert_reqs=required", None),
        ("redis://u:p@h:6380/6", None),
    ],
)
def test_parse_broker_url_reads_the_ca_file_that_kombu_reads(url, expected):
    assert xc.parse_broker_url(url)["ca_file"] == expected
    assert xc.parse_broker_url(url)["db"] == 6


@pytest.mark.parametrize(
    "url, words",
    [
        ("", "broker_url is empty"),
        (None, "broker_url is empty"),
        ("amqp://guest:guest@rabbit//", "is not a redis:// or rediss:// URL"),
        ("redis://:pw@h:notaport/6", "bad port"),
        ("redis://:pw@h:6379/six", "bad database number"),
    ],
)
def test_parse_broker_url_rejects(url, words):
    with pytest.raises(xc.BrokerURLError) as err:
        xc.parse_broker_url(url)
    assert words in str(err.value)
    # The message never shows the password.
    assert "guest:guest" not in str(err.value)
    assert ":pw@" not in str(err.value)


def test_broker_address():
    assert xc.broker_address("redis://:pw@frontal:6379/6") == "frontal:6379"
    assert xc.broker_address("redis://frontal/6") == "frontal:6379"


# --- redaction ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url, expected",
    [
        ("redis://:s3cret@frontal:6379/6", "redis://:********@frontal:6379/6"),
        ("rediss://user:s3cret@h:6390/2", "rediss://user:********@h:6390/2"),
        ("redis://frontal:6379/6", "redis://frontal:6379/6"),
        ("https://lrs.example.org/xAPI/statements/", "https://lrs.example.org/xAPI/statements/"),
        ("https://u:p@lrs/xAPI/statements/?a=1", "https://u:********@lrs/xAPI/statements/?a=1"),
        ("redis://:p@ss@word@h/6", "redis://:********@h/6"),
        ("redis://user@h/6", "redis://user@h/6"),
        ("", ""),
        (None, None),
    ],
)
def test_redact_url(url, expected):
    assert xc.redact_url(url) == expected


def test_redact_url_in_rejection_messages():
    with pytest.raises(xc.BrokerURLError) as err:
        xc.parse_broker_url("redis://:topsecret@h:6379/x")
    assert "topsecret" not in str(err.value)
    assert "redis://:********@h:6379/x" in str(err.value)


def test_scrub():
    text = "Error connecting with redis://:abc@h/6 (password abc, url redis://:abc@h/6)"
    out = xc.scrub(text, ["redis://:abc@h/6", "abc", "", None])
    assert "abc" not in out
    assert out == "Error connecting with ******** (password ********, url ********)"
    assert xc.scrub(None, ["x"]) is None
    assert xc.scrub(404, ["4"]) == "********0********"


# --- backlog and consumers ----------------------------------------------------------------------
def test_backlog_keys_match_kombu_redis_transport():
    assert xc.backlog_keys("xapi") == ["xapi", "xapi\x06\x163", "xapi\x06\x166", "xapi\x06\x169"]
    assert xc.backlog_keys("q", sep=":", steps=(0, 0, 5)) == ["q", "q:5"]


def test_backlog_keys_agree_with_kombu_when_installed():
    redis_transport = pytest.importorskip("kombu.transport.redis")
    channel = redis_transport.Channel
    assert xc.KOMBU_PRIORITY_SEP == channel.sep
    assert list(xc.KOMBU_PRIORITY_STEPS) == list(channel.priority_steps)


def test_consumers_of():
    answer = {
        "xapi@enc2": [{"name": "xapi"}],
        "celery@enc1": [{"name": "celery"}],
        "xapi@enc1": [{"name": "celery"}, {"name": "xapi"}],
        "broken@enc3": None,
    }
    assert xc.consumers_of(answer, "xapi") == ["xapi@enc1", "xapi@enc2"]
    assert xc.consumers_of(answer, "other") == []
    assert xc.consumers_of(None, "xapi") == []


# --- messages and thresholds --------------------------------------------------------------------
def test_fixed_messages():
    assert cause(xc.msg_broker_unreachable("frontal:6379")) == "broker unreachable at frontal:6379"
    assert cause(xc.msg_broker_auth()) == "broker refused the password"
    assert cause(xc.msg_lrs_refused()) == "LRS refused the credentials"
    assert cause(xc.msg_lrs_unreachable("http://lrs:8100/xAPI/statements/")) == (
        "LRS unreachable at http://lrs:8100/xAPI/statements/"
    )
    assert cause(xc.msg_lrs_unreachable("https://u:pw@lrs/x/")) == "LRS unreachable at https://u:********@lrs/x/"
    assert cause(xc.msg_lrs_status(500, "http://lrs/x/")) == "LRS answered HTTP 500 at http://lrs/x/"


@pytest.mark.parametrize(
    "count, minimum, expected",
    [
        (0, 1, "no worker consumes queue xapi"),
        (1, 1, None),
        (3, 1, None),
        (0, 0, None),
        (1, 2, "only 1 worker(s) consume queue xapi, expected at least 2"),
        (0, 3, "no worker consumes queue xapi"),
    ],
)
def test_msg_consumers(count, minimum, expected):
    assert cause(xc.msg_consumers(count, minimum, "xapi")) == expected


@pytest.mark.parametrize(
    "backlog, maximum, expected",
    [
        (0, 0, None),
        (10, 10, None),
        (11, 10, "backlog 11 exceeds 10"),
        (5, 0, "backlog 5 exceeds 0"),
        (10 ** 6, -1, None),
        (3, None, None),
    ],
)
def test_msg_backlog(backlog, maximum, expected):
    assert cause(xc.msg_backlog(backlog, maximum)) == expected


@pytest.mark.parametrize("timeout, expected", [(30, "30"), (30.0, "30"), (2.5, "2.5"), (0.25, "0.25")])
def test_msg_probe_timeout(timeout, expected):
    assert cause(xc.msg_probe_timeout(timeout)) == "probe not stored within %s s" % expected


@pytest.mark.parametrize(
    "status, verdict",
    [(200, True), (204, True), (400, True), (422, True), (401, False), (403, False), (301, None), (302, None),
     (404, None), (405, None), (408, None), (413, None), (429, None), (500, None), (None, None)],
)
def test_credentials_verdict(status, verdict):
    assert xc.credentials_verdict(status) is verdict


@pytest.mark.parametrize("status, redirect", [(200, False), (299, False), (300, True), (301, True), (308, True),
                                              (400, False), (None, False)])
def test_is_redirect(status, redirect):
    assert xc.is_redirect(status) is redirect


@pytest.mark.parametrize("location, expected", [
    ("https://lrs.example.org/xAPI/statements/", "https://lrs.example.org/xAPI/statements/"),
    ("/xAPI/statements/", "http://lrs:8100/xAPI/statements/"),
    ("https://u:secret@lrs/x/", "https://u:********@lrs/x/"),
    (None, "an unnamed location"),
])
def test_msg_lrs_redirect(location, expected):
    assert cause(xc.msg_lrs_redirect(location, "http://lrs:8100/xAPI/statements")) == (
        "XAPI_LRS_URL redirects to %s" % expected)


# --- the probe ----------------------------------------------------------------------------------
SID = "0d6f3c2e-2f9a-4c55-9a0e-6f1d8d2c1a77"


@pytest.mark.parametrize(
    "body, found",
    [
        ({"id": SID, "verb": {}}, True),  # the xAPI spec: the statement itself
        ({"statements": [{"id": SID}]}, True),  # Ralph 5.1 fs: a list
        ({"statements": [{"id": "other"}, {"id": SID}], "more": ""}, True),  # a page, filter ignored
        ({"statements": []}, False),  # Ralph before the statement is stored
        ({"statements": [{"id": "other"}]}, False),
        ({"statements": None}, False),
        ([{"id": SID}], False),
        (None, False),
        ("", False),
    ],
)
def test_statement_in_answer(body, found):
    assert xc.statement_in_answer(body, SID) is found


def test_probe_statement():
    now = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    statement = xc.probe_statement(SID, host="encoding", now=now)
    assert statement["id"] == SID
    assert statement["object"]["id"] == xc.PROBE_ACTIVITY_ID == "urn:esup-pod:xapi:probe"
    assert statement["object"]["objectType"] == "Activity"
    assert statement["actor"]["mbox"].startswith("mailto:")
    # email validators (Ralph's) refuse special-use domains such as .invalid or .test
    assert not statement["actor"]["mbox"].endswith((".invalid", ".test", ".local", ".localhost"))
    assert statement["verb"]["id"].startswith("http")
    assert statement["timestamp"] == "2026-01-02T03:04:05+00:00"
    assert statement["context"]["extensions"] == {"urn:esup-pod:xapi:probe:host": "encoding"}
    assert "extensions" not in xc.probe_statement(SID)["context"]


def test_probe_statement_is_valid_json():
    import json

    statement = xc.probe_statement(SID, host="h")
    assert json.loads(json.dumps(statement)) == statement


# --- the summary --------------------------------------------------------------------------------
def test_summary_names_broken_links_in_pipeline_order():
    checks = [
        xc.new_check("lrs", "failed", "LRS unreachable at http://lrs/"),
        xc.new_check("broker", "ok", "fine"),
        xc.new_check("consumers", "failed", "no worker consumes queue xapi"),
        xc.new_check("backlog", "failed", "backlog 5 exceeds 2"),
        xc.new_check("probe", "skipped", "skipped: another link is broken"),
    ]
    assert xc.failures(checks) == [
        "no worker consumes queue xapi",
        "backlog 5 exceeds 2",
        "LRS unreachable at http://lrs/",
    ]
    assert xc.summary_msg(checks) == (
        "no worker consumes queue xapi; backlog 5 exceeds 2; LRS unreachable at http://lrs/"
    )


def test_summary_when_healthy():
    checks = [xc.new_check(name, "ok", "fine") for name in ("broker", "consumers", "backlog", "lrs", "credentials")]
    checks.append(xc.new_check("probe", "skipped", "skipped: check mode"))
    assert xc.summary_msg(checks) == "xAPI pipeline healthy: broker, consumers, backlog, lrs, credentials ok"
    assert all(c["ok"] for c in checks)
    assert xc.new_check("x", "failed")["ok"] is False


def test_every_failure_says_what_to_do_next():
    messages = [xc.msg_broker_unreachable("frontal:6380"), xc.msg_broker_auth(), xc.msg_missing_nodes({"xapi@e"}, "xapi"),
                xc.msg_consumers(0, 1, "xapi"), xc.msg_consumers(1, 2, "xapi"), xc.msg_backlog(2, 1),
                xc.msg_dead_letters(2, 1), xc.msg_lrs_unreachable("https://lrs/x/"), xc.msg_lrs_refused(),
                xc.msg_lrs_status(500, "https://lrs/x/"), xc.msg_lrs_redirect("/y/", "https://lrs/x/"),
                xc.msg_probe_timeout(30),
                xc.broker_memory({"used_memory": 99, "maxmemory": 100, "maxmemory_policy": "noeviction"})["msg"]]
    for msg in messages:
        step = msg.split(": ", 1)[1] if ": " in msg else ""
        assert re.search(r"\b(check|set|start|read|look|list) ", step), msg
        assert "; " not in msg, "'; ' separates the failures of summary_msg: %s" % msg


def test_missing_nodes_are_named():
    assert cause(xc.msg_missing_nodes(set(), "xapi")) is None
    assert cause(xc.msg_missing_nodes({"xapi@encoding2", "xapi@encoding1"}, "xapi")) == (
        "node(s) xapi@encoding1, xapi@encoding2 do not consume queue xapi")


# --- the probe without a read account: the LRS's answer to the worker's POST ----------------------
@pytest.mark.parametrize(
    "record, found, text",
    [
        (None, None, None),
        (b'{"status": 200, "ids": ["p1"]}', True, "the LRS answered HTTP 200 with the probe's id"),
        ('{"status": 200, "ids": ["p0", "p1"]}', True, "the LRS answered HTTP 200 with the probe's id"),
        ('{"status": 409, "ids": null}', True, "the LRS answered HTTP 409: it already holds the probe's id"),
        ('{"status": 204, "ids": null}', True, "the LRS answered HTTP 204, without a list of ids"),
        ('{"status": 200, "ids": ["p2"]}', False, xc.msg_probe_answer_without_id(200)),
        ('{"status": 200, "ids": []}', False, xc.msg_probe_answer_without_id(200)),
        ('{"status": 500, "ids": null}', False, "LRS answered the probe's POST with HTTP 500"),
        ("not json", False, "the worker's record of the LRS's answer to the probe's POST is unreadable"),
        ('{"ids": ["p1"]}', False, "the worker's record of the LRS's answer to the probe's POST is unreadable"),
    ],
)
def test_probe_answer_verdict(record, found, text):
    assert xc.probe_answer_verdict(record, "p1") == (found, text)


def test_probe_answer_record_keeps_only_a_list_of_ids():
    assert xc.probe_answer_record(200, ["a", "b"]) == {"status": 200, "ids": ["a", "b"]}
    assert xc.probe_answer_record(200, {"detail": "x"}) == {"status": 200, "ids": None}
    assert xc.probe_answer_record(204, None) == {"status": 204, "ids": None}
    assert xc.probe_answer_key("p1") == "xapi.probe-answer:p1"


def test_an_answer_without_the_probes_id_says_what_to_do():
    assert xc.msg_probe_answer_without_id(200) == (
        "LRS answered the probe's POST with HTTP 200 but without the probe's id: check what answers at xapi_lrs_url, "
        "or set xapi_lrs_read_login to read the probe back")


def test_a_read_refused_to_the_read_account_names_that_account():
    msg = xc.msg_probe_read_refused("pod-reader", 403)
    assert msg.startswith("LRS refused to read the probe back to the read account 'pod-reader' (HTTP 403)")
    assert "credentials" not in msg
