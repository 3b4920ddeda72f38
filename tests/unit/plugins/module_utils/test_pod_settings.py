# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure logic of esup_pod.xapi.pod_settings: render, replace, move, shadow, mask, compile."""

from __future__ import annotations

import ast

import pytest

from ansible_collections.esup_pod.xapi.plugins.module_utils._pod_settings import (
    BEGIN_MARKER,
    END_MARKER,
    MASK,
    PodSettingsError,
    find_block,
    find_shadowed,
    mask_text,
    plan,
    render_block,
    update_text,
)

SITE = (
    "# -*- coding: utf-8 -*-\n"
    "# The site's settings: hand-written, odd spacing kept.\n"
    "SECRET_KEY   =  'site-key'   # do not touch\n"
    "DATABASES = {\n"
    "    'default': {'ENGINE': 'django.db.backends.mysql', 'NAME': 'pod'},\n"
    "}\n"
)

PASSWORD = "p@ss/w'rd\"\\x"
BROKER = "redis://:p%40ss%2Fw@frontal:6379/6"


def namespace(text):
    scope = {}
    exec(compile(text, "<test>", "exec"), scope)  # pylint: disable=exec-used
    return scope


def test_render_block_is_sorted_python_literals():
    block = render_block({"B": "x'y", "A": True, "C": None, "D": 6})
    assert block == (
        BEGIN_MARKER + "\n"
        "A = True\n"
        "B = \"x'y\"\n"
        "C = None\n"
        "D = 6\n"
        + END_MARKER + "\n"
    )
    assert namespace(block) == {"A": True, "B": "x'y", "C": None, "D": 6, "__builtins__": namespace("")["__builtins__"]}


def test_render_block_masks_secrets_only_when_asked():
    values = {"PWD": PASSWORD, "URL": "http://lrs"}
    assert PASSWORD not in render_block(values, {"PWD"}, mask=True)
    assert "PWD = %r" % MASK in render_block(values, {"PWD"}, mask=True)
    assert namespace(render_block(values, {"PWD"}))["PWD"] == PASSWORD


def test_append_keeps_site_bytes_and_values_roundtrip():
    values = {"USE_XAPI": True, "XAPI_LRS_PWD": PASSWORD, "XAPI_CELERY_BROKER_URL": BROKER}
    new = update_text(SITE, values)
    assert new.startswith(SITE)
    assert new.rstrip("\n").endswith(END_MARKER)
    scope = namespace(new)
    assert scope["XAPI_LRS_PWD"] == PASSWORD
    assert scope["XAPI_CELERY_BROKER_URL"] == BROKER
    assert scope["USE_XAPI"] is True
    assert scope["SECRET_KEY"] == "site-key"


def test_append_to_file_without_final_newline():
    new = update_text("A = 1", {"B": 2})
    assert new.startswith("A = 1\n\n" + BEGIN_MARKER)
    assert namespace(new)["B"] == 2


def test_create_empty_file():
    assert update_text("", {"X": "y"}) == render_block({"X": "y"})


def test_update_is_idempotent_and_replaces_in_place():
    first = update_text(SITE, {"A": 1, "B": "old"})
    assert update_text(first, {"A": 1, "B": "old"}) == first
    second = update_text(first, {"A": 1, "B": "new"})
    assert second.startswith(SITE)
    assert second.count(BEGIN_MARKER) == 1
    assert "B = 'new'" in second and "'old'" not in second
    assert update_text(second, {"A": 1, "B": "new"}) == second


def test_removed_name_leaves_the_block():
    first = update_text(SITE, {"A": 1, "B": 2})
    second = update_text(first, {"A": 1})
    assert "B = 2" not in second
    assert second.startswith(SITE)


def test_trailing_whitespace_after_block_is_kept():
    first = update_text(SITE, {"A": 1}) + "\n\n"
    second = update_text(first, {"A": 2})
    assert second.endswith(END_MARKER + "\n\n\n")
    assert second.startswith(SITE)


