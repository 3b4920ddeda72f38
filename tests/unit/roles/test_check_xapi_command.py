# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The worker's monitoring command (roles/worker/files/check_xapi.py) around the module's checks.

The checks themselves (plugins/module_utils/_xapi_check_io.py's Checker) are those of
esup_pod.xapi.xapi_check, tested with it; here a fake Checker stands for them, and these tests check
what the command adds: options -> the checks' params, one line and an exit status, UNKNOWN for
what stops the check, and no secret in the output, whatever raises or prints. The real command runs
on the lab's encoding host (molecule/default/tests/test_monitoring.py).
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from ansible_collections.esup_pod.xapi.plugins.module_utils import _xapi_check as xc
from ansible_collections.esup_pod.xapi.plugins.module_utils import _xapi_check_io as checks_io

ROOT = Path(__file__).resolve().parents[3]
PATH = ROOT / "roles" / "worker" / "files" / "check_xapi.py"
SPEC = importlib.util.spec_from_file_location("check_xapi", PATH)
check_xapi = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(check_xapi)

BROKER_SECRET = "planted-cmd-broker-9c2d"
LRS_SECRET = "planted-cmd-lrs-41be"
BROKER_URL = "redis://:%s@frontal:6380/6" % BROKER_SECRET
LRS_URL = "http://lrs:8100/xAPI/statements/"


@pytest.fixture
def settings(tmp_path):
    path = tmp_path / "settings_local.py"
    path.write_text("XAPI_CELERY_BROKER_URL = %r\nXAPI_LRS_URL = %r\nXAPI_LRS_LOGIN = 'pod-xapi'\nXAPI_LRS_PWD = %r\n"
                    % (BROKER_URL, LRS_URL, LRS_SECRET))
    return path


def install_config(path, settings, validate_certs=True, lrs_ca_file=""):
    path.write_text(json.dumps({"settings": str(settings), "validate_certs": validate_certs, "lrs_ca_file": str(lrs_ca_file)}))


@pytest.fixture
def config(tmp_path, monkeypatch, settings):
    """check.json as the role writes it, pointing at SETTINGS; a test may rewrite it with install_config."""
    path = tmp_path / "check.json"
    install_config(path, settings)
    monkeypatch.setattr(check_xapi, "CONFIG", str(path))
    return path


class FakeChecker(object):
    """Stands for checks_io.Checker: records its params, answers what the test set in `behaviour`."""

    instances = []
    behaviour = {}

    def __init__(self, params, secrets, check_mode=False):
        self.params, self.secrets, self.check_mode = params, secrets, check_mode
        self.result = {"consumer_count": 1, "backlog": 0, "dead_letters": 0, "lrs": {"latency_ms": 8.0},
                       "probe": {"stored": False},
                       "broker": {"memory": xc.broker_memory(
                           {"used_memory": 2 ** 20, "maxmemory": 2 ** 23, "maxmemory_policy": "noeviction"})}}
        self.result.update(self.behaviour.get("result", {}))
        FakeChecker.instances.append(self)

    def run(self):
        noise = self.behaviour.get("noise")
        if noise:
            print(noise)
            sys.stderr.write(noise + "\n")
            logging.getLogger("kombu").error(noise)
            warnings.warn(noise)
        if "raise" in self.behaviour:
            raise self.behaviour["raise"]
        checks = [xc.new_check(name, "ok", "%s fine" % name) for name in xc.LINKS]
        for name, (msg, detail) in self.behaviour.get("failed", {}).items():
            checks = [xc.new_check(name, "failed", msg, detail) if c["name"] == name else c for c in checks]
        return checks


@pytest.fixture
def fake(monkeypatch, config):
    FakeChecker.instances, FakeChecker.behaviour = [], {}
    monkeypatch.setattr(checks_io, "Checker", FakeChecker)
    monkeypatch.setattr(checks_io, "missing_libraries", lambda: [])
    monkeypatch.setattr(check_xapi, "load_library", lambda: (xc, checks_io))
    monkeypatch.setattr(check_xapi.socket, "gethostname", lambda: "encoding1")
    return FakeChecker


def command(capfd, *argv):
    """(exit status, stdout lines) of the command; nothing may reach stderr, no secret stdout."""
    out = io.StringIO()
    state = check_xapi.main(list(argv), out=out)
    text = out.getvalue()
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    for secret in (BROKER_SECRET, LRS_SECRET):
        assert secret not in text
    return state, text.splitlines()


def test_healthy(capfd, fake, settings):
    state, lines = command(capfd, "--nodes", "xapi,bulk@other")
    assert state == 0
    assert lines == ["XAPI OK - 1 consumer(s), backlog 0, LRS answered in 8 ms, 0 dead letter(s), broker memory 12.5% | "
                     "consumers=1;;1:;0 backlog=0;100;1000;0 lrs_latency=0.008s;1;5;0 dead_letters=0;0;;0 "
                     "broker_memory=12.5%;80;95;0;100"]
    params = fake.instances[0].params
    # The module's checks, with the settings' values and the critical limits.
    assert params["broker_url"] == BROKER_URL and params["lrs_password"] == LRS_SECRET
    assert params["lrs_url"] == LRS_URL and params["lrs_login"] == "pod-xapi"
    assert params["nodes"] == ["xapi@encoding1", "bulk@other"]
    assert (params["max_backlog"], params["max_dead_letters"], params["min_consumers"]) == (1000, -1, 1)
    assert params["probe"] is False and params["consumer_retries"] == 0
    assert (params["broker_memory_warning"], params["broker_memory_critical"]) == (80.0, 95.0)
    assert fake.instances[0].check_mode is False
    assert BROKER_SECRET in fake.instances[0].secrets and LRS_SECRET in fake.instances[0].secrets


def test_the_lrs_ca_file_goes_to_the_checks(capfd, fake, config, settings, tmp_path):
    ca_file = tmp_path / "university-ca.pem"
    ca_file.write_text("PEM")
    install_config(config, settings, lrs_ca_file=ca_file)
    state, _lines = command(capfd)
    assert state == 0
    assert fake.instances[0].params["lrs_ca_file"] == str(ca_file) and fake.instances[0].params["validate_certs"] is True
    install_config(config, settings, validate_certs=False)
    command(capfd)
    # Not given: the checks' default, the system's CA store.
    assert fake.instances[1].params["lrs_ca_file"] is None and fake.instances[1].params["validate_certs"] is False


@pytest.mark.parametrize("option", [
    ["--settings", "/tmp/x.py"], ["--settings=/tmp/x.py"], ["--lrs-ca-file", "/tmp/ca.pem"], ["--no-validate-certs"],
    ["--validate-certs"], ["--sett", "/tmp/x.py"],
])
def test_the_caller_names_no_file_and_turns_no_verification_off(capfd, fake, option):
    """What it reads as the worker's user, and how it trusts the LRS, are the installed configuration's."""
    state, lines = command(capfd, *option)
    assert state == 3 and len(lines) == 1 and lines[0].startswith("XAPI UNKNOWN - ")
    assert "unrecognized arguments" in lines[0]
    assert fake.instances == []


def test_the_settings_are_read_not_run(capfd, fake, config, tmp_path):
    marker = tmp_path / "ran"
    settings = tmp_path / "planted.py"
    settings.write_text("import os\nos.system('touch %s')\nopen(%r, 'w').close()\n"
                        "XAPI_CELERY_BROKER_URL = %r\nXAPI_LRS_URL = %r\nXAPI_LRS_LOGIN = 'pod-xapi'\nXAPI_LRS_PWD = %r\n"
                        % (marker, str(marker), BROKER_URL, LRS_URL, LRS_SECRET))
    install_config(config, settings)
    state, _lines = command(capfd)
    assert state == 0 and not marker.exists()
    assert fake.instances[0].params["lrs_password"] == LRS_SECRET


@pytest.mark.parametrize("content", ["{}", "[]", "not json", '{"settings": "relative.py", "validate_certs": true}',
                                     '{"settings": "/s.py", "validate_certs": "no"}'])
def test_a_bad_configuration_is_unknown(capfd, fake, config, content):
    config.write_text(content)
    state, lines = command(capfd)
    assert state == 3 and len(lines) == 1 and "configuration %s" % config in lines[0]
    assert fake.instances == []


def test_a_missing_configuration_is_unknown(capfd, fake, config):
    config.unlink()
    state, lines = command(capfd)
    assert state == 3 and lines[0].startswith("XAPI UNKNOWN - cannot read the check's configuration %s: " % config)


def test_a_missing_lrs_ca_file_is_unknown(capfd, monkeypatch, config, settings, tmp_path):
    monkeypatch.setattr(checks_io, "missing_libraries", lambda: [])
    monkeypatch.setattr(check_xapi, "load_library", lambda: (xc, checks_io))
    install_config(config, settings, lrs_ca_file=tmp_path / "absent.pem")
    state, lines = command(capfd)
    assert state == 3
    assert lines == ["XAPI UNKNOWN - lrs_ca_file %s does not exist: the LRS's certificate cannot be verified against it"
                     % (tmp_path / "absent.pem")]


def test_the_last_option_wins_over_the_wrappers(capfd, fake, settings):
    fake.behaviour = {"result": {"backlog": 5}}
    state, lines = command(capfd, "--warning-backlog", "100", "--critical-backlog",
                           "1000", "--warning-backlog", "3", "--min-consumers", "0", "--nodes", "")
    assert state == 1
    assert lines[0].startswith("XAPI WARNING - backlog 5 exceeds 3: look at ")
    assert "backlog=5;3;1000;0" in lines[0] and "consumers=1;;;0" in lines[0]
    assert fake.instances[0].params["nodes"] == [] and fake.instances[0].params["min_consumers"] == 0


def test_a_failed_link_is_critical(capfd, fake, settings):
    fake.behaviour = {"result": {"consumer_count": 0}, "failed": {"consumers": ("no worker consumes queue xapi", None)}}
    state, lines = command(capfd)
    assert state == 2
    assert lines[0].startswith("XAPI CRITICAL - no worker consumes queue xapi (0 consumer(s)")


def test_verbose_names_each_link_and_masks_details(capfd, fake, settings):
    fake.behaviour = {"failed": {"broker": ("broker refused the password",
                                            "AuthenticationError: %s refused" % BROKER_URL)}}
    state, lines = command(capfd, "-v")
    assert state == 2
    assert len(lines) == 1 + len(xc.LINKS) + 1
    assert lines[1].split() == ["broker", "failed", "broker", "refused", "the", "password"]
    # The whole broker URL is a secret: masked whole, as the module masks it.
    assert lines[-1].strip() == "AuthenticationError: ******** refused"


def test_what_the_libraries_print_or_log_never_reaches_the_output(capfd, fake, settings):
    fake.behaviour = {"noise": "connecting to %s with %s" % (BROKER_URL, LRS_SECRET)}
    state, lines = command(capfd)
    assert state == 0 and len(lines) == 1


@pytest.mark.parametrize("error", [
    RuntimeError("cannot reach %s" % BROKER_URL),
    ValueError("bad login pod-xapi:%s" % LRS_SECRET),
    KeyboardInterrupt(),
])
def test_an_unforeseen_error_is_unknown_and_masked(capfd, fake, settings, error):
    fake.behaviour = {"raise": error}
    state, lines = command(capfd)
    assert state == 3 and len(lines) == 1
    assert lines[0].startswith("XAPI UNKNOWN - the check failed: %s" % type(error).__name__)


def test_a_setting_that_is_not_a_literal_is_unknown_and_named(capfd, fake, tmp_path):
    settings = tmp_path / "settings_local.py"
    settings.write_text("import os\nXAPI_CELERY_BROKER_URL = %r\nXAPI_LRS_URL = %r\nXAPI_LRS_LOGIN = 'pod-xapi'\n"
                        "XAPI_LRS_PWD = os.environ['LRS_PASSWORD'] + %r\n" % (BROKER_URL, LRS_URL, LRS_SECRET))
    state, lines = command(capfd)
    assert state == 3
    assert lines == ["XAPI UNKNOWN - broker_url, lrs_url, lrs_login, lrs_password not given, and XAPI_LRS_PWD in %s "
                     "is not assigned a literal value (line 5): the checks read Pod's settings without running them; "
                     "set it there as a literal (a string)" % settings]
    assert fake.instances == []


def test_missing_settings_are_unknown(capfd, fake, config, tmp_path):
    install_config(config, tmp_path / "nope.py")
    state, lines = command(capfd)
    assert state == 3 and lines[0].startswith("XAPI UNKNOWN - broker_url, lrs_url") and "does not exist" in lines[0]


@pytest.mark.parametrize("argv", [["--warning-backlog", "many"], ["--bogus"]])
def test_bad_options_are_unknown_not_critical(capfd, fake, argv):
    state, lines = command(capfd, *argv)
    assert state == 3 and len(lines) == 1 and lines[0].startswith("XAPI UNKNOWN - ")
    assert fake.instances == []


def test_missing_libraries_are_unknown(capfd, fake, settings, monkeypatch):
    monkeypatch.setattr(checks_io, "missing_libraries", lambda: [("celery", "Traceback ...")])
    state, lines = command(capfd)
    assert state == 3 and lines[0].startswith("XAPI UNKNOWN - python library celery missing")
    assert fake.instances == []


def test_as_installed_by_the_role(tmp_path, settings):
    """The host's layout (the command next to xapi_check_lib, the module utils' copies), run in isolated
    mode as the wrapper runs it: the package's relative import works, and a missing library (celery
    and requests are not in the test toolchain) is UNKNOWN, not a traceback."""
    lib = tmp_path / "check" / "xapi_check_lib"
    lib.mkdir(parents=True)
    shutil.copy(PATH, tmp_path / "check" / "check_xapi.py")
    (lib / "__init__.py").write_text("")
    for name in ("_xapi_check.py", "_xapi_check_io.py"):
        shutil.copy(ROOT / "plugins" / "module_utils" / name, lib / name)
    install_config(tmp_path / "check" / "check.json", settings)
    done = subprocess.run([sys.executable, "-I", "-B", str(tmp_path / "check" / "check_xapi.py")],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.stderr == ""
    missing = [n for n in ("redis", "requests", "celery") if importlib.util.find_spec(n) is None]
    assert missing, "every library is installed here: this test needs one to be missing"
    assert done.returncode == 3, done.stdout
    assert done.stdout == ("XAPI UNKNOWN - python library %s missing: run it with the worker's virtualenv python "
                           "(through the wrapper)\n" % ", ".join(missing))
    assert not list(tmp_path.rglob("__pycache__"))


def test_own_nodes():
    assert check_xapi.own_nodes("xapi, bulk ,x@h,", hostname="enc") == ["xapi@enc", "bulk@enc", "x@h"]
    assert check_xapi.own_nodes("", hostname="enc") == []


def test_the_broker_memory_thresholds_are_options(capfd, fake, settings):
    state, lines = command(capfd, "--warning-broker-memory", "10", "--critical-broker-memory", "50")
    assert (fake.instances[0].params["broker_memory_warning"], fake.instances[0].params["broker_memory_critical"]) == (
        10.0, 50.0)
    assert lines[0].endswith("broker_memory=12.5%;10;50;0;100")
