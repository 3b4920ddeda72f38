# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The site's own lines of a settings file: a literal read without running it, and names removed."""

from __future__ import annotations

import pytest

from ansible_collections.esup_pod.xapi.plugins.module_utils._pod_settings import (
    PodSettingsError,
    plan,
    remove_site_names,
    site_literal,
)

# Shaped like a site that followed upstream's remote-xapi guide, then deployed by the frontal role.
SITE = (
    "# -*- coding: utf-8 -*-\r\n"
    "SECRET_KEY = 'k'\r\n"
    "USE_XAPI = True\r\n"
    "XAPI_LRS_LOGIN = \"lrs-user\"  # the guide's\r\n"
    "XAPI_LRS_PWD = (\r\n"
    "    'lrs-pass'\r\n"
    ")\r\n"
    "XAPI_CELERY_BROKER_URL = 'redis://:old@redis:6379/6'\r\n"
    "if DEBUG := False:\r\n"
    "    XAPI_LRS_LOGIN = 'debug'\r\n"
    "A = 1; XAPI_LRS_PWD = 'shared'\r\n"
    "\r\n"
    "# BEGIN esup_pod.xapi managed settings (frontal) -- do not edit\r\n"
    "XAPI_CELERY_BROKER_URL = 'redis://:new@broker:6380/6'\r\n"
    "# END esup_pod.xapi managed settings (frontal)\r\n"
)


def test_the_sites_own_literal_is_read_outside_the_managed_blocks():
    assert site_literal(SITE, "XAPI_CELERY_BROKER_URL") == (True, "redis://:old@redis:6379/6")
    assert site_literal(SITE, "ES_URL") == (False, None)
    assert site_literal("X = 'a'\nX = 'b'\n", "X") == (True, "b")


@pytest.mark.parametrize("text", [
    "X = os.environ['X']\n",
    "X = 'a'\nfrom elsewhere import X\n",
    "X = 'a'\ntry:\n    X = 'b'\nexcept ImportError:\n    pass\n",
    "X = 'a'\nX += 'b'\n",
])
def test_a_last_binding_that_is_not_a_literal_is_named(text):
    with pytest.raises(PodSettingsError, match=r"X in s.py is not set by a plain assignment of a literal \(line \d+\)"):
        site_literal(text, "X", filename="s.py")


def test_plain_top_level_assignments_go_whole_lines_and_every_other_byte_stays():
    new, removed, left = remove_site_names(SITE, ["XAPI_LRS_LOGIN", "XAPI_LRS_PWD"])
    assert removed == [{"name": "XAPI_LRS_LOGIN", "line": 4}, {"name": "XAPI_LRS_PWD", "line": 5}]
    assert left == [{"name": "XAPI_LRS_LOGIN", "line": 10}, {"name": "XAPI_LRS_PWD", "line": 11}]
    lines = SITE.splitlines(True)
    assert new == "".join(lines[:3] + lines[7:])
    assert remove_site_names(new, ["XAPI_LRS_LOGIN"])[1] == []


def test_the_plan_removes_them_and_its_diff_hides_their_values():
    outcome = plan(SITE, {"USE_XAPI": True}, {"XAPI_CELERY_BROKER_URL": "redis://:new@broker:6380/6"},
                   block_id="frontal", remove=["XAPI_LRS_LOGIN", "XAPI_LRS_PWD"])
    assert outcome["changed"]
    assert "lrs-user" not in outcome["new_text"] and "lrs-pass" not in outcome["new_text"]
    assert "SECRET_KEY = 'k'\r\n" in outcome["new_text"] and "A = 1; XAPI_LRS_PWD = 'shared'\r\n" in outcome["new_text"]
    assert "XAPI_LRS_LOGIN = '********'" in outcome["before"] and "XAPI_LRS_PWD = '********'" in outcome["before"]
    for secret in ("lrs-user", "lrs-pass", "old", "new@"):
        assert secret not in outcome["before"] + outcome["after"]
    again = plan(outcome["new_text"], {"USE_XAPI": True}, {"XAPI_CELERY_BROKER_URL": "redis://:new@broker:6380/6"},
                 block_id="frontal", remove=["XAPI_LRS_LOGIN", "XAPI_LRS_PWD"])
    assert not again["changed"] and again["removed"] == []
    with pytest.raises(PodSettingsError, match="both managed and removed: USE_XAPI"):
        plan(SITE, {"USE_XAPI": True}, {}, remove=["USE_XAPI"])
