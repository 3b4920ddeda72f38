"""The worker's preflight look at a broker (roles/worker/files/redis_auth_check.py), against real Redis
servers: what it reports of the password, the version and the eviction policy that the preflight
then judges (roles/worker/tasks/preflight_broker.yml)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "roles" / "worker" / "files" / "redis_auth_check.py"


def look(url):
    done = subprocess.run([sys.executable, str(SCRIPT), "3"], input=url, text=True, capture_output=True, timeout=30,
                          check=False)
    return done.returncode, done.stdout.strip()


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