def test_block_is_moved_to_the_end_and_site_content_kept():
    first = update_text(SITE, {"A": 1})
    tail = "# added by the site after the block\nEXTRA = 'kept'\nA = 99\n"
    edited = first + tail
    moved = update_text(edited, {"A": 1})
    assert moved.startswith(SITE)
    assert tail in moved
    assert moved.index(tail) < moved.index(BEGIN_MARKER)
    assert moved.rstrip("\n").endswith(END_MARKER)
    assert moved.count(BEGIN_MARKER) == 1
    assert namespace(moved)["A"] == 1  # the block wins
    assert update_text(moved, {"A": 1}) == moved


def test_crlf_file_gets_crlf_block():
    site = "A = 1\r\nB = 2\r\n"
    new = update_text(site, {"C": 3})
    assert new.startswith(site)
    assert "\n" not in new.replace("\r\n", "")
    assert update_text(new, {"C": 3}) == new


def test_bom_is_kept():
    site = "\ufeffA = 1\n"
    new = update_text(site, {"B": 2})
    assert new.startswith(site)
    assert plan(new, {"B": 2}, {})["changed"] is False


@pytest.mark.parametrize(
    "text",
    [
        BEGIN_MARKER + "\nA = 1\n",
        "A = 1\n" + END_MARKER + "\n",
        END_MARKER + "\n" + BEGIN_MARKER + "\n",
        render_block({"A": 1}) + render_block({"A": 1}),
    ],
)
def test_damaged_markers_are_an_error(text):
    with pytest.raises(PodSettingsError, match="markers are damaged"):
        find_block(text)
    with pytest.raises(PodSettingsError):
        plan(text, {"A": 1}, {})


def test_shadow_detection():
    site = (
        "import os\n"
        "USE_XAPI = False\n"  # 2: plain
        "if os.environ.get('X'):\n"
        "    XAPI_LRS_URL = 'http://other'\n"  # 4: inside if
        "else:\n"
        "    pass\n"
        "XAPI_LRS_LOGIN: str = 'me'\n"  # 7: annotated
        "XAPI_LRS_PWD = ''\n"  # 8
        "XAPI_LRS_PWD += 'x'\n"  # 9: augmented
        "try:\n"
        "    from local_extra import XAPI_ANONYMIZE_ACTOR\n"  # 11: import
        "except ImportError:\n"
        "    NOT_MANAGED = 1\n"
        "def helper():\n"
        "    USE_XAPI_VIDEO = True\n"  # function scope: not a module binding
        "    return USE_XAPI_VIDEO\n"
        "OTHER, XAPI_CELERY_BROKER_URL = 1, 'redis://'\n"  # 17: tuple target
    )
    names = ["USE_XAPI", "USE_XAPI_VIDEO", "XAPI_LRS_URL", "XAPI_LRS_LOGIN", "XAPI_LRS_PWD",
             "XAPI_ANONYMIZE_ACTOR", "XAPI_CELERY_BROKER_URL"]
    new = update_text(site, {name: "v" for name in names})
    assert find_shadowed(new, names) == [
        {"name": "USE_XAPI", "line": 2},
        {"name": "XAPI_LRS_URL", "line": 4},
        {"name": "XAPI_LRS_LOGIN", "line": 7},
        {"name": "XAPI_LRS_PWD", "line": 8},
        {"name": "XAPI_LRS_PWD", "line": 9},
        {"name": "XAPI_ANONYMIZE_ACTOR", "line": 11},
        {"name": "XAPI_CELERY_BROKER_URL", "line": 17},
    ]
    # the block's own lines are never reported
    assert find_shadowed(render_block({"A": 1}), ["A"]) == []


def test_shadowed_lines_refer_to_the_result_after_a_move():
    first = update_text("X = 0\n", {"A": 1})
    edited = first + "A = 5\n"
    outcome = plan(edited, {"A": 1}, {})
    assert outcome["changed"] is True
    line = outcome["new_text"].splitlines()[outcome["shadowed"][0]["line"] - 1]
    assert line == "A = 5"


