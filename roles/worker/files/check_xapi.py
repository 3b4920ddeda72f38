# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The xAPI pipeline's checks as a monitoring plugin (Nagios, Icinga, Centreon, Naemon).

Installed by the role esup_pod.xapi.worker next to the package xapi_check_lib, which holds copies of
the collection's plugins/module_utils/_xapi_check.py and _xapi_check_io.py: the very checks of the
module esup_pod.xapi.xapi_check (broker, consumers, backlog, dead letters, LRS, credentials, and
the probe on demand), with the inputs read the same way (Pod's settings_local.py of the worker).
Run through the wrapper <worker_service_name>-check, as the worker's user, with the worker's
virtualenv python. It prints one line, "XAPI STATE - text | perfdata" (more with --verbose), and
exits 0 (OK), 1 (WARNING), 2 (CRITICAL) or 3 (UNKNOWN). No secret is ever printed.

The files that it reads (Pod's settings, the LRS's CA file) and whether it verifies the LRS's certificate
come from check.json, which the role installs next to it, never from its options: a monitoring agent that
may run it as the worker's user must not choose what it reads as that user.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import logging
import os
import socket
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
LIBRARY = "xapi_check_lib"
# Root's, written by the role: {"settings": PATH, "validate_certs": BOOL, "lrs_ca_file": PATH or ""}.
CONFIG = os.path.join(HERE, "check.json")
UNKNOWN = 3


class Usage(Exception):
    """A bad option: UNKNOWN, as the plugin guidelines want (argparse would exit 2, CRITICAL)."""


class ConfigError(Exception):
    """check.json is missing or wrong: UNKNOWN."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise Usage("%s: %s" % (self.prog, message))


def parser(logic):
    p = Parser(
        prog=os.environ.get("XAPI_CHECK_PROG") or "xapi-check",
        description="Check the xAPI pipeline (broker, its memory, consumers, backlog, dead letters, LRS) as a Nagios "
                    "plugin: one line with performance data; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. "
                    "Pod's settings and the LRS's CA come from %s, written by the role." % CONFIG,
    )
    p.add_argument("--queue", default=logic.QUEUE, help="Celery queue of Pod's xAPI task (default: %(default)s)")
    p.add_argument("--dead-letter-key", default=logic.DEAD_LETTER_KEY, metavar="KEY",
                   help="Redis list of the statements the LRS refused (default: %(default)s)")
    p.add_argument("--nodes", default="", metavar="NAME[,NAME]",
                   help="this host's worker nodes, which must consume the queue; '@<hostname>' is added to a "
                        "name without '@'; '' for none")
    p.add_argument("--min-consumers", type=int, default=1, metavar="N",
                   help="CRITICAL when fewer nodes consume the queue in the cluster (default: %(default)s)")
    p.add_argument("--warning-backlog", type=int, default=100, metavar="N",
                   help="WARNING when more messages wait in the queue; negative: no limit (default: %(default)s)")
    p.add_argument("--critical-backlog", type=int, default=1000, metavar="N",
                   help="CRITICAL when more messages wait in the queue; negative: no limit (default: %(default)s)")
    p.add_argument("--warning-dead-letters", type=int, default=0, metavar="N",
                   help="WARNING when more statements wait in the dead-letter list; negative: no limit "
                        "(default: %(default)s)")
    p.add_argument("--critical-dead-letters", type=int, default=-1, metavar="N",
                   help="CRITICAL when more statements wait in the dead-letter list; negative: no limit "
                        "(default: %(default)s)")
    p.add_argument("--warning-lrs-latency", type=float, default=1.0, metavar="SECONDS",
                   help="WARNING when the LRS takes longer to answer; negative: no limit (default: %(default)s)")
    p.add_argument("--critical-lrs-latency", type=float, default=5.0, metavar="SECONDS",
                   help="CRITICAL when the LRS takes longer to answer; negative: no limit (default: %(default)s)")
    p.add_argument("--warning-broker-memory", type=float, default=80.0, metavar="PERCENT",
                   help="WARNING when the broker's used memory reaches this share of its maxmemory, under noeviction "
                        "(a broker that evicts is never full); negative: no limit (default: %(default)s)")
    p.add_argument("--critical-broker-memory", type=float, default=95.0, metavar="PERCENT",
                   help="CRITICAL when the broker's used memory reaches this share of its maxmemory, under noeviction; "
                        "negative: no limit (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                   help="for each network operation (default: %(default)s)")
    p.add_argument("--inspect-timeout", type=float, default=1.0, metavar="SECONDS",
                   help="how long the worker nodes may take to say which queues they consume (default: %(default)s)")
    p.add_argument("--consumer-retries", type=int, default=0, metavar="N",
                   help="more looks for nodes that are starting; none, so that the agent gets its answer in time "
                        "(default: %(default)s)")
    p.add_argument("--consumer-delay", type=float, default=2.0, metavar="SECONDS",
                   help="between two looks (default: %(default)s)")
    p.add_argument("--probe", action=argparse.BooleanOptionalAction, default=False,
                   help="also send one probe statement through Pod's task and wait for the LRS to store it "
                        "(it adds a statement to the LRS; default: no)")
    p.add_argument("--probe-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="how long the LRS may take to store the probe (default: %(default)s)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="after the first line, one line a link (Nagios' long output)")
    return p


def load_library():
    """The collection's check logic (_xapi_check) and checks (_xapi_check_io), installed next to this file."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    logic = importlib.import_module(LIBRARY + "._xapi_check")
    checks_io = importlib.import_module(LIBRARY + "._xapi_check_io")
    return logic, checks_io


def read_config(path=None):
    """The installed configuration: the settings file, validate_certs and the LRS's CA file."""
    path = path or CONFIG
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ConfigError("cannot read the check's configuration %s: %s: %s" % (path, type(exc).__name__, exc))
    if not (isinstance(config, dict) and isinstance(config.get("settings"), str) and config["settings"].startswith("/")
            and isinstance(config.get("validate_certs"), bool) and isinstance(config.get("lrs_ca_file", ""), str)):
        raise ConfigError("the check's configuration %s is not what the role writes: run the worker role again" % path)
    return config


def own_nodes(names, hostname=None):
    """Node names as Celery names them: 'xapi' -> 'xapi@<hostname>'; empty names are dropped."""
    hostname = hostname or socket.gethostname()
    nodes = []
    for name in (n.strip() for n in names.split(",")):
        if name:
            nodes.append(name if "@" in name else "%s@%s" % (name, hostname))
    return nodes


def check_params(args, config):
    """The options of the module's checks, from the command's and the installed configuration's: the critical
    limits are the checks' own."""
    return {
        "broker_url": None, "lrs_url": None, "lrs_login": None, "lrs_password": None,
        "settings_path": config["settings"],
        "queue": args.queue,
        "min_consumers": args.min_consumers,
        "nodes": own_nodes(args.nodes),
        "consumer_retries": args.consumer_retries,
        "consumer_delay": args.consumer_delay,
        "max_backlog": args.critical_backlog,
        "dead_letter_key": args.dead_letter_key,
        "max_dead_letters": args.critical_dead_letters,
        "broker_memory_warning": args.warning_broker_memory,
        "broker_memory_critical": args.critical_broker_memory,
        "probe": args.probe,
        "probe_timeout": args.probe_timeout,
        "timeout": args.timeout,
        "inspect_timeout": args.inspect_timeout,
        "validate_certs": config["validate_certs"],
        "lrs_ca_file": config.get("lrs_ca_file") or None,
    }


def limits_of(args):
    return {
        "min_consumers": args.min_consumers,
        "warning_backlog": args.warning_backlog,
        "critical_backlog": args.critical_backlog,
        "warning_dead_letters": args.warning_dead_letters,
        "critical_dead_letters": args.critical_dead_letters,
        "dead_letter_key": args.dead_letter_key,
        "warning_lrs_latency": args.warning_lrs_latency,
        "critical_lrs_latency": args.critical_lrs_latency,
        "warning_broker_memory": args.warning_broker_memory,
        "critical_broker_memory": args.critical_broker_memory,
        "probe_timeout": args.probe_timeout if args.probe else None,
    }


@contextlib.contextmanager
def quiet():
    """Nothing the libraries print, warn or log reaches the plugin's output (it could hold a URL)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.CRITICAL)
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                yield
        finally:
            logging.disable(logging.NOTSET)


def run(argv, logic, checks_io, secrets):
    """(state, lines) of one check; SECRETS gets the secrets as soon as they are read, for main() to
    mask them in whatever is printed. main() turns every exception into UNKNOWN."""
    args = parser(logic).parse_args(argv)
    missing = [found[0] for found in checks_io.missing_libraries()]
    if missing:
        state, line = logic.unknown_report(
            "python library %s missing: run it with the worker's virtualenv python (through the wrapper)"
            % ", ".join(missing))
        return state, [line]
    try:
        params, found = checks_io.prepare(check_params(args, read_config()))[:2]
    except (ConfigError, checks_io.CheckInputError) as exc:
        state, line = logic.unknown_report(str(exc))
        return state, [line]
    secrets.extend(found)
    with quiet():
        checker = checks_io.Checker(params, secrets)
        checks = checker.run()
    state, line = logic.nagios_report(checker.result, checks, limits_of(args))
    lines = [line]
    if args.verbose:
        lines += ["%-12s %-7s %s" % (c["name"], c["status"], c["msg"]) for c in checks]
        lines += ["%-12s %s" % ("", c["detail"]) for c in checks if c["status"] == "failed" and c["detail"]]
    return state, lines


def main(argv=None, out=None):
    out = out or sys.stdout
    try:
        logic, checks_io = load_library()
    except Exception as exc:  # pylint: disable=broad-except
        # Nothing was read yet: no secret can be in it.
        out.write("XAPI UNKNOWN - cannot load the check's library from %s: %s: %s\n" % (HERE, type(exc).__name__, exc))
        return UNKNOWN
    secrets = []
    try:
        state, lines = run(argv, logic, checks_io, secrets)
    except Usage as exc:
        state, line = logic.unknown_report(str(exc))
        lines = [line]
    except SystemExit as exc:  # --help
        return exc.code or 0
    except BaseException as exc:  # pylint: disable=broad-except
        # Anything no check foresaw, a KeyboardInterrupt included: one line, URLs' passwords masked.
        state, line = logic.unknown_report("the check failed: %s: %s" % (type(exc).__name__, exc))
        lines = [line]
    for line in lines:
        out.write(logic.redact_text(line, secrets).replace("\n", " ") + "\n")
    out.flush()
    return state


if __name__ == "__main__":
    sys.exit(main())
