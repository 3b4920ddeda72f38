"""Delivery of Esup-Pod's xAPI statements (role esup_pod.xapi.worker): Pod's task annotated, a transport, a command.

The role installs this module next to the Celery config module xapi_celeryconfig, on the worker's
PYTHONPATH. Pod's code is unchanged, and nothing in Pod's modules is replaced. The config module
annotates Pod's task (task_annotations, "@run": deliver), which Celery supports: Celery wraps the
task's run with deliver() when it binds the task, at the node's start, and its autoretry wraps the
result. The node then runs the worker's own delivery instead of Pod's POST, with Pod's contract: the
statement as JSON to Pod's XAPI_LRS_URL, with XAPI_LRS_LOGIN and XAPI_LRS_PWD as HTTP basic auth, all
read from Pod's task module; Pod's "statement id: ..." line on Pod's logger. Each thread keeps one
requests.Session, whose connection to the LRS stays open between statements; the LRS's certificate is
verified against the system's CA store, or the role's worker_lrs_ca_file. The LRS's answer decides:

- 2xx: delivered. 409 (the LRS already holds a statement with this id, after a redelivery):
  delivered too, and logged.
- 3xx: never followed (a POST sent on through a redirect arrives as a GET, without its statement);
  logged with its Location, and retried like the next ones.
- 5xx, 429, 408, 425, 401, 403: the answer can change later (a proxy in maintenance, rotated
  credentials): LRSTemporaryError, which the task's autoretry retries with backoff, without limit.
- any other answer (400, 404, 413...): the LRS will refuse it again. The statement is pushed to the
  dead-letter list on the broker, never dropped; an admin lists and replays it with this module's
  command (the role installs it as /usr/local/sbin/<service>-dead-letters).

Transport, a kombu Redis transport named in the worker's Celery config (broker_transport), takes
each message with one atomic BLMOVE into the node's in-flight list and lets a node start while the
broker is full; it refuses to run on a kombu or a Redis it does not support. transport_options()
gives each worker node unacknowledged-message keys of its own on the broker, and restore_unacked()
(run by the node's unit before it starts) puts back in the queue whatever the node's previous run
received and never acknowledged (killed, rebooted), at once instead of after the broker's
visibility timeout.
"""

import argparse
import datetime
import json
import logging
import os
import re
import sys
import threading
import time
from urllib.parse import urljoin

import kombu
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

LOG = logging.getLogger("xapi_delivery")

# The names shared with esup_pod.xapi.xapi_check, which a unit test keeps the same as there.
TASK_NAME = "pod.xapi.xapi_tasks.send_xapi_statement_task"
POD_MODULE = TASK_NAME.rsplit(".", 1)[0]
QUEUE = "xapi"
DEAD_LETTER_KEY = "xapi.dead-letters"
# The probe statements of esup_pod.xapi.xapi_check: the LRS's answer to each one's POST is kept on the broker
# for a while, so that the check proves delivery with a key that may only write (the same names as there).
PROBE_ACTIVITY_ID = "urn:esup-pod:xapi:probe"
PROBE_ANSWER_PREFIX = "xapi.probe-answer:"
PROBE_ANSWER_TTL = 600
UNACKED_PREFIX = "unacked"
INFLIGHT_PREFIX = "inflight"
# The kombu releases whose Redis Channel._brpop_start/_brpop_read the transport's Channel overrides
# (the same code from 5.3 to 5.5; 5.6 changed _brpop_start; worker_pip_constraints pins 5.4.2).
SUPPORTED_KOMBU = ("5.3", "5.4", "5.5")
NODE_ENV = "XAPI_WORKER_NODE"
# A replayed statement carries its earlier attempts in this message header.
REPLAY_HEADER = "xapi_dead_letter_attempts"

DELIVERED, RETRY, DEAD = "delivered", "retry", "dead-letter"
RETRY_STATUSES = frozenset((401, 403, 408, 425, 429))
DEFAULT_TIMEOUT = 20
# The system's CA bundle, as Debian and Red Hat build it (with the site's own CAs): requests alone would
# use certifi's list.
SYSTEM_CA_FILES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


