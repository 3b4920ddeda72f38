# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""esup_pod.xapi.worker_install_facts on real git repositories and trees: what it finds, each refusal word for word,
git as the tree's owner (nobody) with a planted core.fsmonitor that never runs, and a proxy's password never shown."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from ansible_collections.esup_pod.xapi.plugins.modules import worker_install_facts
from ansible_collections.esup_pod.xapi.tests.unit.compat import run_module, run_module_output

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs git as another user: needs root (as CI)")


def git(*args, cwd=None):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "safe.directory=*"] + list(args), cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture()
def tmp_path():
    """A directory that another user (nobody) can cross, unlike pytest's."""
    path = Path(tempfile.mkdtemp(prefix="worker-install-facts-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture()
def site(tmp_path):
    repo = tmp_path / "repo"
    git("init", "-q", "-b", "main", str(repo))
    (repo / "requirements-encode.txt").write_text("")
    git("add", ".", cwd=repo)
    git("commit", "-qm", "one", cwd=repo)
    git("tag", "-a", "-m", "4.1.0", "4.1.0", cwd=repo)
    params = dict(pod_dir=str(tmp_path / "base" / "Esup-Pod"), pod_repo=str(repo), pod_version="4.1.0",
                  venv=str(tmp_path / "base" / "venv"), config_dir=str(tmp_path / "etc"), base_dir=str(tmp_path / "base"))
    (tmp_path / "etc").mkdir()
    return params


def clone(params, owner=None):
    git("clone", "-q", params["pod_repo"], params["pod_dir"])
    if owner is not None:
        subprocess.run(["chown", "-R", owner, params["pod_dir"]], check=True)


def look(capsys, params, **extra):
    return run_module(worker_install_facts.main, capsys, dict(params, **extra))


def test_a_fresh_host_is_the_roles_own_and_the_tag_is_resolved(site, capsys):
    result = look(capsys, site)
    found = (result["had_checkout"], result["owns_checkout"], result["owns_venv"], result["asked"])
    assert found == (False, True, True, ["repository"])
    assert result["target_commit"] == git("rev-parse", "4.1.0^{}", cwd=site["pod_repo"])
    assert look(capsys, site, ask=False)["asked"] == []


def test_a_non_empty_directory_that_is_not_a_checkout(site, capsys):
    os.makedirs(site["pod_dir"])
    open(os.path.join(site["pod_dir"], "x"), "w").close()
    assert look(capsys, site)["msg"] == ("worker_pod_dir %s exists and is not a git checkout: move it away or set "
                                         "worker_pod_dir to Pod's checkout" % site["pod_dir"])


def test_a_checkout_of_a_uid_without_a_name(site, capsys):
    clone(site, "54329")
    assert look(capsys, site)["msg"] == (
        "%s belongs to uid 54329, which has no user name on this host: the preflight runs git and pip as the owner of "
        "the tree they read, never as root. Give that uid a user, or change the owner." % site["pod_dir"])


def test_git_runs_as_the_owner_and_never_runs_a_planted_fsmonitor(site, capsys):
    clone(site, "nobody")
    planted = Path(site["pod_dir"]) / ".git" / "pwned"
    git("-C", site["pod_dir"], "config", "core.fsmonitor", "touch %s; false" % planted)
    with open(os.path.join(site["pod_dir"], "requirements-encode.txt"), "w") as handle:
        handle.write("celery\n")
    result = look(capsys, site)
    assert result["msg"] == ("the Pod checkout %s (worker_pod_dir) has local changes, which this role never discards: "
                             "M requirements-encode.txt. Commit, move or revert them, then run again." % site["pod_dir"])
    assert not planted.exists()


def test_a_site_checkout_elsewhere_is_refused_unless_allowed(site, capsys):
    clone(site, "nobody")
    git("-C", site["pod_repo"], "commit", "-q", "--allow-empty", "-m", "two")
    git("-C", site["pod_repo"], "tag", "-f", "-a", "-m", "4.1.0", "4.1.0")
    message = look(capsys, site)["msg"]
    assert message.startswith("worker_pod_dir %s is a checkout that this role did not create (the site's?), and this run "
                              "would change it: it is at " % site["pod_dir"])
    assert look(capsys, site, shared_install_changes=True)["checkout_at_version"] is False
    with open(os.path.join(site["config_dir"], "managed-paths"), "w") as handle:
        handle.write(site["pod_dir"] + "\n")
    assert look(capsys, site)["owns_checkout"] is True


def test_a_branch_and_a_silent_repository_behind_a_proxy_with_a_password(site, capsys):
    assert "is a branch of" in look(capsys, site, pod_version="main")["msg"]
    result, output = run_module_output(worker_install_facts.main, capsys, dict(
        site, pod_repo="https://pod.invalid/pod.git", install_env="HTTPS_PROXY='http://u:s3cret-proxy@127.0.0.1:9'\n"))
    assert result["msg"].startswith("worker_pod_repo https://pod.invalid/pod.git does not answer from this host: ")
    assert "127.0.0.1" in result["msg"] and "s3cret-proxy" not in output


def test_an_existing_user_outside_worker_group(site, capsys):
    assert look(capsys, site, user="nobody", group="root")["msg"] == (
        "worker_group root is not a group of worker_user nobody, which exists on this host with primary group nogroup "
        "(groups: nogroup): the monitoring command and the dead letters' command run as nobody and read the worker's "
        "files of group root. Set worker_group: nogroup; the role never changes an existing user.")
    assert "msg" not in look(capsys, site, user="nobody", group="nogroup")
