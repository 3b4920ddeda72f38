"""The test lab's hosts, by inventory name, and the lab inventory's variables.

The lab is the one tests/lab/labctl made with the name in the LAB_NAME environment variable
(default: xapi-lab). Its containers are named <LAB_NAME>-<host>.
"""

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import testinfra

REPO_ROOT = Path(__file__).resolve().parents[2]
INVENTORY = REPO_ROOT / "inventory" / "lab"
DEFAULT_LAB_NAME = "xapi-lab"

# Podman needs the lab's runtime fixes (see tests/lab/containers.conf).
os.environ.setdefault("CONTAINERS_CONF", str(REPO_ROOT / "tests" / "lab" / "containers.conf"))


def lab_name():
    """The lab's name: LAB_NAME, else xapi-lab."""
    return os.environ.get("LAB_NAME") or DEFAULT_LAB_NAME


def container(name):
    """The podman container of the inventory host NAME."""
    return "%s-%s" % (lab_name(), name)


def host(name):
    """A testinfra host for the inventory host NAME (frontal, encoding, lrs)."""
    return testinfra.get_host("podman://" + container(name))


def _tool(name):
    """An Ansible tool from the interpreter's own virtualenv first, else from PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise RuntimeError("%s not found: run the tests from the project's virtualenv" % name)
    return found


def _run_ansible(args):
    env = dict(os.environ, LAB_NAME=lab_name(), ANSIBLE_NOCOLOR="1")
    # The scenario's ANSIBLE_LOG_PATH records the converge: what the tests read is not part of it.
    env.pop("ANSIBLE_LOG_PATH", None)
    done = subprocess.run(args, cwd=str(REPO_ROOT), env=env, check=False, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if done.returncode != 0:
        raise RuntimeError("%s failed (rc=%s): %s" % (args[0], done.returncode, done.stderr.strip()))
    return done.stdout


@functools.lru_cache(maxsize=None)
def host_vars(name):
    """The inventory variables of the host NAME, as ansible-inventory shows them (not templated)."""
    return json.loads(_run_ansible([_tool("ansible-inventory"), "-i", str(INVENTORY), "--host", name]))


@functools.lru_cache(maxsize=None)
def var(name, variable):
    """The value of an inventory variable for the host NAME, templated when it holds a template."""
    value = host_vars(name)[variable]
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        out = _run_ansible([_tool("ansible"), "-i", str(INVENTORY), name, "-o", "-c", "local",
                            "-m", "ansible.builtin.debug", "-a", "var=" + variable])
        # "lrs | SUCCESS => {...}"
        value = json.loads(out.split("=>", 1)[1])[variable]
    return value


def ansible(pattern, *args):
    """An ad-hoc `ansible PATTERN ARGS...` against the lab inventory (its SSH connection); its output."""
    return _run_ansible([_tool("ansible"), "-i", str(INVENTORY), pattern, *args])


def run_playbook(*args, inventories=("inventory/lab",)):
    """A real ansible-playbook run against the lab from the repository root, with the project's
    ansible.cfg and outside the scenario's log; returns (rc, stdout and stderr)."""
    env = dict(os.environ, LAB_NAME=lab_name(), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"))
    env.pop("ANSIBLE_LOG_PATH", None)
    command = [_tool("ansible-playbook")]
    for inventory in inventories:
        command += ["-i", inventory]
    done = subprocess.run(command + list(args), cwd=str(REPO_ROOT), env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    return done.returncode, done.stdout


def changed_by_host(output):
    """{host: changed count} from the PLAY RECAP of a playbook's OUTPUT."""
    return {host: int(changed) for host, changed in re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", output, re.M)}


def until(what, probe, timeout, interval=0.5):
    """Poll PROBE until it returns something true, and return that; fail naming WHAT after TIMEOUT
    seconds. The tests wait for real conditions this way, never for a fixed time."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, "%s: not within %s s" % (what, timeout)
        time.sleep(interval)


_BROKER_PASSWORDS = {"admin": "xapi_broker_password", "frontal": "xapi_broker_frontal_password",
                     "worker": "xapi_broker_worker_password"}


def broker_user(job):
    """The name of the broker's user for JOB (admin, frontal or worker): the inventory's, else the role's default."""
    name = "xapi_broker_%s_user" % job
    return var("frontal", name) if name in host_vars("frontal") else "xapi-" + job


def broker_password(job):
    """The password of the broker's user for JOB (admin, frontal or worker), from the inventory."""
    return var("frontal", _BROKER_PASSWORDS[job])


def broker_secrets():
    """Every broker password planted in the lab's inventory."""
    return [broker_password(job) for job in _BROKER_PASSWORDS]


def broker_cli(job="admin"):
    """The start of a redis-cli command line on a lab host, as the broker's user for JOB, over TLS (the lab's
    broker has clients on other hosts, so it serves TLS only; the lab CA is in every host's system store)."""
    password, user = shlex.quote(broker_password(job)), shlex.quote(broker_user(job))
    return "REDISCLI_AUTH=%s redis-cli --tls --no-auth-warning --user %s" % (password, user)