def verdict(status):
    """What an HTTP status of the LRS means for a statement: DELIVERED, RETRY or DEAD.

    A redirect is retried: the statement was not delivered (a client that follows a 301, 302 or 303
    turns the POST into a GET without its body), and the admin's fix of XAPI_LRS_URL delivers it.
    """
    if 200 <= status < 300 or status == 409:
        return DELIVERED
    if status in RETRY_STATUSES or 300 <= status < 400 or status >= 500:
        return RETRY
    return DEAD


def redact(url):
    """URL with the password of its userinfo masked."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^/:@]*):[^/@]*@", r"\1:********@", url or "")


def excerpt(text, limit=300):
    """The start of an answer's body, on one line."""
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[:limit] + "..."


def dead_letter_record(statement, status, answer, task_id=None, node=None, attempts=1, now=None):
    """The JSON document kept in the dead-letter list for a refused statement."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return json.dumps({
        "statement": statement,
        "status": status,
        "answer": excerpt(answer, 1000),
        "failed_at": now.isoformat(timespec="seconds"),
        "task_id": task_id,
        "node": node,
        "attempts": attempts,
    }, sort_keys=True)


def statement_id(statement):
    """The statement's id, or '-'."""
    return str(statement.get("id", "-")) if isinstance(statement, dict) else "-"


def inflight_key(node, source):
    """The list where a node's message waits between the broker and the node's unacknowledged keys."""
    return "%s:%s:%s" % (INFLIGHT_PREFIX, node, source)


def node_keys(node, prefix=UNACKED_PREFIX):
    """The broker keys that hold the unacknowledged messages of one node (kombu's Redis QoS)."""
    return {
        "unacked_key": "%s:%s" % (prefix, node),
        "unacked_index_key": "%s_index:%s" % (prefix, node),
        "unacked_mutex_key": "%s_mutex:%s" % (prefix, node),
    }


def transport_options(visibility_timeout, node=None):
    """broker_transport_options for the worker: the visibility timeout, and the keys of the node
    named by NODE (default: the XAPI_WORKER_NODE environment variable, set by the node's unit)."""
    options = {"visibility_timeout": int(visibility_timeout)}
    node = node if node is not None else os.environ.get(NODE_ENV, "")
    if node:
        options.update(node_keys(node))
        # One list per queue (Pod sends no priority): what the transport's Channel moves from.
        options["priority_steps"] = [0]
    return options


class LRSTemporaryError(Exception):
    """The LRS answered a status that can change later: the task retries."""


class DeadLetterError(Exception):
    """A refused statement could not be kept in the dead-letter list: the task retries."""


# The delivery -------------------------------------------------------------------------------------
class PodSettingsError(RuntimeError):
    """Pod's task module gives no LRS to deliver to: the node does not start (or, should the module
    only be found when a statement runs, the statement is retried)."""


# Each thread's session: its kept-alive connection to the LRS serves the thread's next statements.
# A session is not shared between threads; the pid tells a forked pool process from its parent.
_LOCAL = threading.local()


def lrs_session():
    """This thread's requests.Session."""
    session = getattr(_LOCAL, "session", None)
    if session is None or getattr(_LOCAL, "pid", None) != os.getpid():
        import requests

        session = requests.Session()
        _LOCAL.session, _LOCAL.pid = session, os.getpid()
    return session


def system_ca_file(candidates=SYSTEM_CA_FILES):
    """The system's CA bundle (the one update-ca-certificates builds, with a site's own CAs), or None."""
    for path in candidates:
        if path and os.path.isfile(path):
            return path
    return None


def lrs_verify(validate_certs=True, ca_file=""):
    """What the session verifies the LRS's certificate with: False, a CA file, or True (requests' own list,
    when the system has no bundle). A CA file that is not there stops the node here, at start, rather than
    failing every statement later."""
    if not validate_certs:
        return False
    if ca_file:
        if not os.path.isfile(ca_file):
            raise PodSettingsError("the LRS's CA file %s (worker_lrs_ca_file) does not exist" % ca_file)
        return ca_file
    return system_ca_file() or True


