# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How the checks (the module esup_pod.xapi.xapi_check and the worker's monitoring command) read Pod's
settings_local.py: parsed, never run. The monitoring command runs as the worker's user for a
monitoring agent; running the file would run whatever it holds as that user (issue 20)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.esup_pod.xapi.plugins.module_utils import _pod_settings as ps
from ansible_collections.esup_pod.xapi.plugins.module_utils import _xapi_check_io as checks_io

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
NAMES = ["XAPI_CELERY_BROKER_URL", "XAPI_LRS_URL", "XAPI_LRS_LOGIN", "XAPI_LRS_PWD"]
SECRET = "planted-settings-secret-7f3e"


def read(tmp_path, text, names=None):
    path = tmp_path / "settings_local.py"
    path.write_text(text, encoding="utf-8")
    return checks_io.read_pod_settings(str(path), NAMES if names is None else names)


def refused(tmp_path, text, names=None):
    with pytest.raises(checks_io.SettingsError) as caught:
        read(tmp_path, text, names)
    message = str(caught.value)
    assert SECRET not in message
    return message


def test_side_effects_are_not_run(tmp_path):
    marker = tmp_path / "ran"
    text = ("import os\nos.system('touch %s')\nopen(%r, 'w').close()\n"
            "exec(\"open(%r, 'w').close()\")\n__import__('sys').exit(3)\n"
            "XAPI_LRS_URL = 'https://lrs.example.org/xAPI/statements/'\n" % (marker, str(marker), str(marker)))
    assert read(tmp_path, text) == {"XAPI_LRS_URL": "https://lrs.example.org/xAPI/statements/"}
    assert not marker.exists()
    assert not list(tmp_path.rglob("__pycache__"))


def test_literal_values_are_read(tmp_path):
    text = ("# -*- coding: utf-8 -*-\nXAPI_CELERY_BROKER_URL = 'redis://:%s@frontal:6380/6'\n"
            "XAPI_LRS_URL = 'https://lrs.example.org' + '/xAPI' + \"/statements/\"\n"
            "XAPI_LRS_LOGIN: str = ('pod-'\n    'xapi')\nXAPI_LRS_PWD = XAPI_OTHER = %r\n" % (SECRET, SECRET))
    assert read(tmp_path, text) == {
        "XAPI_CELERY_BROKER_URL": "redis://:%s@frontal:6380/6" % SECRET,
        "XAPI_LRS_URL": "https://lrs.example.org/xAPI/statements/",
        "XAPI_LRS_LOGIN": "pod-xapi",
        "XAPI_LRS_PWD": SECRET,
    }


def test_the_last_assignment_wins(tmp_path):
    text = ("import os\nXAPI_LRS_URL = 'http://old/'\nXAPI_LRS_URL = 'http://new/'\n"
            "XAPI_LRS_PWD = os.environ['PWD']\nif os.environ.get('X'):\n    XAPI_LRS_LOGIN = 'a'\n"
            "XAPI_LRS_PWD = %r\nXAPI_LRS_LOGIN = 'b'\n" % SECRET)
    assert read(tmp_path, text) == {"XAPI_LRS_URL": "http://new/", "XAPI_LRS_PWD": SECRET, "XAPI_LRS_LOGIN": "b"}


def test_a_name_never_assigned_is_left_out(tmp_path):
    assert read(tmp_path, "DEBUG = False\n") == {}


@pytest.mark.parametrize("text, name, why", [
    ("import os\nXAPI_LRS_PWD = os.environ['LRS_PASSWORD']\n", "XAPI_LRS_PWD", "is not assigned a literal value (line 2)"),
    ("XAPI_LRS_PWD = %r\nXAPI_LRS_PWD = open('/etc/pw').read()\n" % SECRET, "XAPI_LRS_PWD",
     "is not assigned a literal value (line 2)"),
    ("BASE = 'https://lrs'\nXAPI_LRS_URL = BASE + '/xAPI/statements/'\n", "XAPI_LRS_URL",
     "is not assigned a literal value (line 2)"),
    ("XAPI_LRS_URL = f'https://{1}'\n", "XAPI_LRS_URL", "is not assigned a literal value (line 1)"),
    ("try:\n    XAPI_LRS_URL = 'https://a/'\nexcept Exception:\n    pass\n", "XAPI_LRS_URL",
     "is not set by a plain assignment (line 1)"),
    ("from pod.secrets import XAPI_LRS_PWD\n", "XAPI_LRS_PWD", "is not set by a plain assignment (line 1)"),
    ("XAPI_LRS_URL = 'https://a/'\nfrom pod.more_settings import *\n", "XAPI_CELERY_BROKER_URL",
     "may be set by a star import (line 2)"),
    ("XAPI_LRS_URL, XAPI_LRS_LOGIN = 'https://a/', 'pod'\n", "XAPI_LRS_LOGIN", "is not set by a plain assignment (line 1)"),
    ("XAPI_LRS_PWD = 'x'\nXAPI_LRS_PWD += %r\n" % SECRET, "XAPI_LRS_PWD", "is not set by a plain assignment (line 2)"),
])
def test_a_name_not_assigned_a_literal_is_named_with_the_file(tmp_path, text, name, why):
    message = refused(tmp_path, text)
    path = tmp_path / "settings_local.py"
    assert message == ("%s in %s %s: the checks read Pod's settings without running them; set it there as a "
                       "literal (a string)" % (name, path, why))


