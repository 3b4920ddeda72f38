#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: worker_install_facts
short_description: Look, before any host changes, at the Pod checkout and the virtualenv that the xAPI worker runs from
version_added: 0.1.0
description:
  - The preflight of the role esup_pod.xapi.worker for its install phase. It reads only, and fails with a message that
    names the variable to fix.
  - It fails when an existing O(user) is not in O(group); when O(pod_dir) is a non-empty directory that is not a git
    checkout; when the checkout or the virtualenv belongs to a uid without a user name; when the checkout has local
    changes; when O(pod_repo) does not answer; when O(pod_version) is a branch (unless O(allow_branch)) or neither a
    tag, a branch nor a commit id; and, unless O(shared_install_changes), when this run would move a checkout or change
    a virtualenv that the role did not create (not listed in C(<config_dir>/managed-paths)).
  - git and pip run as the owner of the tree they read (C(runuser)), never as root, git with C(core.fsmonitor) and
    C(core.hooksPath) off and no optional lock. O(install_env) reaches them on standard input only.
options:
  host:
    description: The host's inventory name, named in the messages.
    type: str
    default: this host
  user:
    description: The worker's user (C(worker_user)); when it exists, O(group) must be one of its groups.
    type: str
  group:
    description: The group of the worker's files (C(worker_group)).
    type: str
  pod_dir:
    description: Pod's checkout (C(worker_pod_dir)).
    type: path
    required: true
  pod_repo:
    description: The Pod repository (C(worker_pod_repo)).
    type: str
    required: true
  pod_version:
    description: The tag, branch or commit that the worker runs (C(worker_pod_version)).
    type: str
    required: true
  allow_branch:
    description: A branch is accepted as O(pod_version).
    type: bool
    default: false
  venv:
    description: The worker's virtualenv (C(worker_venv)).
    type: path
    required: true
  config_dir:
    description: The worker's configuration directory, which holds C(managed-paths), the paths that the role owns.
    type: path
    required: true
  base_dir:
    description: The role's own base directory, named in the messages.
    type: path
    required: true
  pip_constraints:
    description: The pip constraints of the worker's virtualenv, for pip's dry run.
    type: list
    elements: str
    default: []
  install_env:
    description: The proxy and pip index settings, as shell assignments (they may hold credentials).
    type: str
    default: ""
  ask:
    description: Ask O(pod_repo) what O(pod_version) is, and pip what it would change; false when this run leaves the
      install alone (its tags).
    type: bool
    default: true
  shared_install_changes:
    description: The role may change a checkout or a virtualenv that it did not create.
    type: bool
    default: false
notes:
  - Check mode is supported; the module never changes anything.
author:
  - Esup-Pod xAPI collection maintainers (@EsupPortail)
"""

EXAMPLES = r"""
- name: Look at the Pod checkout and the virtualenv
  esup_pod.xapi.worker_install_facts:
    user: pod-xapi
    group: pod-xapi
    pod_dir: /opt/pod-xapi/Esup-Pod
    pod_repo: https://github.com/EsupPortail/Esup-Pod.git
    pod_version: 4.1.0
    venv: /opt/pod-xapi/venv
    config_dir: /etc/celeryd-xapi
    base_dir: /opt/pod-xapi
  register: look
"""

RETURN = r"""
user_exists:
  description: O(user) exists.
  returned: always
  type: bool
existing:
  description: Which of the checkout's C(.git), C(/usr/bin/git), the virtualenv's python, C(managed-paths), the checkout,
    its parent and the virtualenv exist.
  returned: always
  type: list
  elements: str
had_checkout:
  description: O(pod_dir) is a git checkout.
  returned: always
  type: bool
has_git:
  description: C(/usr/bin/git) exists.
  returned: always
  type: bool
had_venv_python:
  description: The virtualenv has its python.
  returned: always
  type: bool
managed_paths:
  description: The paths that C(managed-paths) lists.
  returned: always
  type: list
  elements: str
owns_checkout:
  description: The role created the checkout, or there is none yet.
  returned: always
  type: bool
owns_venv:
  description: The role created the virtualenv, or there is none yet.
  returned: always
  type: bool
target_commit:
  description: The commit that O(pod_version) names (O(pod_version) itself when the repository was not asked).
  returned: always
  type: str
checkout_at_version:
  description: The checkout is at RV(target_commit), from O(pod_repo).
  returned: always
  type: bool
asked:
  description: What the module asked, of C(repository) (git ls-remote) and C(pip) (a dry run).
  returned: always
  type: list
  elements: str