def pod_settings(module):
    """(XAPI_LRS_URL, XAPI_LRS_LOGIN, XAPI_LRS_PWD) as Pod's task module read them from Pod's settings."""
    name = getattr(module, "__name__", POD_MODULE)
    url = getattr(module, "XAPI_LRS_URL", None)
    if not isinstance(url, str) or not url:
        raise PodSettingsError("%s has no XAPI_LRS_URL to deliver the statements to: set it in Pod's "
                               "settings_local.py (xapi_lrs_url)" % name)
    return url, getattr(module, "XAPI_LRS_LOGIN", "") or "", getattr(module, "XAPI_LRS_PWD", "") or ""


def pod_logger(module):
    """The logger of Pod's task module, where Pod logs "statement id: ..."."""
    log = getattr(module, "log", None)
    return log if isinstance(log, logging.Logger) else logging.getLogger(getattr(module, "__name__", "pod"))


def _attempts(request):
    """How many times the statement was refused before, plus this one (the replay header)."""
    headers = getattr(request, "headers", None) or {}
    previous = getattr(request, REPLAY_HEADER, None) or (
        headers.get(REPLAY_HEADER) if isinstance(headers, dict) else None)
    return int(previous) + 1 if previous else 1


def keep_dead_letter(task, statement, status, text, key=DEAD_LETTER_KEY):
    """Push a refused statement to the dead-letter list on the broker; DeadLetterError when it cannot."""
    request = getattr(task, "request", None)
    record = dead_letter_record(statement, status, text, getattr(request, "id", None),
                                getattr(request, "hostname", None), _attempts(request))
    try:
        _push_dead_letter(task.app, key, record)
    except Exception as error:  # the broker is unreachable or full: do not lose it
        raise DeadLetterError("statement %s refused by the LRS (HTTP %s) could not be kept in %s: %s"
                              % (statement_id(statement), status, key, error)) from error
    LOG.error("LRS refused statement %s (HTTP %s: %s): kept in the dead-letter list %s, not retried",
              statement_id(statement), status, excerpt(text, 200), key)


def post_statement(session, settings, statement, timeout=DEFAULT_TIMEOUT, verify=True):
    """POST one statement as Pod's task does (JSON, HTTP basic auth), with a timeout and no redirect followed."""
    url, login, password = settings
    try:
        return session.post(url, json=statement, auth=(login, password), timeout=timeout,
                            allow_redirects=False, verify=verify)
    except OSError as error:
        if isinstance(error, _request_errors()):
            raise
        # Not one of requests' errors (a CA file that went away), which the autoretry would not catch: the
        # statement would be acknowledged as failed, and lost.
        raise LRSTemporaryError("statement %s not sent: %s: %s" % (
            statement_id(statement), type(error).__name__, excerpt(str(error), 200))) from error


def _request_errors():
    try:
        from requests.exceptions import RequestException
    except ImportError:  # only the unit tests run without requests
        return ()
    return RequestException


def judge(answer, statement, url, on_dead_letter, pod_log):
    """What the LRS's ANSWER means for STATEMENT: returns when delivered or kept as a dead letter
    (ON_DEAD_LETTER(statement, status, text)), raises LRSTemporaryError when it must be retried."""
    status = answer.status_code
    outcome = verdict(status)
    if 300 <= status < 400:
        location = answer.headers.get("Location")
        target = redact(urljoin(url, location)) if location else "no Location"
        LOG.error("LRS redirected statement %s (HTTP %s) to %s: kept and retried, never sent there; set "
                  "XAPI_LRS_URL to that URL (xapi_lrs_url)", statement_id(statement), status, target)
        raise LRSTemporaryError("LRS redirected statement %s (HTTP %s) to %s: retried later" % (
            statement_id(statement), status, target))
    if outcome == RETRY:
        if status in (401, 403):
            LOG.error("LRS refused the worker's credentials (HTTP %s) for statement %s: kept and "
                      "retried; check XAPI_LRS_LOGIN and XAPI_LRS_PWD against the LRS's accounts",
                      status, statement_id(statement))
        raise LRSTemporaryError("LRS answered HTTP %s for statement %s: retried later (%s)" % (
            status, statement_id(statement), excerpt(answer.text, 200)))
    if outcome == DEAD:
        on_dead_letter(statement, status, answer.text)
        # Pod's own line for an answer other than 200.
        pod_log.error("Error during sending statement: %s", answer.text)
        return outcome
    if status == 200:
        pod_log.info("statement id: %s", answer.text)
    else:
        LOG.info("statement %s already stored or accepted by the LRS (HTTP %s): delivered",
                 statement_id(statement), status)
        pod_log.info("statement id: %s", json.dumps([statement_id(statement)]))
    return outcome