def test_mask_text_hides_secret_assignments_everywhere():
    site = "XAPI_LRS_PWD = 'site-old-secret'\nOTHER = 'visible'\n"
    new = update_text(site, {"XAPI_LRS_PWD": PASSWORD, "URL": "http://lrs"})
    masked = mask_text(new, {"XAPI_LRS_PWD"}, [PASSWORD])
    assert "site-old-secret" not in masked
    assert PASSWORD not in masked
    assert repr(PASSWORD)[1:-1] not in masked
    assert "OTHER = 'visible'" in masked
    assert "URL = 'http://lrs'" in masked
    assert masked.count("XAPI_LRS_PWD = '********'") == 2


def test_mask_text_hides_raw_secret_in_comments_and_other_names():
    text = "# the password is hunter2-secret\nCOPY = 'x hunter2-secret y'\n"
    masked = mask_text(text, {"PWD"}, ["hunter2-secret"])
    assert "hunter2-secret" not in masked
    assert mask_text("A = 1\n", set(), [""]) == "A = 1\n"  # an empty secret masks nothing


def test_plan_masks_before_and_after_and_keeps_real_text():
    old = update_text(SITE, {"XAPI_LRS_PWD": "previous-secret-1"})
    outcome = plan(old, {"USE_XAPI": True}, {"XAPI_LRS_PWD": PASSWORD, "XAPI_CELERY_BROKER_URL": BROKER})
    assert outcome["changed"] is True
    assert namespace(outcome["new_text"])["XAPI_LRS_PWD"] == PASSWORD
    for key in ("before", "after"):
        assert "previous-secret-1" not in outcome[key]
        assert PASSWORD not in outcome[key]
        assert BROKER not in outcome[key]
    assert outcome["names"] == ["USE_XAPI", "XAPI_CELERY_BROKER_URL", "XAPI_LRS_PWD"]
    # The diff holds the managed block only: never the site's own settings.
    assert outcome["before"].startswith(BEGIN_MARKER) and outcome["after"].startswith(BEGIN_MARKER)
    for line in SITE.strip().splitlines():
        assert line not in outcome["before"] and line not in outcome["after"]
    again = plan(outcome["new_text"], {"USE_XAPI": True}, {"XAPI_LRS_PWD": PASSWORD, "XAPI_CELERY_BROKER_URL": BROKER})
    assert again["changed"] is False
    assert again["new_text"] == outcome["new_text"]


def test_invalid_site_file_is_an_error():
    with pytest.raises(PodSettingsError, match="is not valid Python"):
        plan("def broken(:\n", {"A": 1}, {}, filename="settings_local.py")


def test_result_that_does_not_compile_is_an_error(monkeypatch):
    from ansible_collections.esup_pod.xapi.plugins.module_utils import _pod_settings as pod_settings

    # A site file that ends inside an open construct the parser accepts only without the block is
    # hard to build; force a broken render instead and check that plan() refuses it.
    monkeypatch.setattr(pod_settings, "update_text", lambda text, values, secret_names, block_id="": text + "A = (\n")
    with pytest.raises(PodSettingsError, match="would not be valid Python, nothing was changed"):
        pod_settings.plan("X = 1\n", {"A": 1}, {}, filename="settings_local.py")


@pytest.mark.parametrize(
    ("settings", "secrets", "message"),
    [
        ({"A": 1}, {"A": "x"}, "both settings and secrets"),
        ({"not valid": 1}, {}, "not a valid Python name"),
        ({"class": 1}, {}, "not a valid Python name"),
        ({"A": object()}, {}, "unsupported value type"),
        ({}, {}, "nothing to manage"),
    ],
)
def test_bad_input(settings, secrets, message):
    with pytest.raises(PodSettingsError, match=message):
        plan("", settings, secrets)