"""

import os
import pwd

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.esup_pod.xapi.plugins.module_utils import _worker_install as wi


class Look:
    def __init__(self, module):
        self.module, self.p = module, module.params
        self.me = pwd.getpwuid(os.geteuid())
        self.result = dict(changed=False, asked=[], user_exists=False)
        # Never empty: sh's cat would read the module's own standard input.
        self.env = self.p["install_env"] + "\n"

    def fail(self, msg):
        self.module.fail_json(msg=msg, **self.result)

    def owner(self, path):
        """The user name of PATH's owner; a failure when its uid has none."""
        uid = os.lstat(path).st_uid
        try:
            return pwd.getpwuid(uid)
        except KeyError:
            self.fail(wi.no_name_problem(path, uid, self.p["host"]))

    def run(self, user, argv, data=None, cwd=None):
        return self.module.run_command(wi.as_owner(user.pw_name, user.pw_dir, argv, self.me.pw_name),
                                       data=data, binary_data=True, cwd=cwd)

    def look(self):
        p, result = self.p, self.result
        if p["user"]:
            rc, groups, err = self.module.run_command(["id", "-Gn", p["user"]])
            result["user_exists"] = rc == 0
            if rc == 0 and p["group"] not in groups.split():
                self.fail(wi.group_problem(p["user"], p["group"], p["host"], groups))
        pod_dir, venv = p["pod_dir"], p["venv"]
        managed_file = os.path.join(p["config_dir"], "managed-paths")
        paths = [pod_dir + "/.git", "/usr/bin/git", venv + "/bin/python", managed_file, pod_dir, os.path.dirname(pod_dir), venv]
        result["existing"] = existing = [path for path in paths if os.path.lexists(path)]
        had_checkout, had_venv = paths[0] in existing, paths[2] in existing
        result.update(had_checkout=had_checkout, has_git=paths[1] in existing, had_venv_python=had_venv, managed_paths=[])
        if managed_file in existing:
            with open(managed_file) as handle:
                result["managed_paths"] = [line for line in handle.read().splitlines() if line]
        if not had_checkout and os.path.isdir(pod_dir) and os.listdir(pod_dir):
            self.fail("worker_pod_dir %s exists and is not a git checkout: move it away or set worker_pod_dir to Pod's "
                      "checkout" % pod_dir)
        checkout_owner = self.owner(pod_dir) if had_checkout else None
        venv_owner = self.owner(venv) if had_checkout and had_venv else None
        head = []
        if had_checkout:
            rc, out, err = self.run(checkout_owner, wi.git_in(pod_dir, "status", "--porcelain", "--untracked-files=no"))
            if rc != 0:
                self.fail("git status in %s failed: %s" % (pod_dir, wi.truncate(err.strip(), 200)))
            if out.strip():
                self.fail(wi.changes_problem(pod_dir, out.splitlines()))
            for args in (("rev-parse", "HEAD"), ("remote", "get-url", "origin")):
                rc, out, err = self.run(checkout_owner, wi.git_in(pod_dir, *args))
                if rc != 0:
                    break
                head += out.splitlines()
        refs, asked = [], p["ask"] and result["has_git"]
        if asked:
            result["asked"].append("repository")
            rc, out, err = self.run(self.me, wi.ls_remote(p["pod_repo"], p["pod_version"]), data=self.env, cwd="/")
            if rc != 0:
                self.fail(wi.silent_repo_problem(p["pod_repo"], p["host"], err))
            refs = out.splitlines()
        problem = wi.version_problem(p["pod_version"], p["pod_repo"], refs, asked, p["allow_branch"])
        if problem:
            self.fail(problem)
        result["target_commit"] = target = wi.resolve(refs, p["pod_version"])[1]
        result["owns_checkout"] = pod_dir in result["managed_paths"] or not had_checkout
        result["owns_venv"] = venv in result["managed_paths"] or not had_venv
        result["checkout_at_version"] = had_checkout and head == [target, p["pod_repo"]]
        if had_checkout and p["ask"] and not result["owns_checkout"] and not p["shared_install_changes"]:
            problem = wi.checkout_problem(p, head, target)
            if problem:
                self.fail(problem)
        if had_venv and had_checkout and p["ask"] and not result["owns_venv"]:
            result["asked"].append("pip")
            user = venv_owner if venv_owner.pw_uid != 0 else checkout_owner
            rc, out, err = self.run(user, wi.pip_dry_run(venv, p["pip_constraints"], pod_dir), data=self.env)
            problem = None if p["shared_install_changes"] else wi.venv_problem(p, rc, out, err)
            if problem:
                self.fail(problem)
        self.module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            host=dict(type="str", default="this host"),
            user=dict(type="str"),
            group=dict(type="str"),
            pod_dir=dict(type="path", required=True),
            pod_repo=dict(type="str", required=True),
            pod_version=dict(type="str", required=True),
            allow_branch=dict(type="bool", default=False),
            venv=dict(type="path", required=True),
            config_dir=dict(type="path", required=True),
            base_dir=dict(type="path", required=True),
            pip_constraints=dict(type="list", elements="str", default=[]),
            install_env=dict(type="str", default="", no_log=True),
            ask=dict(type="bool", default=True),
            shared_install_changes=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    Look(module).look()


if __name__ == "__main__":
    main()