def deliver(run):
    """Around the run of Pod's task (task annotation "@run"): the worker's own delivery instead of Pod's POST.

    The same contract as Pod's task: the statement is posted as JSON to Pod's XAPI_LRS_URL with HTTP basic
    auth (XAPI_LRS_LOGIN, XAPI_LRS_PWD), read from Pod's task module (Pod's own settings), and Pod's logger
    says "statement id: <answer>"; then the LRS's answer is judged by verdict(). Pod's module is read, never
    changed. Its settings are checked when Celery binds the task, at the node's start: without an
    XAPI_LRS_URL the node does not start (PodSettingsError). The task's annotations set xapi_lrs_timeout,
    xapi_lrs_verify and xapi_dead_letter_key.
    """
    module_name = getattr(run, "__module__", None) or POD_MODULE
    if module_name in sys.modules:
        pod_settings(sys.modules[module_name])

    def delivery(task, statement):
        module = sys.modules.get(module_name)
        if module is None:
            raise PodSettingsError("the module of %s, %s, is not loaded: retried later" % (TASK_NAME, module_name))
        settings = pod_settings(module)
        verify = getattr(task, "xapi_lrs_verify", None)
        answer = post_statement(lrs_session(), settings, statement, getattr(task, "xapi_lrs_timeout", DEFAULT_TIMEOUT),
                                lrs_verify() if verify is None else verify)

        def dead_letter(refused, status, text):
            keep_dead_letter(task, refused, status, text, getattr(task, "xapi_dead_letter_key", DEAD_LETTER_KEY))

        if judge(answer, statement, settings[0], dead_letter, pod_logger(module)) == DELIVERED and is_probe(statement):
            keep_probe_answer(task.app, statement, answer)

    delivery.__doc__ = run.__doc__
    return delivery


def is_probe(statement):
    """Whether STATEMENT is a probe of esup_pod.xapi.xapi_check."""
    target = statement.get("object") if isinstance(statement, dict) else None
    return isinstance(target, dict) and target.get("id") == PROBE_ACTIVITY_ID


def probe_answer_record(answer):
    """The LRS's answer to a probe's POST as the check reads it: its status, and the ids it names (None
    when its body is not a list of ids)."""
    try:
        body = answer.json()
    except ValueError:
        body = None
    ids = body if isinstance(body, list) and all(isinstance(item, str) for item in body) else None
    return json.dumps({"status": answer.status_code, "ids": ids}, sort_keys=True)


def keep_probe_answer(app, statement, answer):
    """Keep the LRS's answer to the POST of a probe on the broker; the statement is delivered whatever happens."""
    key = PROBE_ANSWER_PREFIX + statement_id(statement)
    try:
        with _connect(app) as connection:
            connection.default_channel.client.set(key, probe_answer_record(answer), ex=PROBE_ANSWER_TTL)
    except Exception as error:  # the check's probe then times out, naming the missing answer
        LOG.warning("probe %s delivered, but the LRS's answer could not be kept in %s: %s",
                    statement_id(statement), key, error)


def _connect(app):
    """A connection to the broker that gives up after a few seconds instead of retrying forever."""
    connection = app.connection_for_write()
    connection.ensure_connection(max_retries=3, interval_start=1, interval_step=1, interval_max=2)
    return connection


def _push_dead_letter(app, key, record):
    with _connect(app) as connection:
        connection.default_channel.client.lpush(key, record)


def keep_when_retry_fails(retry):
    """Around Task.retry (task annotation "@retry"): when the retry cannot be published (the broker
    is down or full), Celery rejects the message without requeue, which drops the statement. Ask for
    a requeue instead: if the broker takes it, the statement is back in the queue; if not, the
    message stays in the node's unacknowledged keys, which are restored later."""
    from celery.exceptions import Reject

    def wrapper(self, *args, **kwargs):
        try:
            return retry(self, *args, **kwargs)
        except Reject as reject:
            if reject.requeue:
                raise
            LOG.error("the retry of a statement could not be published (%s): the message is given back "
                      "to the broker instead of being dropped", reject.reason)
            raise Reject(reject.reason, requeue=True) from reject
    return wrapper


