"""Zero statements lost: each fault of tests/lablib/faults.py on the converged lab, with CI's N.

The rule for every fault: the LRS holds every statement the broker accepted (stored == sent), but
the one malformed statement of fault 8 and the one oversized statement of fault 14, each kept as a dead
letter instead; and every enqueue
Pod made was accepted, but those the full broker of fault 10 refuses on purpose (its out-of-memory
answer): any other refused enqueue is a statement lost. The longest delay stays within the bound
docs/delivery.md states: the fault's duration plus the longest retry backoff plus a minute to catch up
(the visibility timeout for a broker restart). Each fault also checks what it is about (a node
killed while it holds statements, and its unit restoring them; the check naming rotated
credentials, the dead letter and its replay, the full broker refusing enqueues, the untrusted certificate
and its CA installed without a restart, the renewed certificate, the 413).
"""

import os

import pytest

from lablib import faults, lab

# Platform-neutral, and they break and heal the lab: once, after the other tests (conftest.py), on the
# debian13 scenario's lab.
pytestmark = [pytest.mark.once, pytest.mark.debian13]

COUNT = int(os.environ.get("FAULTS_COUNT", "40"))
SPREAD = float(os.environ.get("FAULTS_SPREAD", "4"))
OUTAGE = float(os.environ.get("FAULTS_OUTAGE", "15"))


@pytest.fixture(scope="module")
def lab_():
    return faults.Lab(outage=OUTAGE)


@pytest.fixture(scope="module")
def rows():
    return []


@pytest.mark.parametrize("fault", faults.FAULTS, ids=[fault.__name__ for fault in faults.FAULTS])
def test_no_statement_is_lost(lab_, rows, fault):
    lab_.fresh_store()
    row = fault(lab_, COUNT, SPREAD)
    rows.append(row)
    print(faults.table([row]))
    # A refused enqueue is a statement lost, unless the fault refuses it on purpose.
    assert row.refused_enqueues <= row.expected_refusals, "%d enqueue(s) refused, %d on purpose: %s" % (
        row.refused_enqueues, row.expected_refusals, row.refusals[:3])
    assert row.sent > 0, row
    assert row.ok, "stored %d of %d sent; missing %s" % (row.stored, row.sent, row.missing[:5])
    if row.bound:
        assert row.longest_delay <= row.bound, "longest delay %.1f s exceeds %.0f s" % (row.longest_delay, row.bound)

    if fault is faults.worker_killed:
        # The node held statements when it died (the broker's unacked and in-flight keys), and its unit
        # gave every one back before the node consumed again.
        assert row.details["held_at_kill"] > 0, row.notes
        assert row.details["restored"] is not None and row.details["restored"] >= row.details["held_at_kill"], row.notes
    if fault is faults.lrs_401:
        assert row.details["check_rc"] != 0 and row.details["check_named_credentials"], row.notes
    if fault is faults.lrs_redirects:
        assert row.details["check"][0] != 0 and row.details["check"][1], row.notes
        assert row.details["deploy"] == (2, True, True), row.details
        assert row.details["followed"] == [], row.details
    if fault is faults.lrs_refuses_one:
        assert row.details["dead_letters"] == row.missing and len(row.missing) == 1, row.details
        assert row.details["check_rc"] != 0 and row.details["check_named_dead_letters"], row.details
        assert row.details["replayed_attempts"] == 2 and row.details["left_after_drop"] == [], row.details
    if fault is faults.lrs_cert_untrusted:
        # The worker met the untrusted certificate, the check named it, and the CA installed in the system store
        # delivered the rest without a restart of the worker.
        assert row.details["check"] == (2, True), row.notes
        assert row.details["stored_before_ca"] == 0 and row.details["restarted"] is False, row.details
    if fault is faults.lrs_cert_renewed:
        assert row.details["renewed"] is True and row.duplicates == 0, row.notes
        assert row.details["stored_after"] > 0, row.notes
    if fault is faults.lrs_413:
        assert row.details["statuses"] == [413] and row.details["dead_letters"] == row.missing, row.details
    if fault is faults.broker_full:
        assert row.expected_refusals > 0, row.notes
        assert row.details["drained_at_limit"], row.notes
        assert row.details["refused_after_drain"] == 0, row.notes


def test_the_check_passes_once_the_faults_are_over(rows):
    assert len(rows) == len(faults.FAULTS), "some faults did not run"
    rc, out = lab.run_playbook("playbooks/verify.yml")
    assert rc == 0, out[-3000:]
