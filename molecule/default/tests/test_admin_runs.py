"""What an admin runs on a converged site besides a plain site.yml: the roles' tags by phase (a
setting changed and the worker restarted with neither git nor pip running), and an offline install
(the worker's requirements from a local wheel directory, with no route from the encoding host to
PyPI).

Each test puts the lab back as it found it; the check-mode run of test_pipeline.py, later, finds no
change. They prove the roles' logic, not the host's release: marked `once`.
"""

import contextlib
import json
import re
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))

from lablib import lab, pod  # noqa: E402

NODE_UNIT = "celeryd-xapi@xapi.service"
CONFIG_DIR = "/etc/celeryd-xapi"
# Every task of the roles that runs git or pip; the preflight's look says what it asked (LOOK).
GIT_AND_PIP_TASKS = (
    "Check out Pod at the pinned version",
    "Install the worker's requirements in the virtualenv",
)
WHEELS = "/srv/xapi-test-wheels"
OFFLINE_BASE = "/opt/xapi-test-offline"
CHAIN = "XAPI_TEST_OFFLINE"
LOOK = "Look at the Pod checkout and the virtualenv, as their owners"


def encoding():
    return lab.host("encoding")


def task_results(output):
    """{task or handler name: [status of each host]} from an ansible-playbook output (default
    callback): ok, changed, skipping, failed, fatal."""
    results, current = {}, None
    for line in output.splitlines():
        header = re.match(r"^(?:TASK|RUNNING HANDLER) \[(?:[\w.]+ : )?(.*?)\] \**$", line)
        if header:
            current = header.group(1)
            results.setdefault(current, [])
        elif line.startswith(("PLAY [", "PLAY RECAP")):
            current = None
        elif current:
            status = re.match(r"^(ok|changed|skipping|failed|fatal): \[", line)
            if status:
                results[current].append(status.group(1))
    return results


def ran(results, name):
    return any(status in ("ok", "changed") for status in results.get(name, []))


def main_pid():
    return int(encoding().check_output("systemctl show --property=MainPID --value %s" % NODE_UNIT))


def command_line():
    """The node's command line, or "" while it has no main process."""
    got = encoding().run("tr '\\0' ' ' < /proc/%d/cmdline" % main_pid())
    return got.stdout if got.rc == 0 and main_pid() > 0 else ""


def clock():
    out = encoding().check_output("journalctl -n 0 --show-cursor --no-pager")
    return re.search(r"-- cursor: (\S+)", out).group(1)


def starts_since(cursor):
    out = encoding().check_output("journalctl --no-pager -o cat -u %s --after-cursor='%s'" % (NODE_UNIT, cursor))
    return len(re.findall(r"^Started .*node xapi", out, re.M))


# --- Tags by phase -------------------------------------------------------------------------------

@pytest.mark.once
def test_configure_and_service_tags_apply_a_setting_and_restart_without_git_or_pip():
    since = clock()
    rc, output = lab.run_playbook("playbooks/site.yml", "--tags", "configure,service", "-e", "worker_log_level=DEBUG", "-v")
    try:
        assert rc == 0, output[-3000:]
        results = task_results(output)
        for name in GIT_AND_PIP_TASKS:
            assert not ran(results, name), "%s ran: %s" % (name, results.get(name))
        look = re.search(r"\[(?:[\w.]+ : )?%s\] \**\nok: \[encoding\] => (\{.*\})" % re.escape(LOOK), output)
        assert look and json.loads(look.group(1))["asked"] == [], "the preflight asked git or pip: %s" % (look and look.group(1))
        # The install phase is not even listed; the preflight ran all the same.
        assert "Install the packages the worker needs" not in results
        assert ran(results, "Check that the LRS accepts the credentials")
        # The configure phase of each role, and the worker restarted once with the new setting.
        settings = "Write the worker's service settings and the Celery config module that loads the hooks"
        assert "changed" in results[settings], results.get(settings)
        assert ran(results, "Write the broker's configuration")
        assert ran(results, "Set the xAPI names in Pod's settings_local.py")
        assert "changed" in results["Restart the xAPI Celery worker"]
        lab.until("the node runs with --loglevel=DEBUG", lambda: "--loglevel=DEBUG" in command_line(), 30)
        assert starts_since(since) == 1
    finally:
        rc, output = lab.run_playbook("playbooks/site.yml", "--tags", "configure,service")
    assert rc == 0, output[-3000:]
    lab.until("the node runs with --loglevel=INFO again", lambda: "--loglevel=INFO" in command_line(), 30)


# --- An offline install --------------------------------------------------------------------------

