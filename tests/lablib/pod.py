"""Pod's side of the lab: enqueue statements exactly as Pod's view does.

Pod's view calls ``send_xapi_statement_task.delay(statement)``. enqueue() runs that call in the
Pod checkout and virtualenv of a lab host (the frontal by default), as the pod user, with a
statement shaped like Pod's (video verbs, an Activity whose id is the video's URL, video
extensions), and returns the ids it enqueued.
"""

import json
import shlex
import subprocess

from . import lab

# The site's Pod (the frontal's checkout and virtualenv, as the pod user).
POD_DIR = "/usr/local/django_projects/podv4"
POD_PYTHON = "/home/pod/.virtualenvs/django_pod4/bin/python"
# The xAPI worker's own Pod on the encoding hosts (esup_pod.xapi.worker's defaults).
WORKER_USER = "pod-xapi"
WORKER_DIR = "/opt/esup-pod-xapi/Esup-Pod"
WORKER_PYTHON = "/opt/esup-pod-xapi/venv/bin/python"


def pod_of(via):
    """(user, checkout, python) of the Pod that reaches the xAPI broker on the lab host VIA: the site's
    on the frontal (and on a host that is both frontal and encoding host), the worker's own elsewhere."""
    if via in ("frontal", "allinone"):
        return "pod", POD_DIR, POD_PYTHON
    return WORKER_USER, WORKER_DIR, WORKER_PYTHON


# A statement shaped like the ones Pod's view sends (video verbs, an Activity whose id is the video's
# URL, video extensions); shared by every script that enqueues in the lab.
STATEMENT = r"""
import uuid

def make_statement(number, tag):
    return {
        "id": str(uuid.uuid4()),
        "actor": {"name": "viewer-%d" % number, "mbox": "mailto:viewer-%d@example.org" % number},
        "verb": {"id": "https://w3id.org/xapi/video/verbs/played", "display": {"en-US": "played"}},
        "object": {
            "objectType": "Activity",
            "id": "https://pod.example.org/video/%04d-%s/" % (number, tag),
            "definition": {"type": "https://w3id.org/xapi/video/activity-type/video",
                           "name": {"en-US": "video %d" % number}},
        },
        "context": {"extensions": {"https://w3id.org/xapi/video/extensions/session-id": tag}},
        "result": {"extensions": {"https://w3id.org/xapi/video/extensions/time": "%d.345" % number}},
    }
"""

_REMOTE = STATEMENT + r"""
import json, sys
from pod.xapi.xapi_tasks import send_xapi_statement_task

count, tag = int(sys.argv[1]), sys.argv[2]
ids = []
for number in range(count):
    statement = make_statement(number, tag)
    send_xapi_statement_task.delay(statement)
    ids.append(statement["id"])
print(json.dumps(ids))
"""


def run_in_pod(via, script, *args, **popen):
    """Start SCRIPT (python source, through stdin) in the Pod of the lab host VIA (pod_of), with ARGS;
    returns the Popen, text mode, stdin already written and closed."""
    user, checkout, python = pod_of(via)
    process = subprocess.Popen(
        ["podman", "exec", "-i", "-u", user, "-w", checkout, lab.container(via), python, "-", *map(str, args)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    process.stdin.write(script)
    process.stdin.close()
    process.stdin = None  # written: communicate() must not touch it again
    return process


def enqueue(count, tag="test", via="frontal"):
    """Enqueue COUNT statements on the lab host VIA through Pod's task; returns their ids."""
    process = run_in_pod(via, _REMOTE, count, tag)
    out, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError("enqueue on %s failed: %s" % (via, err.strip()[-2000:]))
    return json.loads(out.strip().splitlines()[-1])


_SETTING = r"""
import importlib, sys
print(getattr(importlib.import_module("pod.custom.settings_local"), sys.argv[1]))
"""


def site_setting(name, via="frontal"):
    """The value of NAME as Pod reads it, importing pod.custom.settings_local on the lab host VIA, as Python prints it."""
    process = run_in_pod(via, _SETTING, name)
    out, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError("reading %s on %s failed: %s" % (name, via, err.strip()[-2000:]))
    return out.strip()


# The site's web service on the frontal, and the port of the lab's stand-in for it (tests/roles/lab_pod_site).
WEB_SERVICE = "uwsgi-pod"
WEB_PORT = 8000


def web_service_state(via="frontal"):
    """(main PID, time at which it last read its settings) of the site's web service on VIA: a reload keeps the
    PID and moves the time, a restart changes both."""
    host = lab.host(via)
    pid = host.run("systemctl show -p MainPID --value %s" % WEB_SERVICE).stdout.strip()
    assert pid not in ("", "0"), "%s is not running on %s" % (WEB_SERVICE, via)
    loaded = host.check_output(
        "python3 -c 'import urllib.request; print(urllib.request.urlopen(\"http://127.0.0.1:%d/loaded\", timeout=10).read().decode())'"
        % WEB_PORT)
    return int(pid), float(loaded)


def inspect(what, via="encoding", timeout=5, json_output=False):
    """`celery -A pod.xapi.xapi_tasks inspect WHAT` in the Pod of the lab host VIA (pod_of), through
    the broker, as Pod's app sees the workers; returns testinfra's result. By default on the encoding
    host, with the workers' broker user: the frontal's may only enqueue, Celery's remote control is refused to it."""
    user, checkout, python = pod_of(via)
    command = "%s/bin/celery -A pod.xapi.xapi_tasks inspect %s --timeout %s%s" % (
        python.rsplit("/bin/", 1)[0], what, timeout, " --json" if json_output else "")
    return lab.host(via).run("cd %s && su %s -s /bin/sh -c %s" % (checkout, user, shlex.quote(command)))


def inspect_json(what, via="encoding", timeout=5):
    """inspect() with --json: {node: answer}; fails when celery fails."""
    out = inspect(what, via, timeout, json_output=True)
    assert out.rc == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])
