"""The lab's LRS: a statement POSTed the way Pod's worker posts it is stored; bad credentials
are refused; the service starts at boot."""

import json
import uuid

import pytest


def make_statement():
    """A statement shaped like those of Pod's xAPI video feature."""
    return {
        "id": str(uuid.uuid4()),
        "actor": {"name": "lab-test", "mbox": "mailto:lab-test@example.org"},
        "verb": {"id": "https://w3id.org/xapi/video/verbs/played", "display": {"en-US": "played"}},
        "object": {
            "id": "http://frontal/video/0001-lab-test/",
            "objectType": "Activity",
            "definition": {"type": "https://w3id.org/xapi/video/activity-type/video"},
        },
        "result": {"extensions": {"https://w3id.org/xapi/video/extensions/time": "12.345"}},
    }


def test_ralph_lrs_runs_and_is_enabled_at_boot(lab_host):
    service = lab_host("lrs").service("ralph-lrs")
    assert service.is_running
    assert service.is_enabled
    assert lab_host("lrs").socket("tcp://0.0.0.0:8100").is_listening


def test_auth_file_is_not_world_readable(lab_host):
    auth = lab_host("lrs").file("/var/lib/ralph/auth.json")
    assert auth.exists
    assert auth.mode & 0o077 == 0


def test_heartbeat_over_lab_network(lrs_from_encoding):
    status, body = lrs_from_encoding.heartbeat()
    assert status == 200, body
    assert json.loads(body) == {"database": "ok"}


def test_statement_from_encoding_is_stored_and_read_back_by_id(lrs_from_encoding, lrs):
    statement = make_statement()
    status, body = lrs_from_encoding.post(statement)
    assert status == 200, body
    assert json.loads(body) == [statement["id"]]

    stored = lrs.wait_for([statement["id"]], timeout=30)[statement["id"]]
    assert stored["verb"]["id"] == statement["verb"]["id"]
    assert stored["object"]["id"] == statement["object"]["id"]
    assert stored["actor"]["mbox"] == statement["actor"]["mbox"]
    assert lrs_from_encoding.get(statement["id"])["id"] == statement["id"]


def test_each_post_is_stored_not_only_the_first(lrs_from_encoding, lrs):
    """Ralph 5.1.0's fs backend stores only the first write unless the launcher switches it to
    APPEND: several POSTs in a row must all be stored."""
    statements = [make_statement() for _number in range(3)]
    for statement in statements:
        status, body = lrs_from_encoding.post(statement)
        assert status == 200, body
    # Each one read back by its id (wait_for fails naming those missing).
    lrs.wait_for([s["id"] for s in statements], timeout=30)


@pytest.mark.parametrize("login, password", [
    ("pod-xapi-wrong", None),
    (None, "wrong-password"),
    ("", ""),
])
def test_wrong_credentials_are_refused(lrs_from_encoding, lrs, login, password):
    statement = make_statement()
    status, body = lrs_from_encoding.post(statement, login=login, password=password)
    assert status in (401, 403), (status, body)
    assert lrs.get(statement["id"]) is None


def test_no_credentials_are_refused(lrs_from_encoding):
    status, body = lrs_from_encoding.request("POST", lrs_from_encoding.url, body=make_statement(), auth=False)
    assert status in (401, 403), (status, body)