class NoRouteOut:
    """The encoding host's packets to anywhere outside the lab's network rejected (iptables in its
    network namespace): no route to PyPI, while the lab's hosts (git server, broker, LRS) answer."""

    def __init__(self):
        self.pid = subprocess.run(["podman", "inspect", "-f", "{{.State.Pid}}", lab.container("encoding")],
                                  check=True, text=True, stdout=subprocess.PIPE).stdout.strip()
        subnets = json.loads(subprocess.run(["podman", "network", "inspect", lab.lab_name()], check=True,
                                            text=True, stdout=subprocess.PIPE).stdout)[0]["subnets"]
        self.subnets = [s["subnet"] for s in subnets if ":" not in s["subnet"]]
        assert self.subnets

    def _run(self, tool, *args, check=True):
        return subprocess.run(["nsenter", "-t", self.pid, "-n", tool, *args], check=check,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def __enter__(self):
        self._clear()  # what an interrupted run left
        self._run("iptables", "-N", CHAIN)
        self._run("iptables", "-A", CHAIN, "-o", "lo", "-j", "RETURN")
        for subnet in self.subnets:
            self._run("iptables", "-A", CHAIN, "-d", subnet, "-j", "RETURN")
        self._run("iptables", "-A", CHAIN, "-j", "REJECT")
        self._run("iptables", "-I", "OUTPUT", "1", "-j", CHAIN)
        self._run("ip6tables", "-I", "OUTPUT", "1", "!", "-o", "lo", "-j", "REJECT", check=False)
        return self

    def __exit__(self, *exc):
        self._clear()

    def _clear(self):
        self._run("ip6tables", "-D", "OUTPUT", "!", "-o", "lo", "-j", "REJECT", check=False)
        self._run("iptables", "-D", "OUTPUT", "-j", CHAIN, check=False)
        self._run("iptables", "-F", CHAIN, check=False)
        self._run("iptables", "-X", CHAIN, check=False)


@contextlib.contextmanager
def config_files_kept(host, *names):
    """NAMES of the worker's configuration directory as they were before, whatever the block wrote:
    a run with another checkout or virtualenv rewrites them, and a later run would report it."""
    kept = {name: host.file(CONFIG_DIR + "/" + name).content_string for name in names}
    try:
        yield
    finally:
        for name, content in kept.items():
            restored = host.run("printf '%%s' %s > %s/%s" % (shlex.quote(content), CONFIG_DIR, name))
            assert restored.rc == 0, restored.stderr
    assert {name: host.file(CONFIG_DIR + "/" + name).content_string for name in names} == kept


def pypi_answers():
    """Whether pip on the encoding host gets a package from PyPI (its default index), now."""
    got = encoding().run(
        "%s -m pip download --disable-pip-version-check --no-input --no-cache-dir --no-deps --retries 0 --timeout 10 "
        "-d /tmp/xapi-test-probe requests==2.32.4; rc=$?; rm -rf /tmp/xapi-test-probe; exit $rc" % pod.WORKER_PYTHON)
    return got.rc == 0


@pytest.mark.once
def test_the_worker_installs_its_requirements_from_a_wheel_directory_without_pypi():
    host = encoding()
    venv = OFFLINE_BASE + "/venv"
    # The run adds the new virtualenv to the paths that the role owns: back as it was after.
    with config_files_kept(host, "managed-paths"):
        try:
            # What an admin copies onto an offline host: the wheels of the requirements, under the
            # role's constraints, made while PyPI answers.
            made = host.run(
                "install -d -m 0755 %s && %s -m pip wheel --disable-pip-version-check --no-input --no-cache-dir -q "
                "--wheel-dir %s -r %s -c %s"
                % (WHEELS, pod.WORKER_PYTHON, WHEELS, pod.WORKER_DIR + "/requirements-encode.txt",
                   CONFIG_DIR + "/pip-constraints.txt"))
            assert made.rc == 0, made.stderr
            assert pypi_answers(), "PyPI does not answer the encoding host even before the cut"
            with NoRouteOut():
                assert not pypi_answers(), "the encoding host still reaches PyPI"
                rc, output = lab.run_playbook(
                    "playbooks/site.yml", "--limit", "encoding", "--tags", "install", "-v",
                    "-e", json.dumps({"worker_venv": venv, "worker_pip_no_index": True, "worker_pip_find_links": [WHEELS]}))
                assert rc == 0, output[-3000:]
                assert not pypi_answers()
            results = task_results(output)
            assert results["Install the worker's requirements in the virtualenv"] == ["changed"], output[-3000:]
            assert "Looking in links: %s" % WHEELS in output
            versions = host.run("%s/bin/python -c 'import celery, kombu, redis, requests, webvtt; "
                                "print(celery.__version__, kombu.__version__)'" % venv)
            assert versions.rc == 0, versions.stderr
            assert versions.stdout.split() == ["5.4.0", "5.4.2"]
        finally:
            host.run("rm -rf %s %s" % (WHEELS, OFFLINE_BASE))
    assert lab.until("the node runs", command_line, 30).startswith(pod.WORKER_PYTHON)


# --- An install through a proxy with a password --------------------------------------------------

PROXY_PORT = 8888
PROXY_LOG = "/var/log/tinyproxy/xapi-test.log"


class AuthenticatingProxy:
    """tinyproxy on the LRS host, a real HTTP proxy that asks for a user and a password; removed
    afterwards, with its package."""

    def __init__(self, password):
        self.password = password
        self.host = lab.host("lrs")

    def __enter__(self):
        installed = self.host.run("dpkg-query -W -f='${db:Status-Abbrev}' tinyproxy 2>/dev/null | grep -q '^ii' || "
                                  "{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                                  "apt-get install -y -qq --no-install-recommends tinyproxy; }")
        assert installed.rc == 0, installed.stderr
        config = ("User tinyproxy\nGroup tinyproxy\nPort %d\nTimeout 120\nMaxClients 50\n"
                  "LogFile \"%s\"\nLogLevel Info\nConnectPort 443\nBasicAuth xapi-proxy %s\n"
                  % (PROXY_PORT, PROXY_LOG, self.password))
        written = self.host.run("umask 077 && printf '%%s' %s > /etc/tinyproxy/tinyproxy.conf && "
                                "install -o tinyproxy -m 0640 /dev/null %s && systemctl restart tinyproxy"
                                % (shlex.quote(config), PROXY_LOG))
        assert written.rc == 0, written.stderr
        lab.until("the proxy listens",
                  lambda: self.host.socket("tcp://0.0.0.0:%d" % PROXY_PORT).is_listening, 30)
        return self

    def url(self, password=None):
        return "http://xapi-proxy:%s@lrs:%d" % (password or self.password, PROXY_PORT)

    def log(self):
        got = self.host.run("cat %s" % PROXY_LOG)
        return got.stdout if got.rc == 0 else ""

    def __exit__(self, *exc):
        self.host.run("DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq tinyproxy tinyproxy-bin; "
                      "rm -rf /var/log/tinyproxy /etc/tinyproxy")


@pytest.mark.once
def test_the_worker_installs_through_an_authenticating_proxy_without_showing_its_password():
    """The checkout and the requirements through a proxy with a password, with no direct route to
    PyPI, at -vvv --diff: the password reaches the proxy and no output, log or world-readable file."""
    host = encoding()
    password = "planted-proxy-secret-" + secrets.token_hex(4)
    since = clock()
    # The run with another checkout rewrites these: back as they were after.
    with config_files_kept(host, "managed-paths", "pip-constraints.txt"):
        try:
            with AuthenticatingProxy(password) as proxy, NoRouteOut():
                assert not pypi_answers(), "the encoding host still reaches PyPI"
                # A wrong password: the proxy refuses, and the preflight says so, with the password masked.
                wrong = "planted-wrong-secret-" + secrets.token_hex(4)
                rc, refused = lab.run_playbook(
                    "playbooks/site.yml", "--limit", "encoding", "--tags", "install", "-vvv",
                    "-e", json.dumps({"worker_proxy_env": {"http_proxy": proxy.url(wrong), "https_proxy": proxy.url(wrong)}}))
                assert rc != 0, refused[-3000:]
                assert "worker_pod_repo http://lrs" in refused and "does not answer" in refused, refused[-3000:]
                assert wrong not in refused
                # The right one: Pod checked out and its requirements installed through the proxy.
                rc, output = lab.run_playbook(
                    "playbooks/site.yml", "--limit", "encoding", "--tags", "install", "-vvv", "--diff",
                    "-e", json.dumps({"worker_pod_dir": OFFLINE_BASE + "/Esup-Pod", "worker_venv": OFFLINE_BASE + "/venv",
                                      "worker_proxy_env": {"http_proxy": proxy.url(), "https_proxy": proxy.url()}}))
                assert rc == 0, output[-3000:]
                proxied = proxy.log()
            results = task_results(output)
            assert results["Check out Pod at the pinned version"] == ["changed"], output[-3000:]
            assert results["Install the worker's requirements in the virtualenv"] == ["changed"], output[-3000:]
            assert re.search(r"GET http://lrs:\d+/Esup-Pod\.git/info/refs", proxied), proxied[-2000:]
            assert re.search(r"CONNECT [\w.-]+:443", proxied), proxied[-2000:]
            versions = host.run("%s/venv/bin/python -c 'import celery; print(celery.__version__)'" % OFFLINE_BASE)
            assert versions.stdout.split() == ["5.4.0"], versions.stderr
            # Nowhere but in the proxy and in the file the wrapper reads.
            assert password not in output
            journal = host.check_output("journalctl --no-pager --after-cursor='%s'" % since)
            assert "USER=pod-xapi" in journal  # sudo logged the commands it ran as the worker's user
            assert password not in journal
            settings = host.file(CONFIG_DIR + "/install/env")
            assert (settings.user, settings.group, settings.mode) == ("root", "pod-xapi", 0o640)
            assert password in settings.content_string
        finally:
            host.run("rm -rf %s %s/install/env" % (OFFLINE_BASE, CONFIG_DIR))
    assert lab.until("the node runs", command_line, 30).startswith(pod.WORKER_PYTHON)
