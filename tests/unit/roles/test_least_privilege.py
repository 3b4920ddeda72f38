# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""No path from a service account to root through the worker role's git and pip (issue 20).

git runs what a repository's config names (core.fsmonitor, hooks, a filter's clean command) and pip
runs what the requirements name (an sdist's build): run as root in a checkout or a virtualenv that
the worker's user (or a site's) can write, they run that user's code as root at the next site.yml.
Every task of the worker role that runs git or pip runs it as another user (become_user), or, for
git only, with fsmonitor and hooks turned off. The tasks are found by what they run, in every task
file of the role, blocks opened (a block's become_user reaches its tasks).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROLE = Path(__file__).resolve().parents[3] / "roles" / "worker"
BLOCK_KEYS = ("block", "rescue", "always")
COMMANDS = ("ansible.builtin.command", "ansible.builtin.shell", "ansible.builtin.raw", "command", "shell", "raw")
GIT_MODULES = ("ansible.builtin.git", "git")
PIP_MODULES = ("ansible.builtin.pip", "pip")
# Commands that name git as a package, not as a program.
PACKAGE_TOOLS = {"dpkg-query", "dpkg", "apt-get", "apt"}
GUARD = ("core.fsmonitor=", "core.hooksPath=/dev/null")


def task_files():
    return sorted((ROLE / "tasks").glob("*.yml")) + sorted((ROLE / "handlers").glob("*.yml"))


def tasks(items, inherited=None):
    """(task, effective become, effective become_user) of ITEMS, blocks opened."""
    inherited = inherited or {}
    for task in items or []:
        own = dict(inherited)
        own.update((key, task[key]) for key in ("become", "become_user") if key in task)
        if any(key in task for key in BLOCK_KEYS):
            for key in BLOCK_KEYS:
                yield from tasks(task.get(key), own)
            continue
        yield task, own.get("become"), own.get("become_user")


def all_tasks():
    for path in task_files():
        for task, become, become_user in tasks(yaml.safe_load(path.read_text())):
            yield path.name, task, become, become_user


def spec_of(task):
    """A command task's argv (a list, or a Jinja expression) or command line, or None."""
    for key in COMMANDS:
        if key in task:
            spec = task[key]
            if isinstance(spec, dict):
                spec = spec.get("argv", spec.get("cmd", spec.get("_raw_params", "")))
            return spec
    return None


def words(task):
    """All the words of a command task, quotes and Jinja's list punctuation dropped."""
    spec = spec_of(task)
    if spec is None:
        return []
    text = " ".join(str(item) for item in spec) if isinstance(spec, list) else str(spec)
    return [word.strip("'\",[]()") for word in text.split()]


def program(word):
    return word.strip("'\",[]()").rstrip(";&|").rsplit("/", 1)[-1]


def shell_programs(line):
    """The programs that a shell command line runs: its first word, and the first after &&, ||, ;, | (exec skipped)."""
    line = re.sub(r"\bexec\s+", "", line)
    return [program(found) for found in re.findall(r"(?:^|&&|\|\||;|\|)\s*(\S+)", line)]


def programs(task):
    """The programs that a command task runs. In an argv, sh -c SCRIPT NAME ARGS runs SCRIPT, which may run
    its $0 (NAME) or "$@" (ARGS): the other words are data (a path looked for, a package)."""
    spec = spec_of(task)
    if spec is None:
        return []
    if not isinstance(spec, list):
        if "{{" in str(spec) and "[" in str(spec):  # an argv built by Jinja: any word may be its program
            return [program(word) for word in words(task)]
        return shell_programs(str(spec))
    argv = [str(item) for item in spec]
    found = [program(argv[0])] if argv else []
    for index, word in enumerate(argv[:-1]):
        if word == "-c" and index > 0 and program(argv[index - 1]) in ("sh", "bash", "dash"):
            if "{{" in argv[index + 1]:  # a script from a variable: any word after it may be run
                found += [program(word) for word in argv[index + 2:]]
                continue
            script = shell_programs(argv[index + 1])
            found += script
            if "$0" in script and index + 2 < len(argv):
                found.append(program(argv[index + 2]))
            if ("$@" in script or "$1" in script) and index + 3 < len(argv):
                found.append(program(argv[index + 3]))
    return found


def runs(task):
    """({'git', 'pip'} that the task runs, how many git commands)."""
    found, gits = set(), 0
    if any(key in task for key in GIT_MODULES):
        found.add("git")
    if any(key in task for key in PIP_MODULES):
        found.add("pip")
    named = programs(task)
    if named and named[0] in PACKAGE_TOOLS:
        return found, gits
    for name in named:
        if name == "git":
            found.add("git")
            gits += 1
        elif re.fullmatch(r"pip3?(\.\d+)?", name):
            found.add("pip")
    if re.search(r"-m\s+pip\b", " ".join(words(task))):
        found.add("pip")
    return found, gits


def guarded(task, gits):
    """Every git command of the task turns off fsmonitor and hooks."""
    argv = words(task)
    return gits > 0 and all(argv.count(option) >= gits for option in GUARD)


def as_another_user(become, become_user):
    return become is not False and bool(become_user) and str(become_user).strip() != "root"


def problems():
    wrong = []
    for filename, task, become, become_user in all_tasks():
        found, gits = runs(task)
        if not found:
            continue
        if as_another_user(become, become_user):
            continue
        if found == {"git"} and guarded(task, gits):
            continue
        wrong.append("%s: %s (runs %s as root)" % (filename, task.get("name"), ", ".join(sorted(found))))
    return wrong


def test_git_and_pip_never_run_as_root_unguarded():
    assert problems() == []


def test_the_walk_finds_the_roles_git_and_pip():
    """Not vacuous: the tasks that run git or pip are found, whatever form they take."""
    names = {task.get("name") for _filename, task, _b, _u in all_tasks() if runs(task)[0]}
    assert {
        "Check out Pod at the pinned version",
        "Install the worker's requirements in the virtualenv",
    } <= names


@pytest.mark.parametrize("task, flagged", [
    ({"ansible.builtin.command": {"argv": ["git", "-C", "/x", "status"]}}, True),
    ({"ansible.builtin.command": {"argv": ["git", "-c", "core.fsmonitor=", "-c", "core.hooksPath=/dev/null", "status"]}}, False),
    ({"ansible.builtin.command": {"argv": ["git", "-c", "core.fsmonitor=", "status"]}}, True),
    ({"ansible.builtin.shell": {"cmd": "git -c core.fsmonitor= -c core.hooksPath=/dev/null rev-parse HEAD && git remote -v"}}, True),
    ({"ansible.builtin.shell": "cd /x && /usr/bin/git status"}, True),
    ({"ansible.builtin.command": {"argv": "{{ [worker_venv ~ '/bin/pip', 'install'] }}"}}, True),
    ({"ansible.builtin.command": {"argv": ["/bin/sh", "-c", "exec \"$@\"", "sh", "/v/bin/pip", "install"]}}, True),
    ({"ansible.builtin.command": {"argv": ["/v/bin/python", "-m", "pip", "install"]}}, True),
    ({"ansible.builtin.command": {"argv": ["/v/bin/pip", "install"]}, "become_user": "root"}, True),
    ({"ansible.builtin.command": {"argv": ["/v/bin/pip", "install"]}, "become_user": "pod-xapi", "become": False}, True),
    ({"ansible.builtin.command": {"argv": ["/v/bin/pip", "install"]}, "become_user": "{{ worker_user }}"}, False),
    ({"block": [{"ansible.builtin.git": {"repo": "r", "dest": "/d"}}], "become": True, "become_user": "pod-xapi"}, False),
    ({"ansible.builtin.git": {"repo": "r", "dest": "/d"}}, True),
    ({"ansible.builtin.pip": {"name": "x"}}, True),
    ({"ansible.builtin.command": {"argv": ["dpkg-query", "-W", "git"]}}, False),
    ({"ansible.builtin.command": {"argv": ["/bin/sh", "-c", "for p; do test -e $p; done", "sh", "/usr/bin/git"]}}, False),
    ({"ansible.builtin.command": {"argv": ["/bin/sh", "-c", "exec \"$@\"", "sh", "/usr/bin/git", "status"]}}, True),
    ({"ansible.builtin.command": {"argv": ["/bin/sh", "-c", "cd /x; git status"]}}, True),
    ({"ansible.builtin.command": {"argv": ["/bin/sh", "-c", "{{ script }}", "sh", "git", "status"]}}, True),
    ({"ansible.builtin.template": {"src": "pip-constraints.txt.j2", "dest": "/etc/x/pip-constraints.txt"}}, False),
])
def test_the_rule_on_examples(task, flagged):
    wrong = []
    for one, become, become_user in tasks([task]):
        found, gits = runs(one)
        if found and not as_another_user(become, become_user) and not (found == {"git"} and guarded(one, gits)):
            wrong.append(one)
    assert bool(wrong) == flagged


def test_the_preflight_runs_git_and_pip_only_through_its_module():
    """The preflight's git and pip run in esup_pod.xapi.worker_install_facts, as the tree's owner (its unit tests:
    tests/unit/plugins/modules/test_worker_install_facts_module.py), never from a task."""
    preflight = [task for task, _b, _u in tasks(yaml.safe_load((ROLE / "tasks" / "preflight.yml").read_text()))]
    assert not [task["name"] for task in preflight if runs(task)[0]]
    assert [task["name"] for task in preflight if "esup_pod.xapi.worker_install_facts" in task]
