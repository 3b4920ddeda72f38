# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The controller check that opens site.yml, verify.yml and uninstall.yml, with real ansible-playbook runs
against inventory/example, whose hosts do not resolve: an ansible-core below the floor stops each
playbook with the way to a newer one, before Ansible tries to reach any host. The floor is raised in a
copy of the playbooks, as no older ansible-core is at hand here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def run(playbook):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    done = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "inventory/example", str(playbook)],
                          cwd=str(ROOT), env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    return done.returncode, done.stdout


@pytest.fixture
def raised_floor(tmp_path):
    """A copy of playbooks/ whose controller check asks for ansible-core 99."""
    copy = tmp_path / "playbooks"
    shutil.copytree(ROOT / "playbooks", copy)
    check = copy / "check_controller.yml"
    text = check.read_text()
    assert "version('2.18.0', '>=')" in text
    check.write_text(text.replace("version('2.18.0', '>=')", "version('99.0.0', '>=')"))
    return copy


@pytest.mark.parametrize("playbook", ["site.yml", "verify.yml", "uninstall.yml"])
def test_an_older_ansible_core_stops_every_playbook_before_any_host_is_reached(raised_floor, playbook):
    rc, output = run(raised_floor / playbook)
    assert rc != 0, output
    assert "is too old: esup_pod.xapi needs 2.18 or later. Nothing was changed." in output, output
    assert "pip install 'ansible-core>=2.18,<2.20'" in output
    assert "UNREACHABLE" not in output and "Could not resolve hostname" not in output, output


def test_this_ansible_core_passes_the_check():
    rc, output = run(ROOT / "playbooks" / "check_controller.yml")
    assert rc == 0, output
