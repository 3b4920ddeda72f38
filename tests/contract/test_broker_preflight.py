"""The worker's preflight look at a broker (plugins/module_utils/_worker_preflight.py, which the module
esup_pod.xapi.worker_preflight runs), against real Redis servers: what it reports of the password, the version
and the eviction policy, and how the preflight judges them."""

import importlib
import json
import sys
from pathlib import Path

import pytest

# The contract environments hold kombu and redis, not Ansible: the look and the Redis client it uses
# (module_utils' files, standard library only) are imported from the collection's plugins directory.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))
preflight = importlib.import_module("module_utils._worker_preflight")


def look(url):
    """(0, the look as JSON) or (1, what the broker refused), as the preflight's former script printed them."""
    try:
        return 0, json.dumps(preflight.redis_look(url, 3))
    except preflight.BrokerRefused as exc:
        return 1, str(exc)


@pytest.mark.parametrize("policy", ["noeviction", "allkeys-lru", "volatile-ttl"])
def test_it_reports_the_version_and_the_eviction_policy(start_redis, policy):
    server = start_redis("--maxmemory", "16mb", "--maxmemory-policy", policy)
    version = server.client.info("server")["redis_version"]
    server.client.config_set("requirepass", "s3cret/pw")
    server.client.close()
    server.client = server.client.__class__(port=server.port, password="s3cret/pw")
    rc, out = look("redis://:s3cret%%2Fpw@127.0.0.1:%d/6" % server.port)
    assert rc == 0, out
    seen = json.loads(out)
    assert seen["policy"] == policy
    assert seen["version"] == version
    assert seen["limit"] == 16 * 1024 * 1024 and 0 < seen["used"] < seen["limit"]
    problem = preflight.broker_problem("127.0.0.1:%d" % server.port, seen)
    assert (problem is not None) == policy.startswith("allkeys-")
    assert (preflight.broker_warning("127.0.0.1:%d" % server.port, seen) is not None) == policy.startswith("volatile-")


def test_a_wrong_password_is_named_without_the_password(start_redis):
    server = start_redis()
    server.client.config_set("requirepass", "right-one")
    server.client.close()
    server.client = server.client.__class__(port=server.port, password="right-one")
    rc, out = look("redis://:wrong-one@127.0.0.1:%d/6" % server.port)
    assert rc == 1 and out.startswith("AUTH answered -WRONGPASS"), out
    assert "wrong-one" not in out and "right-one" not in out


def test_an_unreachable_broker_is_named(start_redis):
    server = start_redis()
    port = server.port
    server.stop()
    rc, out = look("redis://127.0.0.1:%d/6" % port)
    assert rc == 1 and out.startswith("cannot talk to 127.0.0.1:%d" % port), out
    assert preflight.wait_port("127.0.0.1", port, 1) is False
