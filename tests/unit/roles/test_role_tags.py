# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The roles' tags by phase (docs/admin-guide.md: "Tags"): every task that a role's main entry point runs carries
install, configure, service or always (an untagged task would silently not run under
--tags configure,service), the preflights are always, and git and pip run in the install phase only
(or in the always-tagged preflight, which skips them when install is not selected)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[3] / "roles"
PHASES = {"install", "configure", "service", "always"}
BLOCK_KEYS = ("block", "rescue", "always")


def tags_of(task):
    tags = task.get("tags", [])
    return {tags} if isinstance(tags, str) else set(tags)


def walk(role, filename, inherited=frozenset(), seen=None):
    """(file, task, effective tags) of every task that tasks/FILENAME runs, through blocks, imports and
    includes (an include's tags reach its tasks only through apply)."""
    seen = set() if seen is None else seen
    tasks = yaml.safe_load((ROLES / role / "tasks" / filename).read_text()) or []
    for task in tasks:
        yield from walk_task(role, filename, task, set(inherited), seen)


def walk_task(role, filename, task, inherited, seen):
    own = inherited | tags_of(task)
    if any(key in task for key in BLOCK_KEYS):
        for key in BLOCK_KEYS:
            for child in task.get(key, []) or []:
                yield from walk_task(role, filename, child, own, seen)
        return
    for action in ("ansible.builtin.import_tasks", "ansible.builtin.include_tasks"):
        if action in task:
            spec = task[action]
            target = spec if isinstance(spec, str) else spec["file"]
            if action.endswith("include_tasks"):
                applied = set((spec.get("apply", {}) if isinstance(spec, dict) else {}).get("tags", []))
                assert applied == tags_of(task), "%s: %s passes its tags on through apply" % (filename, task["name"])
                inner = inherited | applied
            else:
                inner = own
            if action.endswith("include_tasks"):
                yield filename, task, own
            yield from walk(role, target, frozenset(inner), seen)
            return
    yield filename, task, own


ROLE_NAMES = sorted(path.name for path in ROLES.iterdir() if (path / "tasks" / "main.yml").is_file())


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_task_of_the_main_entry_point_has_a_phase_tag(role):
    untagged = ["%s: %s" % (filename, task.get("name")) for filename, task, tags in walk(role, "main.yml")
                if not tags & PHASES]
    assert untagged == []


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_the_preflight_runs_whatever_the_tags(role):
    includes = [(task, tags) for filename, task, tags in walk(role, "main.yml")
                if "preflight" in str(task.get("ansible.builtin.include_tasks", ""))]
    assert includes, "main.yml includes no preflight"
    assert all("always" in tags for _task, tags in includes)


def runs_git_or_pip(task):
    if "ansible.builtin.git" in task:
        return True
    command = task.get("ansible.builtin.command")
    if isinstance(command, dict):
        argv = command.get("argv")
        if isinstance(argv, list):
            # Directly, or through the preflight's `sh -c` that reads the settings on standard input.
            return argv[0] != "dpkg-query" and any(str(word) == "git" or str(word).endswith("/bin/pip") for word in argv)
        return "/bin/pip'" in str(argv)
    return False


def test_git_and_pip_run_in_the_install_phase_or_the_preflight_only():
    found = [(filename, task, tags) for filename, task, tags in walk("worker", "main.yml") if runs_git_or_pip(task)]
    names = {task["name"] for _filename, task, _tags in found}
    assert {"Check out Pod at the pinned version", "Install the worker's requirements in the virtualenv"} <= names
    wrong = ["%s: %s %s" % (filename, task["name"], sorted(tags)) for filename, task, tags in found
             if tags & {"configure", "service"} or not tags & {"install", "always"}]
    assert wrong == []
    # The preflight's look (always) asks the repository and pip only when the install phase runs.
    looks = [(task, tags) for _filename, task, tags in walk("worker", "main.yml") if "esup_pod.xapi.worker_install_facts" in task]
    assert [("{{ _worker_install_selected | bool }}", True)] == [
        (task["esup_pod.xapi.worker_install_facts"]["ask"], "always" in tags) for task, tags in looks]


def test_every_git_and_pip_command_gets_the_install_settings_and_never_in_its_environment():
    """The proxy and index settings (vars/main.yml: _worker_install_env) may hold credentials: a git
    or pip task gets them through the wrapper install/run (its copy install/git for the git module), or, in
    the preflight, on standard input with no_log; never in `environment`, which -vvv and sudo show."""
    found = [task for _filename, task, _tags in walk("worker", "main.yml") if runs_git_or_pip(task)]
    # git status and rev-parse read the local checkout only.
    remote = [task for task in found if "local changes" not in task["name"] and "HEAD and origin" not in task["name"]]
    assert len(remote) == 2, [task["name"] for task in remote]
    # The preflight's look hands them to git and pip on standard input, through an option that is no_log.
    looks = [task for _filename, task, _tags in walk("worker", "main.yml") if "esup_pod.xapi.worker_install_facts" in task]
    assert [task["esup_pod.xapi.worker_install_facts"]["install_env"] for task in looks] == ["{{ _worker_install_env_text }}"]
    assert 'install_env=dict(type="str", default="", no_log=True)' in (ROLES.parent / "plugins" / "modules" / "worker_install_facts.py").read_text()
    for task in remote:
        args = str(task.get("ansible.builtin.command") or task.get("ansible.builtin.git"))
        assert ("_worker_install_run" in args or "_worker_install_dir ~ '/git'" in args
                or ("_worker_install_env_text" in args and "_worker_install_env" in str(task.get("no_log")))), task["name"]
    leaking = [task["name"] for task in found
               if any(name in str(task.get("environment", "")) for name in ("proxy", "_worker_install_env", "PIP_"))]
    assert leaking == []