def is_out_of_memory(error):
    """Whether a Redis error says the broker is at its maxmemory."""
    return type(error).__name__ == "OutOfMemoryError" or "maxmemory" in str(error)


# The node's transport -----------------------------------------------------------------------------
class UnsupportedBroker(RuntimeError):
    """The transport cannot keep its promise with this kombu or this Redis: the node does not start.

    Not one of kombu's connection errors, which Celery retries forever at start.
    """


def kombu_release():
    """The kombu release this process runs: "major.minor"."""
    return ".".join(kombu.__version__.split(".")[:2])


def refuse_unsupported_kombu():
    """Raise UnsupportedBroker unless this kombu is one whose Redis Channel the transport overrides."""
    release = kombu_release()
    if release not in SUPPORTED_KOMBU:
        raise UnsupportedBroker(
            "kombu %s is not a release whose Redis transport xapi_delivery.Transport supports (%s): pin kombu in "
            "worker_pip_constraints to one of them" % (kombu.__version__, ", ".join(SUPPORTED_KOMBU)))


def has_command(client, name):
    """Whether the Redis server knows the command NAME (redis-py cannot parse COMMAND INFO's answer for a
    command the server lacks)."""
    pool = client.connection_pool
    connection = pool.get_connection("COMMAND")
    try:
        connection.send_command("COMMAND", "INFO", name)
        answer = connection.read_response()
    finally:
        pool.release(connection)
    return bool(answer and answer[0])


def refuse_without_blmove(client):
    """Raise UnsupportedBroker when the broker has no BLMOVE (Redis before 6.2)."""
    if not has_command(client, "BLMOVE"):
        version = client.info("server").get("redis_version", "?")
        raise UnsupportedBroker(
            "the broker (Redis %s) has no BLMOVE command, which xapi_delivery.Transport needs to take messages "
            "without losing them: use Redis 6.2 or later" % version)


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS, which lets a node start and drain a broker at its memory limit.

    kombu takes a lock (SET NX) before it restores old unacknowledged messages, at start and every
    100 s; a broker at maxmemory refuses it, and kombu's node dies ("Unrecoverable error") instead of
    taking messages, which is what frees memory. This skips that round instead; the next one
    restores them.
    """

    def restore_visible(self, *args, **kwargs):
        try:
            return super().restore_visible(*args, **kwargs)
        except Exception as error:  # pylint: disable=broad-except
            if not is_out_of_memory(error):
                raise
            LOG.warning("the broker is at its memory limit: old unacknowledged messages are restored later")
            return None


class Channel(kombu_redis.Channel):
    """kombu's Redis Channel, which takes each message with BLMOVE into the node's in-flight list.

    kombu pops a message (BRPOP) and records it as unacknowledged in a second command. The reply of
    BRPOP can wait in the socket while the node does other work: a node killed then loses the
    messages Redis already gave it. Here Redis moves the message atomically into the list
    inflight:<node>:<queue>; once kombu has recorded it, the node removes it from there; and
    restore_unacked() puts back whatever a dead node left in it.
    """

    QoS = QoS
    # (queue's list, in-flight list) of the BLMOVE in progress; None while kombu's BRPOP is.
    xapi_move = None
    xapi_client = None

    def __init__(self, *args, **kwargs):
        refuse_unsupported_kombu()
        super().__init__(*args, **kwargs)
        # The node this process runs (its unit's environment), read once per channel, not at every poll.
        self.xapi_node = os.environ.get(NODE_ENV, "")
        if self.xapi_node:
            try:
                refuse_without_blmove(self.client)
            except Exception:
                self.close()
                raise

    def _brpop_start(self, timeout=1):
        self.xapi_move = None
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return None
        keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]
        # No node to own an in-flight list (XAPI_WORKER_NODE unset), or several lists: kombu's own BRPOP.
        if not self.xapi_node or len(keys) != 1 or self.global_keyprefix:
            return super()._brpop_start(timeout)
        self.xapi_move = (keys[0], inflight_key(self.xapi_node, keys[0]))
        self._in_poll = self.client.connection
        self.client.connection.send_command("BLMOVE", keys[0], self.xapi_move[1], "RIGHT", "LEFT", timeout or 0)
        return None

    def _brpop_read(self, **options):
        move = self.xapi_move
        if not move:
            return super()._brpop_read(**options)
        source, inflight = move
        try:
            try:
                item = self.client.parse_response(self.client.connection, "BLMOVE", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if not item:
                raise kombu_redis.Empty()
            dest = bytes_to_str(source).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            self.connection._deliver(loads(bytes_to_str(item)), dest)  # pylint: disable=protected-access
            # Recorded as unacknowledged by now: no longer in flight. One client per channel, on its
            # connection pool (only this event loop's thread reads here), not one per message.
            if self.xapi_client is None:
                self.xapi_client = self._create_client()
            self.xapi_client.lrem(inflight, 1, item)
            return True
        finally:
            self._in_poll = None


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the Channel and QoS above, selected by name in the worker's Celery
    config (broker_transport = "xapi_delivery:Transport"); the broker URL stays redis://."""

    Channel = Channel


