# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure logic of the worker's monitoring command: the checks' results -> a Nagios state and one
line with performance data, and the redaction of what no check foresaw."""

from __future__ import annotations

import re

import pytest

from ansible_collections.esup_pod.xapi.plugins.module_utils import _xapi_check as xc
from ansible_collections.esup_pod.xapi.tests.unit.compat import cause

LIMITS = {
    "min_consumers": 1, "warning_backlog": 100, "critical_backlog": 1000,
    "warning_dead_letters": 0, "critical_dead_letters": -1, "dead_letter_key": "xapi.dead-letters",
    "warning_lrs_latency": 1.0, "critical_lrs_latency": 5.0, "probe_timeout": None,
    "warning_broker_memory": 80.0, "critical_broker_memory": 95.0,
}
MIB = 2 ** 20
# Nagios plugin guidelines: 'label'=value[UOM];[warn];[crit];[min];[max], UOM one of s ms us % B KB MB TB c.
PERF = re.compile(r"^('[^']+'|[^'= ]+)=(U|-?[0-9.]+)(s|ms|us|%|B|KB|MB|TB|c)?(;[0-9.:~@-]*){0,4}$")


def memory(used_mib, limit_mib=256, policy="noeviction", warning=80.0, critical=95.0):
    return xc.broker_memory({"used_memory": used_mib * MIB, "maxmemory": limit_mib * MIB, "maxmemory_policy": policy},
                            warning, critical)


def healthy(**changes):
    """A Checker's result and checks of a healthy pipeline, with CHANGES."""
    result = {"consumer_count": 1, "backlog": 0, "dead_letters": 0, "broker": {"memory": memory(16)},
              "lrs": {"latency_ms": 12.3, "status": 200}, "probe": {"stored": False, "latency_ms": None}}
    result.update(changes)
    checks = [xc.new_check(name, "ok", "%s fine" % name) for name in xc.LINKS[:-1]]
    checks.append(xc.new_check("probe", "skipped", "skipped: probe=false"))
    return result, checks


def fail(checks, name, msg):
    return [xc.new_check(name, "failed", msg) if c["name"] == name else c for c in checks]


def split(line):
    """(state word, text, [perfdata]) of a plugin line; it is one line, with one '|'."""
    assert "\n" not in line and line.count("|") == 1
    head, perf = line.split(" | ")
    found = re.match(r"^XAPI (OK|WARNING|CRITICAL|UNKNOWN) - (.+)$", head)
    assert found, line
    items = perf.split(" ")
    for item in items:
        assert PERF.match(item), item
    return found.group(1), found.group(2), items


def test_healthy_is_ok_with_every_figure():
    state, line = xc.nagios_report(*healthy(), LIMITS)
    assert state == xc.OK == 0
    assert line == ("XAPI OK - 1 consumer(s), backlog 0, LRS answered in 12 ms, 0 dead letter(s), broker memory 6.2% | "
                    "consumers=1;;1:;0 backlog=0;100;1000;0 lrs_latency=0.0123s;1;5;0 dead_letters=0;0;;0 "
                    "broker_memory=6.2%;80;95;0;100")
    split(line)


def test_stopped_worker_is_critical_and_named_first():
    result, checks = healthy(consumer_count=0)
    state, line = xc.nagios_report(result, fail(checks, "consumers", "no worker consumes queue xapi"), LIMITS)
    assert state == xc.CRITICAL == 2
    word, text, perf = split(line)
    assert word == "CRITICAL"
    assert text == ("no worker consumes queue xapi (0 consumer(s), backlog 0, LRS answered in 12 ms, 0 dead letter(s), "
                    "broker memory 6.2%)")
    assert perf[0] == "consumers=0;;1:;0"


@pytest.mark.parametrize("backlog, expected", [(100, xc.OK), (101, xc.WARNING), (1000, xc.WARNING)])
def test_backlog_above_the_warning_limit_warns(backlog, expected):
    state, line = xc.nagios_report(*healthy(backlog=backlog), LIMITS)
    assert state == expected
    if expected == xc.WARNING:
        assert line.startswith("XAPI WARNING - backlog %d exceeds 100: look at " % backlog)
    assert "backlog=%d;100;1000;0" % backlog in line


def test_backlog_above_the_critical_limit_is_the_checks_failure():
    # The Checker ran with max_backlog = the critical limit: its failure is CRITICAL, not also a warning.
    result, checks = healthy(backlog=1500)
    state, line = xc.nagios_report(result, fail(checks, "backlog", "backlog 1500 exceeds 1000"), LIMITS)
    assert state == xc.CRITICAL
    assert split(line)[1].startswith("backlog 1500 exceeds 1000 (")
    assert line.count("exceeds") == 1


