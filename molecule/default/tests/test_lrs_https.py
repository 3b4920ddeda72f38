"""The lab's LRS behind real HTTPS: nginx terminates TLS with a certificate of a lab CA that only the
hosts' system stores hold, as a university's CA; the worker, the preflight and the tests verify it.
The other fronts the tests reach: plain HTTP, a 301 to https, a 302 to a login page, and an
account that can only write."""

import json
import os
import re
import uuid
from urllib.parse import urlsplit

import pytest

from lablib import lab, pod
from lablib.lrs import LRS

TLS_LOG = "/var/log/nginx/lab-lrs-tls.access.log"
CA_IN_STORE = "/usr/local/share/ca-certificates/esup-pod-xapi-lab-ca.crt"


def statement():
    return {
        "id": str(uuid.uuid4()),
        "actor": {"name": "lab-https", "mbox": "mailto:lab-https@example.org"},
        "verb": {"id": "https://w3id.org/xapi/video/verbs/played", "display": {"en-US": "played"}},
        "object": {"id": "http://frontal/video/0001-lab-https/", "objectType": "Activity"},
    }


@pytest.fixture(scope="module")
def writer():
    """The LRS reached from the encoding host with the write-only account."""
    return LRS(via="encoding", login=lab.var("lrs", "lab_lrs_writer_login"),
               password=lab.var("lrs", "lab_lrs_writer_password"))


def test_inventory_url_is_https_on_the_tls_front():
    url = urlsplit(lab.var("lrs", "xapi_lrs_url"))
    assert url.scheme == "https" and url.hostname == "lrs", url
    assert url.port == int(lab.var("lrs", "lab_lrs_tls_port")) != int(lab.var("lrs", "lab_lrs_port"))


def test_every_host_trusts_the_lab_ca_in_its_system_store(lab_host):
    ca = lab_host("lrs").file("/etc/lab-ca/ca.crt").content_string.strip()
    for name in os.environ.get("LAB_HOSTS", "frontal encoding lrs").split():
        store = lab_host(name).file("/etc/ssl/certs/ca-certificates.crt").content_string
        assert ca in store, "%s's system store lacks the lab CA" % name
        assert lab_host(name).file(CA_IN_STORE).exists, name


def test_worker_statements_reach_ralph_through_the_tls_front(lab_host, lrs):
    """Pod's task on the frontal, the broker and the worker: the worker's POST is in nginx's TLS log."""
    encoding = lab_host("encoding").check_output("getent hosts encoding | cut -d' ' -f1").split()[0]
    before = int(lab_host("lrs").check_output("wc -l < %s" % TLS_LOG))
    ids = pod.enqueue(1, tag="https")
    lrs.wait_for(ids, timeout=120)
    log = lab_host("lrs").check_output("tail -n +%d %s" % (before + 1, TLS_LOG))
    posts = [line for line in log.splitlines()
             if line.startswith(encoding + " ") and '"POST /xAPI/statements/ ' in line and '" 200 ' in line]
    assert posts, "no POST of the worker in nginx's TLS access log:\n" + log[-2000:]
    assert any("python-requests" in line for line in posts), posts


def test_lab_ca_is_not_in_certifi_so_the_worker_uses_the_system_store(lab_host):
    """The worker's virtualenv's certifi does not verify the LRS; the system store does."""
    python = "/opt/esup-pod-xapi/venv/bin/python"
    assert lab_host("encoding").file(python).exists
    probe = r"""
import certifi, json, socket, ssl, sys
host, port = sys.argv[1], int(sys.argv[2])
result = {}
for name, cafile in (("certifi", certifi.where()), ("system", "/etc/ssl/certs/ca-certificates.crt")):
    context = ssl.create_default_context(cafile=cafile)
    try:
        with socket.create_connection((host, port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=host):
                result[name] = "verified"
    except ssl.SSLCertVerificationError as error:
        result[name] = "refused: %s" % error.verify_message
result["certifi_bundle"] = open(certifi.where()).read()
print(json.dumps(result))
"""
    port = lab.var("lrs", "lab_lrs_tls_port")
    out = json.loads(lab_host("encoding").check_output("%s -c %s lrs %s" % (python, _quote(probe), port)))
    ca = lab_host("lrs").file("/etc/lab-ca/ca.crt").content_string.strip()
    assert ca not in out["certifi_bundle"]
    assert out["certifi"].startswith("refused"), out["certifi"]
    assert out["system"] == "verified", out["system"]


def test_plain_http_still_answers(lrs):
    plain = LRS(via="encoding", url=lab.var("lrs", "lab_lrs_http_url"))
    assert plain.url.startswith("http://")
    status, body = plain.heartbeat()
    assert status == 200, body
    sent = statement()
    status, body = plain.post(sent)
    assert (status, json.loads(body)) == (200, [sent["id"]]), body
    assert lrs.get(sent["id"])["id"] == sent["id"]


def test_http_front_redirects_to_https_with_301(lrs_from_encoding):
    url = lab.var("lrs", "lab_lrs_redirect_url")
    assert url.startswith("http://")
    status, location, body = lrs_from_encoding.answer("POST", url, body=statement())
    assert status == 301, (status, body)
    assert location == lab.var("lrs", "xapi_lrs_url"), location


