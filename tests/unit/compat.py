# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the unit tests need from ansible-core, on every release that meta/runtime.yml claims, and one helper.

ansible-core 2.19 has ``ansible.module_utils.testing.patch_module_args``; 2.18 has not, and takes a
module's arguments from ``ansible.module_utils.basic._ANSIBLE_ARGS``, which the stand-in sets.
"""

from __future__ import annotations

import contextlib
import json
from unittest import mock

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core 2.18
    from ansible.module_utils import basic as _basic

    @contextlib.contextmanager
    def patch_module_args(args=None):
        """Expose the given module args to ``AnsibleModule`` instances created within this context."""
        if not isinstance(args, (dict, type(None))):
            raise TypeError("The `args` arg must be a dict or None.")
        payload = json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}).encode()
        with mock.patch.object(_basic, "_ANSIBLE_ARGS", payload):
            yield

__all__ = ["patch_module_args", "run_module"]


def cause(msg):
    """An xapi_check failure message without its next steps: each failure (they are joined by '; ') up to
    its first ': '. None stays None."""
    return None if msg is None else "; ".join(part.split(": ", 1)[0] for part in msg.split("; "))


def run_module_output(main, capsys, params):
    """(the JSON result, the whole output) of a module's MAIN run with PARAMS, as Ansible would read
    them: the output is what a secret must never appear in."""
    params = dict(params)
    params.setdefault("_ansible_tmpdir", None)
    with patch_module_args(params):
        try:
            main()
        except SystemExit:
            pass
        else:
            raise AssertionError("the module returned without exit_json or fail_json")
    out = capsys.readouterr().out
    return json.loads(out), out


def run_module(main, capsys, params):
    """The JSON result of a module's MAIN run with PARAMS, as Ansible would read it from its output."""
    return run_module_output(main, capsys, params)[0]
