# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module util is PRIVATE to the collection (hence the leading underscore): it is not a public
# API, it can change or go away in any release, even a bugfix one. Do not import it from another
# collection or from your own modules; use the esup_pod.xapi modules instead.
"""The worker role's preflight look at Pod's checkout and the virtualenv (esup_pod.xapi.worker_install_facts):
what the ref names, which trees the role owns, the commands that run as a tree's owner, and the messages."""

from __future__ import annotations

import re

# git runs what a tree's config names (fsmonitor, hooks): off, whoever runs it.
GIT = ("git", "-c", "core.fsmonitor=", "-c", "core.hooksPath=/dev/null")
# The proxy and index settings (they may hold credentials) come on standard input, never in argv or environ.
STDIN_ENV_SH = 'set -a; eval "$(cat)"; set +a; exec "$@"'
PIP_DRY_RUN = ('printf "%s\\n" "$1" | "$0" install --dry-run --no-cache-dir --disable-pip-version-check --no-input '
               '-r "$2" -c /dev/stdin')
COMMIT = re.compile(r"^[0-9a-f]{7,40}$")


def truncate(text, length, killwords=False, end="...", leeway=5):
    """Jinja's truncate filter, so that the messages read as the role's templates wrote them."""
    if len(text) <= length + leeway:
        return text
    if killwords:
        return text[:length - len(end)] + end
    return text[:length - len(end)].rsplit(" ", 1)[0] + end


def mask(text):
    """TEXT with the password of any URL in it hidden."""
    return re.sub(r"//[^/@\s]*:[^/@\s]*@", "//***@", text)


def as_owner(owner, home, argv, current_user):
    """ARGV run as OWNER (runuser: never root in a tree that OWNER can write), with OWNER's HOME and no optional lock."""
    run = ["env", "HOME=%s" % home, "GIT_OPTIONAL_LOCKS=0", "GIT_TERMINAL_PROMPT=0"] + list(argv)
    return run if owner == current_user else ["runuser", "-u", owner, "--"] + run


def git_in(tree, *args):
    return list(GIT) + ["-c", "safe.directory=%s" % tree, "-C", tree] + list(args)


def ls_remote(repo, version):
    return ["/bin/sh", "-c", STDIN_ENV_SH, "sh"] + list(GIT) + [
        "ls-remote", repo, "refs/heads/%s" % version, "refs/tags/%s" % version, "refs/tags/%s^{}" % version]


def pip_dry_run(venv, constraints, pod_dir):
    return ["/bin/sh", "-c", STDIN_ENV_SH, "sh", "/bin/sh", "-c", PIP_DRY_RUN, "%s/bin/pip" % venv,
            "\n".join(constraints), "%s/requirements-encode.txt" % pod_dir]


def resolve(refs, version):
    """(a branch, the commit) that ls-remote's lines REFS give VERSION: a tag's peeled commit first, VERSION itself
    without any ref (a commit id)."""
    tags = [line for line in refs if re.search(r"\srefs/tags/", line)]
    branch = any(re.search(r"\srefs/heads/", line) for line in refs) and not tags
    first = ([line for line in refs if line.endswith("^{}")] + tags + list(refs) + [version])[0]
    return branch, first.split()[0]


def version_problem(version, repo, refs, asked, allow_branch):
    branch = resolve(refs, version)[0]
    if branch and not allow_branch:
        return ("worker_pod_version %s is a branch of %s, which moves under the worker: pin a release tag (or a commit), "
                "or set worker_pod_version_allow_branch: true" % (version, repo))
    if asked and not refs and not COMMIT.match(version):
        return "worker_pod_version %s is neither a tag nor a branch of %s, nor a commit id" % (version, repo)
    return None


def group_problem(user, group, host, id_groups):
    """worker_group not among the groups (C(id -Gn)'s ID_GROUPS) of an existing worker_user."""
    primary = id_groups.split()[0]
    values = (group, user, host, primary, id_groups.strip(), user, group, primary)
    return ("worker_group %s is not a group of worker_user %s, which exists on %s with primary group %s (groups: %s): the "
            "monitoring command and the dead letters' command run as %s and read the worker's files of group %s. Set "
            "worker_group: %s; the role never changes an existing user." % values)


def no_name_problem(path, uid, host):
    return ("%s belongs to uid %d, which has no user name on %s: the preflight runs git and pip as the owner of the tree "
            "they read, never as root. Give that uid a user, or change the owner." % (path, uid, host))


def changes_problem(pod_dir, status_lines):
    return ("the Pod checkout %s (worker_pod_dir) has local changes, which this role never discards: %s. Commit, move "
            "or revert them, then run again." % (pod_dir, ", ".join(line.strip() for line in status_lines)))


def silent_repo_problem(repo, host, stderr):
    return "worker_pod_repo %s does not answer from %s: %s" % (repo, host, mask(truncate(stderr.strip(), 200)))


def checkout_problem(p, head, target):
    """The refusal to move a checkout that the role did not create, or None when HEAD (its [commit, origin]) is there."""
    if head == [target, p["pod_repo"]]:
        return None
    at = (head + ["?", "?"])[:2]
    return ("worker_pod_dir %s is a checkout that this role did not create (the site's?), and this run would change it: "
            "it is at %s from %s, while worker_pod_version %s is %s from %s. Leave worker_pod_dir at a path of the role's "
            "own (default %s/Esup-Pod), or set worker_shared_install_changes: true to let the role move it."
            % (p["pod_dir"], truncate(at[0], 12, True, ""), at[1], p["pod_version"], truncate(target, 12, True, ""),
               p["pod_repo"], p["base_dir"]))


def venv_problem(p, rc, stdout, stderr):
    """The refusal to change a virtualenv that the role did not create, or None when pip's dry run changes nothing."""
    if rc == 0 and "Would install" not in stdout:
        return None
    would = [line for line in stdout.splitlines() if line.startswith("Would install")]
    return ("worker_venv %s is a virtualenv that this role did not create (the site's?), and this run would change it: "
            "%s. Leave worker_venv at a path of the role's own (default %s/venv), or set worker_shared_install_changes: "
            "true." % (p["venv"], mask(would[0] if would else truncate(stderr.strip(), 200)), p["base_dir"]))
