"""The deployed pipeline on the converged lab: what a Pod site relies on after playbooks/site.yml.

Run by Molecule's testinfra verifier (scenarios default and debian13) from the repository root,
with LAB_NAME naming the lab and ANSIBLE_LOG_PATH the log of every ansible-playbook run of the
scenario, converge included.
"""

import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))

from lablib import lab, pod, resp  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
POD_DIR = "/usr/local/django_projects/podv4"
SETTINGS = POD_DIR + "/pod/custom/settings_local.py"
# The worker's own checkout and settings on the encoding host (never the site's).
WORKER_SETTINGS = pod.WORKER_DIR + "/pod/custom/settings_local.py"
SITE_SETTINGS = REPO / "tests" / "fixtures" / "site_settings_local.py"
BLOCK_BEGIN = "# BEGIN esup_pod.xapi managed settings"
BROKER_PORT = "6380"  # the broker role's default (xapi_broker_port), which the lab keeps


def secrets():
    """The secrets planted in the lab inventory."""
    return [lab.var("frontal", "xapi_lrs_password")] + lab.broker_secrets()


def recap(output):
    """{host: {ok, changed, failed, ...}} from a PLAY RECAP."""
    result = {}
    for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.M):
        result[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return result


def test_statements_enqueued_on_the_frontal_all_reach_the_lrs(lrs):
    ids = pod.enqueue(200, tag="verify")
    stored = lrs.wait_for(ids, timeout=180)
    assert sorted(stored) == sorted(ids)
    sample = stored[ids[0]]
    assert sample["verb"]["id"] == "https://w3id.org/xapi/video/verbs/played"
    assert sample["object"]["definition"]["type"] == "https://w3id.org/xapi/video/activity-type/video"


def test_the_worker_consumes_the_xapi_queue(lab_host):
    encoding = lab_host("encoding")
    cmd = pod.inspect("active_queues", via="encoding")
    assert cmd.rc == 0, cmd.stderr
    assert re.search(r"\bxapi@encoding: OK", cmd.stdout), cmd.stdout
    assert "'name': 'xapi'" in cmd.stdout, cmd.stdout
    assert encoding.run("/etc/init.d/celeryd-xapi status").rc == 0


@pytest.mark.parametrize("host_name", ["frontal", "encoding", "lrs"])
def test_every_host_runs_systemd_with_no_failed_unit(lab_host, host_name):
    host = lab_host(host_name)
    assert host.run("readlink /proc/1/exe").stdout.strip().endswith("/systemd")
    state = host.run("systemctl is-system-running --wait")
    failed = host.run("systemctl --failed --plain --no-legend").stdout
    assert state.stdout.strip() == "running", failed


@pytest.mark.parametrize("become, user", [(False, "labadmin"), (True, "root")])
def test_ansible_connects_as_the_admin_user_and_becomes_root_with_sudo(become, user):
    out = lab.ansible("all", "-m", "ansible.builtin.command", "-a", "id -un", *(["--become"] if become else []))
    answers = re.findall(r"^(\S+) \| CHANGED \| rc=0 >>\n(\S+)$", out, re.M)
    assert sorted(host for host, _who in answers) == ["encoding", "frontal", "lrs"], out
    assert {who for _host, who in answers} == {user}, out


def test_the_worker_starts_at_boot():
    container = lab.container("encoding")
    # A reboot: podman stops systemd (SIGRTMIN+3), then boots the container again.
    subprocess.run(["podman", "restart", "-t", "10", container], check=True, stdout=subprocess.DEVNULL)
    # celery multi daemonizes: poll (bounded) for the node to answer, no fixed sleep.
    cmd = None
    for _attempt in range(30):
        cmd = pod.inspect("ping", via="encoding", timeout=2)
        if cmd.rc == 0 and "pong" in cmd.stdout:
            break
    assert cmd.rc == 0 and "pong" in cmd.stdout, cmd.stdout + cmd.stderr
    # The seed's interface tells the truth after the reboot.
    status = lab.host("encoding").run("/etc/init.d/celeryd-xapi status")
    assert status.rc == 0 and "xapi@encoding: running" in status.stdout, status.stdout


def redis_from_encoding(*commands):
    """A raw Redis conversation from the encoding host to the broker: each answer's first line."""
    return resp.talk("encoding", "frontal", BROKER_PORT, *commands, tls=True)


def test_redis_refuses_a_client_without_the_password():
    answers = redis_from_encoding("PING", "LLEN xapi")
    assert answers[0].startswith("-NOAUTH"), answers
    assert answers[1].startswith("-NOAUTH"), answers


def test_redis_accepts_the_password_over_the_lab_network():
    answers = redis_from_encoding("AUTH %s %s" % (lab.broker_user("worker"), lab.broker_password("worker")), "PING")
    assert answers == ["+OK", "+PONG"], answers


def test_redis_policy_and_persistence(lab_host):
    frontal = lab_host("frontal")
    config = {}
    for name in ("maxmemory-policy", "appendonly", "appendfsync", "maxmemory"):
        out = frontal.run("%s -h 127.0.0.1 -p %s config get %s" % (lab.broker_cli("admin"), BROKER_PORT, name))
        assert out.rc == 0, out.stderr
        config.update(dict(zip(out.stdout.split()[::2], out.stdout.split()[1::2])))
    assert config["maxmemory-policy"] == "noeviction", config
    assert config["appendonly"] == "yes" and config["appendfsync"] == "everysec", config
    assert int(config["maxmemory"]) == 256 * 1024 * 1024, config


def test_the_sites_own_settings_survived_byte_for_byte(lab_host):
    content = lab_host("frontal").file(SETTINGS).content_string
    assert BLOCK_BEGIN in content
    site_part = content[:content.index(BLOCK_BEGIN)]
    assert site_part.rstrip("\n") == SITE_SETTINGS.read_text().rstrip("\n")
    assert site_part.startswith(SITE_SETTINGS.read_text())
    compiled = lab_host("frontal").run("python3 -c \"import ast,sys; ast.parse(open(sys.argv[1]).read())\" " + SETTINGS)
    assert compiled.rc == 0, compiled.stderr


@pytest.mark.parametrize("host_name, names", [
    ("frontal", "USE_XAPI, USE_XAPI_VIDEO, XAPI_LRS_URL"),
    ("encoding", "XAPI_LRS_URL, XAPI_LRS_LOGIN"),
])
def test_the_xapi_settings_are_what_pod_reads(lab_host, host_name, names):
    """Pod's task imports pod.custom.settings_local as a plain module: read it the same way, in the
    Pod that enqueues (the site's, on the frontal) or delivers (the worker's own, on the encoding host)."""
    _user, checkout, python = pod.pod_of(host_name)
    out = lab_host(host_name).run(
        "cd %s && %s -c "
        "\"from pod.custom import settings_local as s; print(%s, s.XAPI_CELERY_BROKER_URL.split('@')[-1])\""
        % (checkout, python, ", ".join("s." + n for n in names.split(", "))))
    assert out.rc == 0, out.stderr
    expected = {"USE_XAPI": "True", "USE_XAPI_VIDEO": "True", "XAPI_LRS_URL": lab.var("frontal", "xapi_lrs_url"),
                "XAPI_LRS_LOGIN": lab.var("frontal", "xapi_lrs_login")}
    # rediss: the lab's worker is on another host than the broker, so the link is TLS, verified against the lab CA.
    tls_query = "?ssl_cert_reqs=required&ssl_ca_certs=" + quote(lab.var("frontal", "xapi_broker_ca_file"), safe="")
    assert out.stdout.split() == [expected[n] for n in names.split(", ")] + ["frontal:%s/6%s" % (BROKER_PORT, tls_query)], out.stdout


def test_the_frontal_holds_no_lrs_credentials(lab_host):
    """The frontal only enqueues: Pod's web side needs neither the LRS login nor its password."""
    content = lab_host("frontal").file(SETTINGS).content_string
    block = content[content.index(BLOCK_BEGIN):]
    assert "XAPI_LRS_PWD" not in block and "XAPI_LRS_LOGIN" not in block, block
    assert lab.var("frontal", "xapi_lrs_password") not in content


@pytest.mark.parametrize("host_name, path, owner, group", [
    ("frontal", SETTINGS, "pod", "pod"),
    ("encoding", WORKER_SETTINGS, "root", "pod-xapi"),
    ("encoding", "/etc/default/celeryd-xapi", "root", "root"),
])
def test_files_holding_secrets_are_not_world_readable(lab_host, host_name, path, owner, group):
    f = lab_host(host_name).file(path)
    assert f.exists
    assert f.user == owner and f.group == group
    assert f.mode & stat.S_IRWXO == 0, oct(f.mode)
    assert f.mode & stat.S_IWGRP == 0, oct(f.mode)


def test_the_broker_users_file_is_not_world_readable_and_holds_no_password(lab_host):
    frontal = lab_host("frontal")
    users = frontal.file("/etc/redis/users-xapi.acl")
    assert users.exists and users.mode & stat.S_IRWXO == 0, oct(users.mode)
    assert users.user == "root" and users.group == "redis"
    for secret in lab.broker_secrets():
        assert frontal.run("grep -r -l -F -e %s /etc/redis" % shlex.quote(secret)).stdout == "", "a broker password in clear"


@pytest.mark.parametrize("host_name, checkout", [("frontal", POD_DIR), ("encoding", POD_DIR),
                                                 ("encoding", pod.WORKER_DIR)])
def test_no_role_ever_reset_the_database(lab_host, host_name, checkout):
    assert lab_host(host_name).file(checkout).is_directory
    assert not lab_host(host_name).file(checkout + "/CREATEDB_WAS_RUN").exists
    assert not lab_host(host_name).file(checkout + "/INSTALL_WAS_RUN").exists


def test_secrets_appear_nowhere_in_the_converge_log():
    log = Path(os.environ["ANSIBLE_LOG_PATH"]).read_text()
    # The log really holds the converge: the roles' tasks and their diffs.
    assert "esup_pod.xapi.worker" in log and "esup_pod.xapi.frontal" in log
    for secret in secrets():
        assert secret not in log


def site_secrets():
    """The site's own secrets, planted in its settings_local.py: SECRET_KEY, the database password and
    POD_API_TOKEN."""
    text = SITE_SETTINGS.read_text()
    found = [re.search(pattern, text).group(1) for pattern in (
        r'SECRET_KEY = "([^"]+)"', r'"PASSWORD": "([^"]+)"', r'POD_API_TOKEN = "([^"]+)"')]
    assert all(len(secret) > 8 for secret in found), found
    return found


def test_check_mode_on_the_converged_lab_reports_no_change_and_leaks_nothing():
    rc, output = lab.run_playbook("playbooks/site.yml", "--check", "--diff", "-vvv")
    assert rc == 0, output[-3000:]
    hosts = recap(output)
    assert set(hosts) >= {"frontal", "encoding"}, output[-2000:]
    assert all(counts["changed"] == 0 for counts in hosts.values()), output[-3000:]
    # -vvv shows module arguments and results: still no secret, the site's own included.
    assert "Using module file" in output
    for secret in secrets() + site_secrets():
        assert secret not in output


def test_the_pod_web_service_read_its_settings_again_after_they_changed(lab_host):
    frontal = lab_host("frontal")
    # The time of the web service's last load and the file's mtime, both to the microsecond: a reload
    # within the same second as the write is told apart.
    loaded = pod.web_service_state()[1]
    changed = float(frontal.check_output("stat -c %%.9Y %s" % SETTINGS))
    assert loaded > changed, "uwsgi-pod last loaded at %f, before settings_local.py changed at %f" % (loaded, changed)
