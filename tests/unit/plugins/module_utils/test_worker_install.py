# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure logic of the worker's install preflight: what a ref names, the commands as a tree's owner, the messages."""

from __future__ import annotations

import jinja2
import pytest

from ansible_collections.esup_pod.xapi.plugins.module_utils import _worker_install as wi

TAG, PEELED, BRANCH = "a" * 40, "b" * 40, "c" * 40
REPO = "https://git.example.org/pod.git"


@pytest.mark.parametrize("refs, branch, target", [
    (["%s\trefs/tags/4.1.0" % TAG, "%s\trefs/tags/4.1.0^{}" % PEELED], False, PEELED),
    (["%s\trefs/tags/4.1.0" % TAG], False, TAG),
    (["%s\trefs/heads/4.1.0" % BRANCH, "%s\trefs/tags/4.1.0" % TAG], False, TAG),
    (["%s\trefs/heads/main" % BRANCH], True, BRANCH),
    ([], False, "4.1.0"),
])
def test_the_commit_that_a_version_names(refs, branch, target):
    assert wi.resolve(refs, "4.1.0") == (branch, target)


def test_a_branch_is_refused_unless_allowed_and_an_unknown_name_always():
    branch = ["%s\trefs/heads/main" % BRANCH]
    assert wi.version_problem("main", REPO, branch, True, False) == (
        "worker_pod_version main is a branch of %s, which moves under the worker: pin a release tag (or a commit), "
        "or set worker_pod_version_allow_branch: true" % REPO)
    assert wi.version_problem("main", REPO, branch, True, True) is None
    assert wi.version_problem("nope", REPO, [], True, False) == (
        "worker_pod_version nope is neither a tag nor a branch of %s, nor a commit id" % REPO)
    assert wi.version_problem("abc1234", REPO, [], True, False) is None
    assert wi.version_problem("nope", REPO, [], False, False) is None


@pytest.mark.parametrize("text", ["short", "x" * 205, "y" * 206, "word " * 60, TAG])
@pytest.mark.parametrize("args", [(200,), (12, True, "")])
def test_truncate_is_jinjas(text, args):
    assert wi.truncate(text, *args) == jinja2.Environment().filters["truncate"](jinja2.Environment(), text, *args)


def test_git_runs_as_the_trees_owner_with_its_code_off():
    argv = wi.as_owner("pod", "/home/pod", wi.git_in("/srv/pod", "status"), "root")
    assert argv[:4] == ["runuser", "-u", "pod", "--"]
    assert argv[4:8] == ["env", "HOME=/home/pod", "GIT_OPTIONAL_LOCKS=0", "GIT_TERMINAL_PROMPT=0"]
    assert argv[8:13] == ["git", "-c", "core.fsmonitor=", "-c", "core.hooksPath=/dev/null"]
    assert wi.as_owner("root", "/root", ["git"], "root")[0] == "env"
    assert wi.ls_remote(REPO, "4.1.0")[:3] == ["/bin/sh", "-c", wi.STDIN_ENV_SH]


def test_the_refusals_name_what_to_set_and_hide_a_password():
    params = dict(pod_dir="/srv/pod", pod_repo=REPO, pod_version="4.1.0", venv="/srv/venv", base_dir="/opt/x")
    assert wi.checkout_problem(params, [TAG, REPO], TAG) is None
    assert wi.checkout_problem(params, [TAG], PEELED) == (
        "worker_pod_dir /srv/pod is a checkout that this role did not create (the site's?), and this run would change "
        "it: it is at aaaaaaaaaaaa from ?, while worker_pod_version 4.1.0 is bbbbbbbbbbbb from %s. Leave worker_pod_dir "
        "at a path of the role's own (default /opt/x/Esup-Pod), or set worker_shared_install_changes: true to let the "
        "role move it." % REPO)
    assert wi.venv_problem(params, 0, "Requirement already satisfied\n", "") is None
    assert wi.venv_problem(params, 0, "x\nWould install celery-5.4.0\n", "").startswith(
        "worker_venv /srv/venv is a virtualenv that this role did not create (the site's?), and this run would change "
        "it: Would install celery-5.4.0. Leave worker_venv")
    failed = wi.venv_problem(params, 1, "", "ProxyError http://u:pw@proxy:3128/\n")
    assert "//***@proxy" in failed and "pw" not in failed
    assert wi.silent_repo_problem(REPO, "enc", "fatal: https://u:pw@h/ 403") == (
        "worker_pod_repo %s does not answer from enc: fatal: https://***@h/ 403" % REPO)
