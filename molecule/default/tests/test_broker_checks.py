"""A broker the site already runs is checked before any change (the worker's preflight): one that may
evict the queue is refused, naming the cause, and no host changes. The site's own Redis of the
frontal (Pod's, no password) stands for it, its eviction policy set for the test and put back."""

import pytest

from lablib import lab

pytestmark = pytest.mark.once

SITE_BROKER = "redis://frontal:6379/6"


def site_redis(command):
    result = lab.host("frontal").run("redis-cli %s" % command)
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def test_a_site_broker_that_evicts_any_key_is_refused_before_any_change():
    policy = site_redis("CONFIG GET maxmemory-policy").split()[-1]
    site_redis("CONFIG SET maxmemory-policy allkeys-lru")
    try:
        rc, out = lab.run_playbook("playbooks/site.yml", "-e", "worker_broker_url=%s" % SITE_BROKER)
    finally:
        site_redis("CONFIG SET maxmemory-policy %s" % policy)
    assert rc != 0, out[-3000:]
    assert ("broker at frontal:6379 evicts any key when full (maxmemory-policy allkeys-lru), queued statements "
            "included") in out, out[-3000:]
    recap = lab.changed_by_host(out)
    assert recap and set(recap.values()) == {0}, recap