def test_lists_and_dicts_roundtrip():
    values = {"L": [1, "a", None], "D": {"k": [True, 1.5]}}
    new = update_text("", values)
    for name, value in values.items():
        assert ast.literal_eval(new.split(name + " = ", 1)[1].splitlines()[0]) == value


def test_names_leaving_the_block_do_not_leak_old_values_in_the_diff():
    old = update_text(SITE, {"USE_XAPI": True, "OLD_SECRET": "old-secret-value-1"}, {"OLD_SECRET"})
    outcome = plan(old, {"USE_XAPI": True}, {"XAPI_LRS_PWD": PASSWORD})
    assert "old-secret-value-1" in old
    assert "old-secret-value-1" not in outcome["before"]
    assert "OLD_SECRET = '********'" in outcome["before"]
    assert "USE_XAPI = True" in outcome["before"]  # current non-secret settings stay readable
    assert "OLD_SECRET" not in outcome["after"]


SITE_SECRETS = """SECRET_KEY = "site-secret-key-1"
DATABASES = {"default": {"PASSWORD": "site-db-password-2"}}
POD_API_TOKEN = "site-api-token-3"
"""


def test_the_diff_never_shows_the_sites_own_settings():
    for text in (SITE_SECRETS, update_text(SITE_SECRETS, {"USE_XAPI": False})):
        outcome = plan(text, {"USE_XAPI": True}, {"XAPI_CELERY_BROKER_URL": BROKER})
        for secret in ("site-secret-key-1", "site-db-password-2", "site-api-token-3", "SECRET_KEY"):
            assert secret not in outcome["before"] and secret not in outcome["after"]
        assert "USE_XAPI = True" in outcome["after"]
    assert plan(SITE_SECRETS, {"A": 1}, {})["before"] == ""


def test_named_blocks_of_two_writers_do_not_undo_each_other():
    frontal = {"USE_XAPI": True, "XAPI_LRS_URL": "https://lrs/"}
    worker = {"XAPI_LRS_URL": "https://lrs/", "XAPI_LRS_LOGIN": "pod"}
    text = SITE
    for _round in range(2):
        text = plan(text, frontal, {}, block_id="frontal")["new_text"]
        text = plan(text, worker, {"XAPI_LRS_PWD": PASSWORD}, block_id="worker")["new_text"]
    # Converged: each writer finds nothing to change, and both blocks follow the site's text.
    assert plan(text, frontal, {}, block_id="frontal")["changed"] is False
    assert plan(text, worker, {"XAPI_LRS_PWD": PASSWORD}, block_id="worker")["changed"] is False
    assert text.startswith(SITE)
    assert text.count("# BEGIN esup_pod.xapi managed settings (frontal)") == 1
    assert text.count("# BEGIN esup_pod.xapi managed settings (worker)") == 1
    values = namespace(text)
    assert values["USE_XAPI"] is True and values["XAPI_LRS_PWD"] == PASSWORD
    # The other writer's block is not a site assignment: no shadow warning for the shared names.
    assert plan(text, frontal, {}, block_id="frontal")["shadowed"] == []
    # Each diff shows its own block only.
    outcome = plan(text, dict(frontal, USE_XAPI=False), {}, block_id="frontal")
    assert "XAPI_LRS_LOGIN" not in outcome["before"] + outcome["after"]


def test_a_named_block_still_moves_after_site_content():
    text = plan(SITE, {"A": 1}, {}, block_id="frontal")["new_text"] + "TAIL = 1\n"
    moved = plan(text, {"A": 1}, {}, block_id="frontal")
    assert moved["changed"] is True
    assert moved["new_text"].index("TAIL = 1") < moved["new_text"].index("(frontal)")


def test_a_bad_block_id_is_an_error():
    with pytest.raises(PodSettingsError, match="not a valid block id"):
        plan(SITE, {"A": 1}, {}, block_id="bad id")