# The loggers that write a line for every statement delivered, at INFO: Celery's "Task ... received"
# (celery.worker.strategy) and Pod's "statement id: ..." (pod.xapi.xapi_tasks), quieted to their
# warnings; and Celery's "Task ... succeeded" (celery.app.trace), whose other lines (a retry, at
# INFO; a failure) stay.
QUIET_LOGGERS = ("celery.worker.strategy", POD_MODULE)
TRACE_LOGGER = "celery.app.trace"


class NoSuccessLine(logging.Filter):
    """Drops Celery's "Task ... succeeded" line, and only that one."""

    def __init__(self, success_format):
        super().__init__()
        self.success_format = success_format

    def filter(self, record):
        return record.msg != self.success_format


def quiet_statement_logs():
    """Keep the lines of each delivered statement out of the node's log.

    They cost the node about a fifth of its CPU time (measured on the lab: 3.0 against 2.4 ms of CPU
    per statement) and fill the log at the LRS's rate in a burst. Everything else is still logged:
    the node's start and connection, each retry (Celery's "Task ... retry: Retry in ...", at
    INFO), every warning and error.
    """
    from celery import signals
    from celery.app import trace

    no_success = NoSuccessLine(trace.LOG_SUCCESS)

    def quiet(**_):
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        trace_logger = logging.getLogger(TRACE_LOGGER)
        if no_success not in trace_logger.filters:
            trace_logger.addFilter(no_success)

    signals.after_setup_logger.connect(quiet, weak=False)
    quiet()
    return quiet


def prompt_refill(interval=0.02):
    """Wake the node's event loop every INTERVAL seconds, so that a slot freed in a thread is filled at once.

    With the threads pool, a task acknowledges its message in its own thread; the node's event loop
    in the main thread, which stopped taking messages when its prefetch window was full, sleeps in
    its poll until its next timer or socket event (up to a second and more) before it takes the next
    one. Measured on the lab: 40 statements/s with 32 threads and a window of 32, against an LRS that
    takes 170. A repeating timer on the loop (the event loop's own hub) bounds that sleep. Not needed
    with prefork, whose results wake the loop through their pipes.
    """
    from celery import signals

    def on_ready(sender=None, **_):
        hub = getattr(sender, "hub", None)
        if hub is None:
            return
        hub.call_repeatedly(interval, _noop)
        LOG.info("the event loop wakes every %.0f ms to fill freed slots", interval * 1000)

    signals.worker_ready.connect(on_ready, weak=False)
    return on_ready


def _noop():
    return None


# restore_unacked ---------------------------------------------------------------------------------
def _restore_tag(channel, client, hash_key, index_key, tag):
    """Move one unacknowledged message back to its queue, atomically (as kombu's restore_by_tag)."""
    def transaction(pipe):
        raw = pipe.hget(hash_key, tag)
        pipe.multi()
        pipe.zrem(index_key, tag)
        pipe.hdel(hash_key, tag)
        if raw:
            message, exchange, routing_key = json.loads(raw)
            channel._do_restore_message(message, exchange, routing_key, pipe, False)  # pylint: disable=protected-access
    client.transaction(transaction, hash_key)


