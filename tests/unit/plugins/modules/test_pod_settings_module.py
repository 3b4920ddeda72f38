# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The module esup_pod.xapi.pod_settings end to end on a temporary file: results, check mode, secrets."""

from __future__ import annotations

import json
import os
import stat

import pytest


from ansible_collections.esup_pod.xapi.plugins.modules import pod_settings

from ansible_collections.esup_pod.xapi.tests.unit.compat import run_module_output


SECRET = "planted-unit-secret-91d2"
SITE = "SECRET_KEY = 'k'\nXAPI_LRS_PWD = 'site-old-pwd-42'\n"


def run(capsys, **args):
    return run_module_output(pod_settings.main, capsys, args)


@pytest.fixture
def settings_file(tmp_path):
    path = tmp_path / "settings_local.py"
    path.write_text(SITE)
    return path


def common(path, **extra):
    args = dict(
        path=str(path),
        settings={"USE_XAPI": True, "XAPI_LRS_URL": "http://lrs/xAPI/statements/"},
        secrets={"XAPI_LRS_PWD": SECRET},
        _ansible_diff=True,
    )
    args.update(extra)
    return args


def test_changed_then_ok_and_secret_never_printed(capsys, settings_file):
    result, out = run(capsys, **common(settings_file))
    assert result["changed"] is True
    assert result["names"] == ["USE_XAPI", "XAPI_LRS_PWD", "XAPI_LRS_URL"]
    assert result["shadowed"] == [{"name": "XAPI_LRS_PWD", "line": 2}]
    assert "managed block at the end of the file wins" in json.dumps(result["warnings"])
    assert SECRET not in out and "site-old-pwd-42" not in out
    assert "XAPI_LRS_PWD = '********'" in result["diff"]["after"]
    content = settings_file.read_text()
    assert content.startswith(SITE)
    assert "XAPI_LRS_PWD = %r" % SECRET in content

    result, out = run(capsys, **common(settings_file))
    assert result["changed"] is False
    assert SECRET not in out


def test_check_mode_changes_nothing(capsys, settings_file):
    result, out = run(capsys, _ansible_check_mode=True, **common(settings_file))
    assert result["changed"] is True
    assert settings_file.read_text() == SITE
    assert SECRET not in out


def test_missing_file_fails_unless_create(capsys, tmp_path):
    missing = tmp_path / "settings_local.py"
    result, _out = run(capsys, **common(missing))
    assert result["failed"] is True
    assert "does not exist: is this a Pod checkout?" in result["msg"]
    assert not missing.exists()

    result, _out = run(capsys, _ansible_check_mode=True, **common(missing, create=True))
    assert result["changed"] is True
    assert not missing.exists()

    result, out = run(capsys, **common(missing, create=True, mode="0640"))
    assert result["changed"] is True
    assert stat.S_IMODE(os.stat(missing).st_mode) == 0o640
    assert SECRET not in out
    result, _out = run(capsys, **common(missing, create=True, mode="0640"))
    assert result["changed"] is False


def test_mode_change_alone_is_a_change(capsys, settings_file):
    run(capsys, **common(settings_file))
    result, _out = run(capsys, **common(settings_file, mode="0600"))
    assert result["changed"] is True
    assert stat.S_IMODE(os.stat(settings_file).st_mode) == 0o600


def test_invalid_python_fails_without_change(capsys, settings_file):
    settings_file.write_text("def broken(:\n")
    result, _out = run(capsys, **common(settings_file))
    assert result["failed"] is True
    assert "is not valid Python" in result["msg"]
    assert settings_file.read_text() == "def broken(:\n"


def test_the_diff_and_result_hold_the_managed_block_only(capsys, settings_file):
    result, out = run(capsys, **common(settings_file, block="frontal"))
    assert result["changed"] is True
    assert "SECRET_KEY" not in out
    assert result["diff"]["before"] == ""
    assert result["diff"]["after"].startswith("# BEGIN esup_pod.xapi managed settings (frontal)")


def test_an_existing_file_keeps_its_mode_and_a_symbolic_mode_only_removes_bits(capsys, settings_file):
    os.chmod(str(settings_file), 0o664)
    result, _out = run(capsys, **common(settings_file, mode="o-rwx"))
    assert result["changed"] is True
    assert stat.S_IMODE(os.stat(str(settings_file)).st_mode) == 0o660
    result, _out = run(capsys, **common(settings_file, mode="o-rwx"))
    assert result["changed"] is False


# What the module cannot give back: the line break it added at the end, and a blank line that ended the file.
@pytest.mark.parametrize("site, back", [(SITE, SITE), ("", ""), (SITE.rstrip("\n"), SITE), (SITE + "\n", SITE)])
def test_state_absent_gives_the_file_its_bytes_back_hides_the_values_and_is_idempotent(capsys, tmp_path, site, back):
    path = tmp_path / "settings_local.py"
    path.write_text(site)
    run(capsys, **common(path, block="frontal"))
    run(capsys, **common(path, block="worker", secrets={"XAPI_CELERY_BROKER_URL": SECRET}))
    assert path.read_text() != site
    absent = dict(state="absent", _ansible_diff=True)
    result, out = run(capsys, path=str(path), block="frontal", _ansible_check_mode=True, **absent)
    assert result["changed"] is True and "BEGIN esup_pod.xapi managed settings (frontal)" in path.read_text()
    result, out = run(capsys, path=str(path), block="frontal", **absent)
    assert result["changed"] is True and result["diff"]["after"] == ""
    assert result["names"] == ["USE_XAPI", "XAPI_LRS_PWD", "XAPI_LRS_URL"]
    assert SECRET not in out and "http://lrs" not in out
    assert "(frontal)" not in path.read_text() and "(worker)" in path.read_text()
    result, out = run(capsys, path=str(path), block="worker", **absent)
    assert result["changed"] is True and SECRET not in out
    assert path.read_text() == back
    result, _out = run(capsys, path=str(path), block="worker", **absent)
    assert result["changed"] is False


def test_state_absent_leaves_a_missing_file_missing(capsys, tmp_path):
    result, _out = run(capsys, **common(tmp_path / "settings_local.py", state="absent", create=True))
    assert result["changed"] is False and not (tmp_path / "settings_local.py").exists()


def test_a_link_stays_a_link_and_its_target_gets_the_block(capsys, tmp_path):
    # Sites keep settings_local.py elsewhere (a configuration directory) and link it into the checkout.
    target = tmp_path / "etc" / "settings_local.py"
    target.parent.mkdir()
    target.write_text(SITE)
    os.chmod(str(target), 0o640)
    link = tmp_path / "checkout" / "settings_local.py"
    link.parent.mkdir()
    link.symlink_to(target)

    result, _out = run(capsys, mode="o-rwx", **common(link))
    assert result["changed"] is True
    assert link.is_symlink() and os.readlink(str(link)) == str(target)
    assert "XAPI_LRS_URL = 'http://lrs/xAPI/statements/'" in target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o640

    result, _out = run(capsys, mode="o-rwx", **common(link))
    assert result["changed"] is False

    result, _out = run(capsys, state="absent", **common(link))
    assert result["changed"] is True
    assert link.is_symlink() and target.read_text() == SITE


def test_a_dangling_link_names_its_target(capsys, tmp_path):
    link = tmp_path / "settings_local.py"
    link.symlink_to(tmp_path / "gone" / "settings_local.py")
    result, _out = run(capsys, **common(link))
    assert result["failed"] is True
    assert result["msg"] == "%s is a link to %s, which does not exist" % (link, tmp_path / "gone" / "settings_local.py")