def test_a_later_literal_heals_an_earlier_binding(tmp_path):
    text = ("from pod.more_settings import *\nimport os\nXAPI_LRS_URL = os.environ['URL']\n"
            "if True:\n    XAPI_LRS_LOGIN = 'x'\nXAPI_LRS_URL = 'https://a/'\nXAPI_LRS_LOGIN = 'pod'\n")
    assert read(tmp_path, text, ["XAPI_LRS_URL", "XAPI_LRS_LOGIN"]) == {"XAPI_LRS_URL": "https://a/", "XAPI_LRS_LOGIN": "pod"}


def test_only_the_names_asked_for_matter(tmp_path):
    text = "import os\nXAPI_LRS_URL = os.environ['URL']\nXAPI_LRS_LOGIN = 'pod'\n"
    assert read(tmp_path, text, ["XAPI_LRS_LOGIN"]) == {"XAPI_LRS_LOGIN": "pod"}


def test_a_functions_own_names_are_not_the_modules(tmp_path):
    text = "XAPI_LRS_URL = 'https://a/'\ndef f():\n    XAPI_LRS_URL = 1\nclass C:\n    XAPI_LRS_URL = 2\n"
    assert read(tmp_path, text, ["XAPI_LRS_URL"]) == {"XAPI_LRS_URL": "https://a/"}
    assert "XAPI_LRS_URL in " in refused(tmp_path, "def XAPI_LRS_URL():\n    pass\n", ["XAPI_LRS_URL"])


def test_a_file_that_is_not_python_is_named(tmp_path):
    message = refused(tmp_path, "XAPI_LRS_PWD = %r\nXAPI_LRS_URL = ('\n" % SECRET)
    assert message.startswith("%s is not valid Python (line 2): " % (tmp_path / "settings_local.py"))


def test_the_roles_managed_block_on_a_real_site_file(tmp_path):
    """pod_settings' block at the end of a site's settings_local.py (which computes BASE_DIR with os): the
    block's values are read, the site's own code is not run."""
    values = {"XAPI_CELERY_BROKER_URL": "redis://:%s@frontal:6380/6" % SECRET, "XAPI_LRS_URL": "https://lrs/xAPI/statements/",
              "XAPI_LRS_LOGIN": "pod-xapi", "XAPI_LRS_PWD": SECRET, "USE_XAPI": True}
    site = (FIXTURES / "site_settings_local.py").read_text(encoding="utf-8")
    site = "XAPI_LRS_URL = 'http://shadowed/'\n" + site
    text = ps.update_text(site, values, block_id="worker")
    assert read(tmp_path, "\ufeff" + text) == dict((name, values[name]) for name in NAMES)


def test_the_pod_fixtures_own_settings_read_as_empty(tmp_path):
    path = FIXTURES / "pod" / "pod" / "settings.py"
    assert checks_io.read_pod_settings(str(path), NAMES) == dict((name, "") for name in NAMES)


def test_prepare_names_the_setting_and_the_file(tmp_path):
    path = tmp_path / "settings_local.py"
    path.write_text("import os\nXAPI_CELERY_BROKER_URL = os.environ['BROKER']\n")
    params = {"broker_url": None, "lrs_url": "https://lrs/", "lrs_login": "pod", "lrs_password": SECRET,
              "settings_path": str(path)}
    with pytest.raises(checks_io.CheckInputError) as caught:
        checks_io.prepare(params)
    assert str(caught.value).startswith("broker_url not given, and XAPI_CELERY_BROKER_URL in %s is not assigned a "
                                        "literal value (line 2)" % path)