def restore_unacked(channel, node, visibility_timeout, now=None):
    """Put back in the queue every message that NODE received and never acknowledged, and the
    messages of any other node (or of kombu's shared key) older than VISIBILITY_TIMEOUT.

    Run before the node consumes: what its own keys hold belongs to a run that is over. Returns
    {key: count restored}.
    """
    now = time.time() if now is None else now
    restored = {}
    client = channel.client
    own = node_keys(node)
    keys = [(own["unacked_key"], own["unacked_index_key"], None)]
    for name in client.scan_iter(match=UNACKED_PREFIX + ":*", count=100):
        name = name.decode() if isinstance(name, bytes) else name
        if name != own["unacked_key"]:
            other = node_keys(name.split(":", 1)[1])
            keys.append((name, other["unacked_index_key"], now - visibility_timeout))
    keys.append((UNACKED_PREFIX, UNACKED_PREFIX + "_index", now - visibility_timeout))
    # Messages moved out of a queue by a node that died before recording them (the transport's Channel),
    # every node's: a live node's one message in flight comes back as a duplicate at worst.
    for name in client.scan_iter(match=INFLIGHT_PREFIX + ":*", count=100):
        name = name.decode() if isinstance(name, bytes) else name
        source = name.split(":", 2)[2]
        moved = 0
        while client.lmove(name, source, "RIGHT", "RIGHT") is not None:
            moved += 1
        if moved:
            restored[name] = moved
    for hash_key, index_key, ceiling in keys:
        if ceiling is None:
            tags = client.hkeys(hash_key)
        else:
            tags = client.zrangebyscore(index_key, 0, ceiling)
        for tag in tags:
            _restore_tag(channel, client, hash_key, index_key, tag)
        if tags:
            restored[hash_key] = len(tags)
    return restored


def memory_full(client):
    """(used, limit) when the broker is at its maxmemory under noeviction, else None: under another policy
    Redis evicts at its limit instead of refusing writes, and a site's cache sits there for good."""
    info = client.info("memory")
    used, limit = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
    full = limit and used >= limit and info.get("maxmemory_policy", "noeviction") == "noeviction"
    return (used, limit) if full else None


def before_start(app, node):
    """What the node's unit runs before the node starts (ExecStartPre). Returns the exit status.

    1 (the node does not start; systemd tries again) while the broker is at its memory limit: a node
    that took messages then could not record them as unacknowledged, and would lose them. 1 also
    when the transport refuses this kombu or this broker (UnsupportedBroker), which the node would too.
    0 otherwise, once the node's unacknowledged messages are back in the queue; also when the broker
    cannot be reached (the node itself waits for it).
    """
    timeout = (app.conf.broker_transport_options or {}).get("visibility_timeout", 3600)
    try:
        with _connect(app) as connection:
            full = memory_full(connection.default_channel.client)
            if full:
                print("the broker is at its memory limit (%d of %d bytes used): %s waits before it takes any "
                      "statement; give the broker room (broker_maxmemory; docs/delivery.md)" % (full[0], full[1], node))
                return 1
            restored = restore_unacked(connection.default_channel, node, timeout)
    except UnsupportedBroker as error:
        print("%s does not start: %s" % (node, error))
        return 1
    except Exception as error:  # pylint: disable=broad-except
        print("could not restore the unacknowledged messages of %s now (%s: %s): the node starts, and the broker "
              "gives them back after its visibility timeout" % (node, type(error).__name__, excerpt(str(error), 200)))
        return 0
    print("restored %d unacknowledged message(s) for %s%s" % (
        sum(restored.values()), node, "".join(" (%s: %d)" % item for item in sorted(restored.items()))))
    return 0


def pending(client, queue=QUEUE):
    """What the broker holds that no LRS has yet: {"queued": messages waiting in QUEUE, "unacked": taken
    by a node and not acknowledged (retries waiting in a node included), "inflight": moved by a node
    and not yet recorded}. The dead-letter list is not pending: the LRS refused those."""
    counts = {"queued": int(client.llen(queue)), "unacked": 0, "inflight": 0}
    for name in client.scan_iter(match=UNACKED_PREFIX + "*", count=100):
        name = name.decode() if isinstance(name, bytes) else name
        if name == UNACKED_PREFIX or name.startswith(UNACKED_PREFIX + ":"):
            counts["unacked"] += int(client.hlen(name))
    for name in client.scan_iter(match=INFLIGHT_PREFIX + ":*", count=100):
        counts["inflight"] += int(client.llen(name))
    return counts