def test_negative_limits_are_no_limits():
    limits = dict(LIMITS, warning_backlog=-1, warning_dead_letters=-1, warning_lrs_latency=-1,
                  critical_lrs_latency=-1, min_consumers=0)
    state, line = xc.nagios_report(*healthy(backlog=10 ** 6, dead_letters=5, lrs={"latency_ms": 60000.0}), limits)
    assert state == xc.OK, line
    assert "consumers=1;;;0 backlog=1000000;;1000;0 lrs_latency=60s;;;0 dead_letters=5;;;0" in line


def test_dead_letters_warn_and_name_the_list():
    state, line = xc.nagios_report(*healthy(dead_letters=2), dict(LIMITS, dead_letter_key="site.dead"))
    assert state == xc.WARNING
    assert cause(split(line)[1]).startswith("2 statement(s) refused by the LRS wait in site.dead (more than 0)")
    assert "celeryd-xapi-dead-letters replay --all) (" in line
    assert line.endswith("dead_letters=2;0;;0 broker_memory=6.2%;80;95;0;100")


@pytest.mark.parametrize("latency_ms, expected, text", [
    (999.0, xc.OK, None),
    (1500.0, xc.WARNING, "LRS answered in 1.5 s, more than 1 s"),
    (7250.0, xc.CRITICAL, "LRS answered in 7.25 s, more than 5 s"),
])
def test_lrs_latency_thresholds(latency_ms, expected, text):
    state, line = xc.nagios_report(*healthy(lrs={"latency_ms": latency_ms}), LIMITS)
    assert state == expected
    if text:
        assert split(line)[1].startswith(text + " (")


def test_worst_problem_first_and_the_state_is_the_worst():
    result, checks = healthy(backlog=150, dead_letters=1)
    checks = fail(checks, "credentials", "LRS refused the credentials")
    state, line = xc.nagios_report(result, checks, LIMITS)
    assert state == xc.CRITICAL
    text = split(line)[1]
    assert cause(text).startswith("LRS refused the credentials; backlog 150 exceeds 100; 1 statement(s) refused")


def test_unknown_figures_are_U():
    # The broker is down: no consumers, backlog or dead letters; the LRS did not answer either.
    result = {"consumer_count": None, "backlog": None, "dead_letters": None, "lrs": {"latency_ms": None}}
    checks = [xc.new_check("broker", "failed", "broker unreachable at frontal:6380"),
              xc.new_check("lrs", "failed", "LRS unreachable at http://lrs:8100/xAPI/statements/")]
    state, line = xc.nagios_report(result, checks, LIMITS)
    assert state == xc.CRITICAL
    word, text, perf = split(line)
    assert text == ("broker unreachable at frontal:6380; LRS unreachable at http://lrs:8100/xAPI/statements/ "
                    "(consumers unknown, backlog unknown, LRS did not answer, dead letters unknown, broker memory unknown)")
    assert perf == ["consumers=U;;1:;0", "backlog=U;100;1000;0", "lrs_latency=U;1;5;0", "dead_letters=U;0;;0",
                    "broker_memory=U;;;0;100"]


def test_a_stored_probe_adds_its_latency():
    result, checks = healthy(probe={"stored": True, "latency_ms": 412.4})
    state, line = xc.nagios_report(result, checks, dict(LIMITS, probe_timeout=30.0))
    assert state == xc.OK
    assert "0 dead letter(s), broker memory 6.2%, probe stored in 412 ms |" in line
    assert line.endswith(" probe_latency=0.4124s;;30;0")


def test_a_probe_proven_by_the_lrss_answer_says_so():
    result, checks = healthy(probe={"stored": True, "latency_ms": 72.2, "proof": "lrs_answer"})
    _state, line = xc.nagios_report(result, checks, dict(LIMITS, probe_timeout=30.0))
    assert "broker memory 6.2%, probe delivered on the LRS's word in 72 ms |" in line


@pytest.mark.parametrize("value, expected", [(0, "0"), (0.0123, "0.0123"), (1.5e-05, "0.000015"), (12, "12"),
                                             (2.50, "2.5"), (-0.0, "0"), (1000000, "1000000")])
def test_perf_numbers_have_no_exponent(value, expected):
    assert xc.perf_number(value) == expected