def test_login_front_redirects_to_a_login_page_with_302(lrs_from_encoding):
    url = lab.var("lrs", "lab_lrs_login_redirect_url")
    status, location, body = lrs_from_encoding.answer("POST", url, body=statement())
    assert status == 302, (status, body)
    root = url.split("/xAPI/", 1)[0]
    assert location == root + "/login", location
    status, location, body = lrs_from_encoding.answer("GET", location)
    assert status == 200 and location is None, (status, body)


def test_write_only_account_posts_and_cannot_read(writer, lrs):
    sent = statement()
    status, body = writer.post(sent)
    assert status == 200, body
    assert json.loads(body) == [sent["id"]]
    status, body = writer.request("GET", "%s?statementId=%s" % (writer.url, sent["id"]))
    assert status == 401, (status, body)
    # The inventory's account, which holds statements/read, reads what another account wrote.
    assert lrs.get(sent["id"])["id"] == sent["id"]


def test_preflight_accepts_the_write_only_account():
    """The preflight's credentials check is a POST of an empty list, which write-only keys pass."""
    rc, out = lab.run_playbook("playbooks/site.yml", "--check", "--tags", "preflight",
                               "-e", "xapi_lrs_login=%s" % lab.var("lrs", "lab_lrs_writer_login"),
                               "-e", "xapi_lrs_password=%s" % lab.var("lrs", "lab_lrs_writer_password"))
    assert rc == 0, out[-3000:]
    task = re.search(r"TASK \[esup_pod\.xapi\.worker : Check that the LRS accepts the credentials\].*?\n\n", out, re.S)
    assert task and "ok: [encoding]" in task.group(0), out[-3000:]


def _quote(text):
    return "'" + text.replace("'", "'\"'\"'") + "'"


@pytest.fixture(scope="module")
def deployed_with_the_writer():
    """site.yml with the write-only account as the worker's (Pod's XAPI_LRS_LOGIN); the inventory's account after."""
    writer = ["-e", "xapi_lrs_login=%s" % lab.var("lrs", "lab_lrs_writer_login"),
              "-e", "xapi_lrs_password=%s" % lab.var("lrs", "lab_lrs_writer_password")]
    rc, out = lab.run_playbook("playbooks/site.yml", *writer)
    try:
        yield rc, out, writer
    finally:
        rc_back, out_back = lab.run_playbook("playbooks/site.yml")
        assert rc_back == 0, out_back[-3000:]


def _probe_line(out):
    lines = re.findall(r'^\s+"probe\s+(\w+)\s+(.*)",?$', out, re.M)
    assert lines, out[-3000:]
    return lines[-1]


@pytest.mark.once
def test_site_and_verify_pass_with_a_write_only_key_on_the_lrss_word(deployed_with_the_writer):
    rc, out, writer = deployed_with_the_writer
    assert rc == 0, out[-3000:]
    rc, out = lab.run_playbook("playbooks/verify.yml", *writer)
    assert rc == 0, out[-3000:]
    status, msg = _probe_line(out)
    assert status == "ok" and "on the LRS's word: the LRS answered HTTP 200 with the probe's id (not read back: no read " \
        "account, set xapi_lrs_read_login and xapi_lrs_read_password to read it back)" in msg, msg
    assert "LRS accepted the credentials of %s" % lab.var("lrs", "lab_lrs_writer_login") in out


@pytest.mark.once
def test_verify_reads_the_probe_back_with_the_read_account(deployed_with_the_writer):
    _rc, _out, writer = deployed_with_the_writer
    reader = ["-e", "xapi_lrs_read_login=%s" % lab.var("lrs", "xapi_lrs_login"),
              "-e", "xapi_lrs_read_password=%s" % lab.var("lrs", "xapi_lrs_password")]
    rc, out = lab.run_playbook("playbooks/verify.yml", *writer, *reader)
    assert rc == 0, out[-3000:]
    status, msg = _probe_line(out)
    assert status == "ok" and msg.endswith("(read back with the read account '%s')" % lab.var("lrs", "xapi_lrs_login")), msg
    assert lab.var("lrs", "xapi_lrs_password") not in out


@pytest.mark.once
def test_a_read_refused_to_a_valid_writer_is_not_a_wrong_password(deployed_with_the_writer):
    _rc, _out, writer = deployed_with_the_writer
    login = lab.var("lrs", "lab_lrs_writer_login")
    as_reader = ["-e", "xapi_lrs_read_login=%s" % login,
                 "-e", "xapi_lrs_read_password=%s" % lab.var("lrs", "lab_lrs_writer_password")]
    rc, out = lab.run_playbook("playbooks/verify.yml", *writer, *as_reader)
    assert rc != 0, out[-3000:]
    status, msg = _probe_line(out)
    assert (status, msg) == ("failed", "LRS refused to read the probe back to the read account '%s' (HTTP 401): check "
                             "xapi_lrs_read_login and xapi_lrs_read_password, and that this account may read statements"
                             % login), msg
    assert "LRS accepted the credentials of %s" % login in out and "LRS refused the credentials" not in out
