# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the collection does not claim is refused before any change, naming the cause.

One extra host of the lab, Debian 11 (bullseye), started by this module only (tests/lab/labctl add) and
removed after it:
- as a broker, a frontal and an encoding host at once (three inventory names for the one container), it is
  refused by each role's preflight, naming the release and the claim, and no host changes;
- Debian 11's own redis-server (Redis 6.0, no BLMOVE) on it, as a site's own broker of the lab's encoding host,
  is refused by the worker's check of the broker, and no host changes.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from lablib import lab

pytestmark = pytest.mark.once

HOST = "bullseye"
LABCTL = str(lab.REPO_ROOT / "tests" / "lab" / "labctl")
ROLES = ("broker", "frontal", "worker")
GROUPS = {"broker": "pod_broker", "frontal": "pod_frontal", "worker": "pod_encoding"}


def labctl(*args):
    done = subprocess.run([LABCTL, *args], env=dict(os.environ, LAB_NAME=lab.lab_name()), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def bullseye():
    labctl("add", lab.lab_name(), HOST, "bullseye")
    try:
        yield lab.host(HOST)
    finally:
        labctl("remove", lab.lab_name(), HOST)


def test_a_debian_11_host_is_refused_by_every_role_before_any_change(bullseye, tmp_path):
    assert bullseye.system_info.codename == "bullseye"
    inventory = tmp_path / "bullseye.yml"
    inventory.write_text("all:\n  children:\n" + "".join(
        "    %s:\n      hosts:\n        %s-%s:\n          ansible_host: %s\n" % (GROUPS[role], HOST, role, lab.container(HOST))
        for role in ROLES))
    rc, out = lab.run_playbook("playbooks/site.yml", inventories=("inventory/lab", str(inventory)))
    assert rc != 0, out[-3000:]
    for role in ROLES:
        message = ("%s-%s runs Debian 11 (bullseye), which esup_pod.xapi.%s does not support: it supports Debian 12 "
                   "(bookworm) and Debian 13 (trixie) only" % (HOST, role, role))
        assert message in out, out[-4000:]
        print("\n" + message)
    changed = lab.changed_by_host(out)
    assert set(changed) == {"frontal", "encoding"} | {"%s-%s" % (HOST, role) for role in ROLES}, changed
    assert set(changed.values()) == {0}, changed


def test_debian_11s_redis_as_a_sites_broker_is_refused_before_any_change(bullseye):
    """The site's own broker (pod_broker would be empty: its check runs in the first play, as here)."""
    setup = bullseye.run(
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -o DPkg::Lock::Timeout=120 -y -qq "
        "redis-server >/dev/null && "
        "sed -i -e 's/^bind .*/bind 0.0.0.0/' -e 's/^protected-mode yes/protected-mode no/' /etc/redis/redis.conf && "
        "systemctl restart redis-server && redis-cli INFO server | grep '^redis_version:'")
    assert setup.rc == 0, setup.stdout + setup.stderr
    version = setup.stdout.split(":", 1)[1].strip()
    assert version.startswith("6.0."), version
    rc, out = lab.run_playbook("playbooks/site.yml", "-e", "worker_broker_url=redis://%s:6379/6" % HOST,
                               "-e", "worker_preflight_broker=true")
    assert rc != 0, out[-3000:]
    message = ("broker at %s:6379 runs Redis %s, which has no BLMOVE: the worker needs Redis 6.2 or later "
               "(worker_broker_url)" % (HOST, version))
    assert message in out, out[-4000:]
    print("\n" + message)
    assert "Stop every host when any host failed its checks" in out
    changed = lab.changed_by_host(out)
    assert changed and set(changed.values()) == {0}, changed
