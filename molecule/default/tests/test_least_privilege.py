# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""No path from a service account to root (issue 20), on the converged lab's encoding host.

pod-xapi owns the worker's checkout: a core.fsmonitor that it plants in the checkout's .git/config
does not run as root at the next site.yml (the preflight's git runs as the checkout's owner, with
fsmonitor and hooks off). A monitoring agent that may run the monitoring command as pod-xapi cannot
make it run a file of its own: the command takes no --settings, and the sudoers line of the worker role's README lets it
pass no argument at all. Everything planted is removed in a `finally`.
"""

from __future__ import annotations

import shlex

import pytest

from lablib import lab

# Platform-neutral, and it runs site.yml: once, with the other tests that change the lab (conftest.py).
pytestmark = pytest.mark.once

CHECK = "/usr/local/bin/celeryd-xapi-check"
CHECKOUT = "/opt/esup-pod-xapi/Esup-Pod"  # worker_pod_dir's default
PWNED = "/root/pwned-by-fsmonitor"
PLANTED = "/tmp/xapi-check-planted.py"
RAN = "/tmp/xapi-check-planted-ran"


def encoding():
    return lab.host("encoding")


def as_worker_user(command):
    # runuser keeps root's HOME, whose git config pod-xapi may not read.
    return "runuser -u pod-xapi -- env HOME=/nonexistent " + command


def test_a_planted_fsmonitor_does_not_run_as_root_at_the_next_site_run():
    host = encoding()
    git = "git -C %s" % shlex.quote(CHECKOUT)
    assert host.run("rm -f %s" % PWNED).rc == 0
    planted = host.run(as_worker_user("%s config core.fsmonitor %s" % (git, shlex.quote("touch " + PWNED))))
    assert planted.rc == 0, planted.stderr
    try:
        # Planted where git reads it: as root, without the role's precautions, git status would run it.
        assert host.run(as_worker_user("%s config --get core.fsmonitor" % git)).stdout.strip() == "touch " + PWNED
        rc, output = lab.run_playbook("playbooks/site.yml", "--limit", "encoding")
        assert rc == 0, output[-3000:]
        assert not host.file(PWNED).exists, "the checkout's core.fsmonitor ran as root during site.yml"
    finally:
        host.run(as_worker_user("%s config --unset-all core.fsmonitor" % git))
        host.run("rm -f %s" % PWNED)
    assert host.run(as_worker_user("%s config --get core.fsmonitor" % git)).rc == 1


def test_the_monitoring_command_runs_no_file_of_its_caller():
    host = encoding()
    source = "import os\nopen(%r, 'w').close()\nos.system('id -un >> %s')\n" % (RAN, RAN)
    assert host.run("rm -f %s && printf '%%s' %s > %s && chmod 0644 %s" % (
        RAN, shlex.quote(source), PLANTED, PLANTED)).rc == 0
    sudoers = "/etc/sudoers.d/xapi-check-least-privilege-test"
    try:
        # As pod-xapi (root's sudo here): the option is gone, the file is neither run nor read.
        for option in (["--settings", PLANTED], ["--settings=" + PLANTED], ["--lrs-ca-file", PLANTED]):
            out = host.run("sudo -n -u pod-xapi %s %s" % (CHECK, " ".join(shlex.quote(word) for word in option)))
            assert out.rc == 3, out.stdout + out.stderr
            assert out.stdout.startswith("XAPI UNKNOWN - ") and "unrecognized arguments" in out.stdout, out.stdout
            assert not host.file(RAN).exists, "the monitoring command ran its caller's file"
        # The sudoers line of the worker role's README: the agent's user runs the command with no argument, and none else.
        line = "nobody ALL=(pod-xapi) NOPASSWD: %s \"\"" % CHECK
        assert host.run("printf '%%s\\n' %s > %s && chmod 0440 %s && visudo -cf %s" % (
            shlex.quote(line), sudoers, sudoers, sudoers)).rc == 0
        plain = host.run("runuser -u nobody -- sudo -n -u pod-xapi %s" % CHECK)
        assert plain.rc in (0, 1, 2) and plain.stdout.startswith("XAPI "), plain.stdout + plain.stderr
        refused = host.run("runuser -u nobody -- sudo -n -u pod-xapi %s --settings %s" % (CHECK, PLANTED))
        assert refused.rc != 0 and not refused.stdout.startswith("XAPI "), refused.stdout + refused.stderr
        assert not host.file(RAN).exists, "the monitoring command ran its caller's file"
    finally:
        host.run("rm -f %s %s %s" % (sudoers, PLANTED, RAN))
    assert not host.file(sudoers).exists
