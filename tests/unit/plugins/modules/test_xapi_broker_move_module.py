# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The module esup_pod.xapi.xapi_broker_move end to end, against redis-server processes of the test's own:
the old URL read from a settings file, check mode, one server reached by two names, passwords never shown."""

from __future__ import annotations

import redis

from ansible_collections.esup_pod.xapi.plugins.modules import xapi_broker_move

from ansible_collections.esup_pod.xapi.tests.unit.compat import run_module_output
# start_redis is a fixture: pytest hands it to the tests by name.
from ansible_collections.esup_pod.xapi.tests.unit.plugins.module_utils.test_xapi_broker_move import (  # noqa: F401 pylint: disable=unused-import
    fill,
    start_redis,
)

OLD_SECRET, NEW_SECRET = "planted-old-secret-5e1a", "planted-new-secret-c07b"


def run(capsys, check=False, **args):
    args.setdefault("_ansible_check_mode", check)
    return run_module_output(xapi_broker_move.main, capsys, args)


def settings(tmp_path, url):
    path = tmp_path / "settings_local.py"
    path.write_text("SECRET_KEY = 'k'\nXAPI_CELERY_BROKER_URL = %r\n\n"
                    "# BEGIN esup_pod.xapi managed settings (frontal) -- do not edit\n"
                    "XAPI_CELERY_BROKER_URL = 'redis://:x@new:6380/6'\n"
                    "# END esup_pod.xapi managed settings (frontal)\n" % url)
    return str(path)


def test_check_mode_counts_then_the_run_moves_and_never_shows_a_password(capsys, tmp_path, start_redis):
    old_port, new_port = start_redis("--requirepass", OLD_SECRET), start_redis("--requirepass", NEW_SECRET)
    old_url = "redis://:%s@127.0.0.1:%d/6" % (OLD_SECRET, old_port)
    new_url = "redis://:%s@127.0.0.1:%d/6" % (NEW_SECRET, new_port)
    fill(old_url, 12, 3)
    path = settings(tmp_path, old_url)

    result, out = run(capsys, check=True, settings_file=path, new_url=new_url)
    assert (result["changed"], result["queued"], result["unacked"], result["moved"]) == (True, 9, 3, 0)
    assert result["msg"] == "would move 12 statements (9 queued, 3 unacknowledged) from redis://:********@127.0.0.1:%d/6 " \
                            "to the new broker" % old_port
    assert redis.Redis(port=old_port, db=6, password=OLD_SECRET).llen("xapi") == 9

    result, out = run(capsys, settings_file=path, new_url=new_url)
    assert (result["changed"], result["moved"]) == (True, 12)
    assert redis.Redis(port=new_port, db=6, password=NEW_SECRET).llen("xapi") == 12
    assert OLD_SECRET not in out and NEW_SECRET not in out

    result, out = run(capsys, settings_file=path, new_url=new_url)
    assert (result["changed"], result["moved"]) == (False, 0)


def test_one_server_under_two_names_or_no_old_url_moves_nothing(capsys, tmp_path, start_redis):
    port = start_redis()
    fill("redis://127.0.0.1:%d/6" % port, 4, 0)
    result, _out = run(capsys, old_url="redis://127.0.0.1:%d/6" % port, new_url="redis://localhost:%d/6" % port)
    assert (result["changed"], result["moved"], result["msg"]) == (False, 0, "the old broker is the new one: nothing to move")
    assert redis.Redis(port=port, db=6).llen("xapi") == 4
    result, _out = run(capsys, old_url="", new_url="redis://localhost:%d/6" % port)
    assert (result["changed"], result["msg"]) == (False, "no old broker: nothing to move")
    result, _out = run(capsys, settings_file=str(tmp_path / "absent.py"), new_url="redis://localhost:%d/6" % port)
    assert result["msg"] == "no old broker: nothing to move"


def test_an_old_url_that_is_not_a_literal_or_unreachable_fails_naming_it(capsys, tmp_path, start_redis):
    path = tmp_path / "settings_local.py"
    path.write_text("import os\nXAPI_CELERY_BROKER_URL = os.environ['BROKER']\n")
    result, _out = run(capsys, settings_file=str(path), new_url="redis://localhost:1/6")
    assert result["failed"] and "is not set by a plain assignment of a literal (line 2)" in result["msg"]
    result, out = run(capsys, old_url="redis://:%s@127.0.0.1:1/6" % OLD_SECRET, new_url="redis://localhost:1/6")
    assert result["failed"] and "cannot move the statements of the old broker redis://:********@127.0.0.1:1/6" in result["msg"]
    assert OLD_SECRET not in out
