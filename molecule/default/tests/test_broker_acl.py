"""A broker user per job (Redis ACLs) on the converged lab: each client of the broker can do its job and nothing else.

Each command is sent over the lab network, from the host whose client uses that user (the frontal's
Pod, the encoding host's worker), in Redis's own protocol. Before a destructive command is sent for
real, ACL DRYRUN (asked as the role's admin) must already refuse it: a broken rule fails the test
without flushing the lab's queue.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))

from lablib import lab, pod, resp  # noqa: E402

BROKER = ("frontal", "6380")  # the broker role's host and default port (xapi_broker_port)


def talk(via, *commands):
    """Each answer's first line, from the lab host VIA to the broker."""
    return resp.talk(via, BROKER[0], BROKER[1], *commands, tls=True)


def as_user(job, via, *commands):
    """The answers to COMMANDS sent after AUTH as the broker's user for JOB; the AUTH must succeed."""
    answers = talk(via, "AUTH %s %s" % (lab.broker_user(job), lab.broker_password(job)), *commands)
    assert answers[0] == "+OK", answers[0]
    return answers[1:]


def dryrun(job, command):
    """ACL DRYRUN of COMMAND for the user of JOB, asked as the admin: "+OK" when it is allowed."""
    return as_user("admin", "frontal", "ACL DRYRUN %s %s" % (lab.broker_user(job), command))[0]


FRONTAL_REFUSED = ["FLUSHALL", "FLUSHDB", "KEYS *", "CONFIG GET maxmemory", "CONFIG SET maxmemory 1mb",
                   "LRANGE xapi 0 -1", "LPOP xapi", "RPOP xapi", "LMOVE xapi elsewhere RIGHT LEFT",
                   "DEL xapi", "SCAN 0", "HGETALL unacked", "SUBSCRIBE /6.celery.pidbox", "ACL LIST"]
WORKER_REFUSED = ["CONFIG GET maxmemory", "CONFIG SET maxmemory 1mb", "FLUSHDB", "FLUSHALL", "KEYS *",
                  "ACL LIST", "SHUTDOWN NOSAVE", "SWAPDB 6 7", "CLIENT LIST", "MONITOR"]


def assert_refused(job, via, command):
    """COMMAND is refused to the user of JOB: by ACL DRYRUN first, then for real from the lab host VIA."""
    assert dryrun(job, command) != "+OK", "the %s's user may run %s" % (job, command)
    answer = as_user(job, via, "SELECT 6", command)
    assert answer[0] == "+OK" and answer[1].startswith("-NOPERM"), answer


@pytest.mark.parametrize("command", FRONTAL_REFUSED)
def test_the_frontal_user_cannot_flush_list_reconfigure_or_read_the_queue(command):
    assert_refused("frontal", "frontal", command)


def test_the_frontal_user_may_enqueue_and_pod_enqueues_as_that_user():
    for command in ("LPUSH xapi message", "SADD _kombu.binding.xapi binding", "SMEMBERS _kombu.binding.xapi"):
        assert dryrun("frontal", command) == "+OK", command
    assert pod.site_setting("XAPI_CELERY_BROKER_URL").startswith("rediss://%s:" % lab.broker_user("frontal"))
    assert len(pod.enqueue(1, tag="broker-acl")) == 1  # Pod's own task, through kombu, as the frontal's user


@pytest.mark.parametrize("command", WORKER_REFUSED)
def test_the_worker_user_cannot_reconfigure_or_flush(command):
    assert_refused("worker", "encoding", command)


def test_the_worker_user_may_consume_acknowledge_and_retry():
    for command in ("BLMOVE xapi inflight:n:xapi RIGHT LEFT 1", "LREM inflight:n:xapi 1 m", "HSET unacked t m",
                    "ZADD unacked_index 1 t", "HDEL unacked t", "LPUSH xapi m", "RPUSH xapi.dead-letters m",
                    "INFO memory", "PUBLISH /6.celery.pidbox m"):
        assert dryrun("worker", command) == "+OK", command


def test_an_unauthenticated_client_and_the_default_user_are_refused():
    assert talk("encoding", "PING", "LLEN xapi") == ["-NOAUTH Authentication required.", "-NOAUTH Authentication required."]
    # The default user is off: no password opens it, the admin's (the old requirepass) included.
    for auth in ("AUTH %s" % lab.broker_password("admin"), "AUTH default %s" % lab.broker_password("admin"),
                 "AUTH %s" % lab.broker_password("frontal")):
        answers = talk("frontal", auth, "PING")
        assert answers[0].startswith("-WRONGPASS"), answers
        assert answers[1].startswith("-NOAUTH"), answers


def test_each_user_is_refused_with_another_users_password():
    answers = talk("encoding", "AUTH %s %s" % (lab.broker_user("worker"), lab.broker_password("frontal")), "PING")
    assert answers[0].startswith("-WRONGPASS") and answers[1].startswith("-NOAUTH"), answers


def test_the_broker_logs_the_refusals():
    assert dryrun("frontal", "FLUSHALL") != "+OK"
    as_user("frontal", "frontal", "FLUSHALL")
    log = as_user("admin", "frontal", "ACL LOG 1")
    assert log[0] == "*1", log  # one entry, read whole below through redis-cli
    entry = lab.host("frontal").run("%s -p %s ACL LOG 1" % (lab.broker_cli("admin"), BROKER[1])).stdout.split()
    fields = dict(zip(entry[::2], entry[1::2]))
    assert fields["reason"] == "command" and fields["object"] == "flushall", entry
    assert fields["username"] == lab.broker_user("frontal"), entry


def test_a_transaction_survives_a_restart_of_the_broker():
    """Redis replays the append-only file's MULTI/EXEC blocks as the default user, checking its permissions
    (redis/redis#14541): the default user is off, yet must keep them, or kombu's transactions vanish at a restart."""
    key = "acl-test:transaction"
    # Two writes: Redis writes a transaction of one write to the file without MULTI/EXEC.
    assert as_user("admin", "frontal", "SELECT 6", "DEL %s" % key, "MULTI", "RPUSH %s kept" % key, "RPUSH %s too" % key,
                   "EXEC")[0] == "+OK"
    frontal = lab.host("frontal")
    try:
        assert frontal.run("systemctl restart redis-server@xapi").rc == 0
        lab.until("the broker answers again", lambda: talk("frontal", "PING")[0].startswith("-NOAUTH"), 30)
        assert as_user("admin", "frontal", "SELECT 6", "LLEN %s" % key) == ["+OK", ":2"]
    finally:
        as_user("admin", "frontal", "SELECT 6", "DEL %s" % key)