def test_perfdata_fields():
    assert xc.perfdata("backlog", 3) == "backlog=3"
    assert xc.perfdata("backlog", 3, None, 10) == "backlog=3;;10"
    assert xc.perfdata("lrs_latency", 0.5, 1, 5, 0, uom="s") == "lrs_latency=0.5s;1;5;0"
    assert xc.perfdata("lrs_latency", None, 1, 5, 0, uom="s") == "lrs_latency=U;1;5;0"
    assert xc.perfdata("a b's", 1) == "'a b''s'=1"


def test_unknown_report():
    assert xc.unknown_report("lrs_url is empty") == (3, "XAPI UNKNOWN - lrs_url is empty")


@pytest.mark.parametrize("text, secrets, expected", [
    ("Error 111 connecting to redis://:s3cr%2Ft@frontal:6380/6.", [],
     "Error 111 connecting to redis://:********@frontal:6380/6."),
    ("https://pod-xapi:lrs-pw@lrs/xAPI/ and rediss://user:pw@h:6390/2", [],
     "https://pod-xapi:********@lrs/xAPI/ and rediss://user:********@h:6390/2"),
    ("invalid password 'lrs-pw' for pod-xapi", ["lrs-pw"], "invalid password '********' for pod-xapi"),
    ("no URL, no secret: redis://frontal:6380/6", ["x-not-there"], "no URL, no secret: redis://frontal:6380/6"),
    (None, ["s"], None),
])
def test_redact_text(text, secrets, expected):
    assert xc.redact_text(text, secrets) == expected


# --- the broker's memory ------------------------------------------------------------------------
@pytest.mark.parametrize("used, state, word", [(200, xc.OK, "OK"), (205, xc.WARNING, "WARNING"),
                                               (244, xc.CRITICAL, "CRITICAL")])
def test_the_memory_of_a_noeviction_broker_against_its_thresholds(used, state, word):
    """80 % of 256 MiB is 204.8 MiB and 95 % is 243.2 MiB."""
    found = memory(used)
    result, checks = healthy(broker={"memory": found})
    if found["level"] == "critical":  # the Checker fails the memory link at its critical threshold
        checks = fail(checks, "memory", found["msg"])
    got, line = xc.nagios_report(result, checks, LIMITS)
    assert (got, split(line)[0]) == (state, word)
    assert "broker_memory=%s%%;80;95;0;100" % xc.perf_number(found["percent"]) in line
    if state != xc.OK:
        assert split(line)[1].startswith("broker memory at %s%% of its maxmemory (%d MiB of 256 MiB), over %s%%: when "
                                         "full it refuses new statements (noeviction)"
                                         % (xc.perf_number(found["percent"]), used, "80" if state == xc.WARNING else "95"))


def test_exactly_at_the_warning_threshold_warns():
    assert memory(80, 100)["level"] == "warning" and memory(79.9, 100)["level"] == "ok"
    assert memory(95, 100)["level"] == "critical"


@pytest.mark.parametrize("policy", ["volatile-lru", "volatile-ttl", "allkeys-lru", ""])
def test_a_broker_that_evicts_is_never_full_nor_alerted(policy):
    found = memory(256, policy=policy)
    assert found["level"] == "ok" and found["percent"] == 100.0
    assert found["msg"] == ("broker memory at 100%% of its maxmemory (256 MiB of 256 MiB); it evicts at its limit "
                            "(maxmemory-policy %s), it is never full" % (policy or "unknown"))
    state, line = xc.nagios_report(*healthy(broker={"memory": found}), LIMITS)
    assert state == xc.OK
    assert "broker_memory=100%;;;0;100" in line  # no thresholds where they mean nothing


def test_a_broker_without_limit_says_so():
    found = xc.broker_memory({"used_memory": 3 * MIB, "maxmemory": 0, "maxmemory_policy": "noeviction"})
    assert found == {"used": 3 * MIB, "limit": 0, "policy": "noeviction", "percent": None, "level": "ok",
                     "msg": "broker has no memory limit (maxmemory 0), 3 MiB used"}
    state, line = xc.nagios_report(*healthy(broker={"memory": found}), LIMITS)
    assert state == xc.OK and ", broker without memory limit |" in line and "broker_memory=U;80;95;0;100" in line


def test_negative_or_missing_thresholds_are_no_threshold():
    assert memory(255, warning=-1, critical=-1)["level"] == "ok"
    assert memory(255, warning=None, critical=None)["level"] == "ok"
    assert memory(255, warning=50, critical=-1)["level"] == "warning"


def test_sizes_read_as_people_read_them():
    assert [xc.size_text(n) for n in (0, 1023, 1536, 256 * MIB, 3 * 2 ** 30 // 2)] == [
        "0 B", "1023 B", "1.5 KiB", "256 MiB", "1.5 GiB"]