# The admin command -----------------------------------------------------------------------------
def _entries(client, key):
    entries = []
    for raw in client.lrange(key, 0, -1):
        try:
            entries.append((raw, json.loads(raw)))
        except ValueError:
            entries.append((raw, {"statement": None, "status": "?", "answer": "not JSON"}))
    return entries


def _task():
    from pod.xapi.xapi_tasks import send_xapi_statement_task  # pylint: disable=import-error
    return send_xapi_statement_task


def main(argv=None):
    """list | replay | drop the dead letters; pending; restore-unacked NODE (run by the node's unit)."""
    parser = argparse.ArgumentParser(prog=os.environ.get("XAPI_DELIVERY_PROG"),
                                     description="Dead letters and unacknowledged statements of the xAPI worker.")
    parser.add_argument("--key", default=DEAD_LETTER_KEY, help="the dead-letter list (default: %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="list the statements the LRS refused")
    listing.add_argument("--json", action="store_true", help="one JSON document per line")
    commands.add_parser("count", help="print how many statements the list holds")
    replay = commands.add_parser("replay", help="enqueue refused statements again through Pod's task")
    drop = commands.add_parser("drop", help="remove refused statements for good")
    for command in (replay, drop):
        group = command.add_mutually_exclusive_group(required=True)
        group.add_argument("--all", action="store_true", help="every statement of the list")
        group.add_argument("ids", nargs="*", default=[], metavar="STATEMENT_ID")
    restore = commands.add_parser("restore-unacked", help="give back what a node received and never acknowledged")
    restore.add_argument("node", help="the node's name, <node>@<hostname>")
    commands.add_parser("pending", help="print, as JSON, the statements queued, unacknowledged and in flight")
    args = parser.parse_args(argv)

    task = _task()
    app = task.app
    if args.command == "restore-unacked":
        return before_start(app, args.node)

    with _connect(app) as connection:
        client = connection.default_channel.client
        if args.command == "pending":
            print(json.dumps(pending(client), sort_keys=True))
            return 0
        entries = _entries(client, args.key)
        if args.command == "count":
            print(len(entries))
            return 0
        if args.command == "list":
            for _raw, entry in reversed(entries):
                if args.json:
                    print(json.dumps(entry, sort_keys=True))
                else:
                    print("%s  HTTP %s  statement %s  attempts %s  %s" % (
                        entry.get("failed_at", "?"), entry.get("status"), statement_id(entry.get("statement")),
                        entry.get("attempts", 1), excerpt(entry.get("answer", ""), 160)))
            print("%d statement(s) in %s" % (len(entries), args.key), file=sys.stderr)
            return 0
        wanted = set(args.ids)
        chosen = [(raw, entry) for raw, entry in entries
                  if args.all or statement_id(entry.get("statement")) in wanted]
        missing = wanted - {statement_id(entry.get("statement")) for _raw, entry in chosen}
        for raw, entry in reversed(chosen):
            if args.command == "replay":
                if not isinstance(entry.get("statement"), dict):
                    print("skipped an entry that holds no statement", file=sys.stderr)
                    continue
                task.apply_async((entry["statement"],),
                                 headers={REPLAY_HEADER: entry.get("attempts", 1)})
            client.lrem(args.key, 1, raw)
            print("%s %s" % ("replayed" if args.command == "replay" else "dropped",
                             statement_id(entry.get("statement"))))
        for statement in sorted(missing):
            print("not in %s: %s" % (args.key, statement), file=sys.stderr)
        return 1 if missing else 0


if __name__ == "__main__":
    # Run as `python -m xapi_delivery`: use the module that the Celery config imports, not a copy.
    import xapi_delivery  # pylint: disable=import-self

    logging.basicConfig(level=logging.INFO)
    sys.exit(xapi_delivery.main())
