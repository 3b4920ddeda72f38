#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pod_settings
short_description: Manage a block of Python settings at the end of Pod's settings_local.py
version_added: 0.1.0
description:
  - Writes the given names as Python literals (one C(NAME = literal) line per name, sorted by
    name) in one marked block at the end of a Python settings file, typically Esup-Pod's
    C(pod/custom/settings_local.py).
  - The block starts with the line C(# BEGIN esup_pod.xapi managed settings -- do not edit) and ends
    with C(# END esup_pod.xapi managed settings). With O(block), both markers carry its name in
    parentheses after C(managed settings). Every byte outside the block is kept as it is.
  - Several writers of one file (the frontal and the worker roles on one host) each keep their own
    block (see O(block)). A task changes its own block only, and two blocks never undo each other.
  - The block is always the last thing in the file, but for other managed blocks. If site content was
    added after it, the block is moved to the end of the file, and the content after it is kept.
  - The file is parsed before any change and the result is compiled as Python before it is written.
    A file that is not valid Python, a result that would not compile, a damaged block (a marker missing
    or repeated) or an unsupported value fails the task with a clear message, and nothing is changed.
  - "Names set elsewhere in the file: if the file also assigns a managed name outside the block (a plain,
    annotated or augmented assignment, at the top level or inside an C(if), C(try), C(with) or C(for)
    block, or an import), that site assignment is left untouched. Because the managed block runs last,
    its value wins when the file is imported. The module returns such assignments in RV(shadowed) and
    emits a warning for each. Code of the site that reads a managed name before the block still sees the
    site's own value."
  - The diff shows the managed block only. The rest of the file, the site's own settings and secrets
    (C(SECRET_KEY), database passwords, tokens), never appears in the diff or in any result, at any
    verbosity.
  - Values given in O(secrets) are never shown. In the diff and in every result they are replaced by
    C('********'), even with C(-vvv).
  - The file's owner, group and mode are kept when it is rewritten. O(owner), O(group) and O(mode) are
    applied before the new content is written, so that a secret never lands in a file with wider
    permissions than asked for; a symbolic O(mode) such as V(o-rwx) only removes bits.
  - The file is written atomically. When O(path) is a symbolic link, the link is kept and the file it
    points to gets the block; a link to nothing fails the task.
author:
  - Esup-Pod xAPI collection maintainers (@EsupPortail)
options:
  path:
    description:
      - The Python settings file, for example C(/usr/local/django_projects/podv4/pod/custom/settings_local.py).
    type: path
    required: true
  settings:
    description:
      - Names and values to write in the block. The values are not secret and appear in the diff.
      - A name must be a valid Python identifier. A value must be a string, boolean, integer, float,
        V(null) (rendered as V(None)), or a list or dict of those.
    type: dict
    default: {}
  secrets:
    description:
      - Like O(settings), for secret values (passwords, URLs that hold a password). Their values are
        written in the file but replaced by C('********') in the diff and in every result.
      - A name may be given in O(settings) or in O(secrets), not in both.
    type: dict
    default: {}
  remove:
    description:
      - Names to remove from the site's own lines, outside every managed block, for example credentials
        that the host must no longer hold.
      - "Only a plain assignment at the top of the file (C(NAME = value) or C(NAME: type = value)) that
        assigns nothing else and shares its lines with no other statement is removed, whole lines; every
        other byte of the file is kept. Any other binding of those names is left as it is, with a warning,
        and returned in RV(left)."
      - The diff shows each removed assignment with its value replaced by C('********').
      - A name may not be both managed (in O(settings) or O(secrets)) and removed. Ignored with O(state=absent).
    type: list
    elements: str
    default: []
    version_added: 0.2.0
  block:
    description:
      - The name of the managed block, so that several writers of one file each keep their own.
      - Letters, digits, V(-) and V(_). The empty default is the unnamed block.
    type: str
    default: ""
  create:
    description:
      - What to do when O(path) does not exist.
      - With V(false), the task fails. A missing C(settings_local.py) on a Pod host usually means that
        O(path) is wrong or that Pod is not installed there.
      - With V(true), the file is created with the block as its only content (for example on a host
        that only runs Pod's Celery worker).
    type: bool
    default: false
  state:
    description:
      - With V(present), the block holds O(settings) and O(secrets).
      - With V(absent), the block is removed, with the blank line written before it, so that a file the
        module added the block to gets its bytes back. O(settings), O(secrets) and O(create) are ignored,
        and a missing file is left missing. The names the block held are hidden in the diff.
    type: str
    choices: [present, absent]
    default: present
    version_added: 0.1.0
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.files
  - ansible.builtin.files
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
  safe_file_operations:
    support: full
    description: The file is written to a temporary file and moved into place atomically.
notes:
  - The block is written with the line endings the file already uses.
seealso:
  - name: Esup-Pod
    description: Esup-Pod's project, whose C(pod/custom/settings_local.py) this module manages.
    link: https://github.com/EsupPortail/Esup-Pod
"""

EXAMPLES = r"""
- name: Enable xAPI in the Pod frontal's settings (the file keeps its owner and group)
  esup_pod.xapi.pod_settings:
    path: /usr/local/django_projects/podv4/pod/custom/settings_local.py
    block: frontal
    settings:
      USE_XAPI: true
      USE_XAPI_VIDEO: true
      XAPI_LRS_URL: https://lrs.example.org/xAPI/statements/
    secrets:
      XAPI_CELERY_BROKER_URL: "redis://xapi-frontal:{{ vault_xapi_broker_frontal_password | urlencode }}@broker.example.org:6380/6"
    mode: o-rwx

- name: Create the settings of a host that only runs the xAPI worker
  esup_pod.xapi.pod_settings:
    path: /usr/local/django_projects/podv4/pod/custom/settings_local.py
    create: true
    settings:
      XAPI_LRS_URL: https://lrs.example.org/xAPI/statements/
    secrets:
      XAPI_LRS_PWD: "{{ vault_lrs_password }}"
    mode: "0640"

- name: Remove the xAPI block of the Pod frontal's settings
  esup_pod.xapi.pod_settings:
    path: /usr/local/django_projects/podv4/pod/custom/settings_local.py
    block: frontal
    state: absent
"""

RETURN = r"""
path:
  description: The settings file.
  returned: always
  type: str
  sample: /usr/local/django_projects/podv4/pod/custom/settings_local.py
names:
  description: The managed names, sorted (the names of O(settings) and O(secrets)).
  returned: success
  type: list
  elements: str
  sample: [USE_XAPI, XAPI_LRS_PWD, XAPI_LRS_URL]
shadowed:
  description:
    - Assignments of managed names outside the managed block, left untouched. The block at the end of
      the file wins over them. Line numbers refer to the file as it is after the task.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: The managed name.
      type: str
    line:
      description: The line (1-based) of the site's assignment.
      type: int
  sample: [{name: USE_XAPI, line: 12}]
removed:
  description: The site's own assignments that O(remove) removed; line numbers refer to the file before the task.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: The name.
      type: str
    line:
      description: The line (1-based) of the assignment.
      type: int
  sample: [{name: XAPI_LRS_PWD, line: 88}]
left:
  description: Bindings of names of O(remove) outside the managed blocks that were not removed (see O(remove)).
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: The name.
      type: str
    line:
      description: The line (1-based) of the binding, in the file before the task.
      type: int
  sample: []
diff:
  description:
    - The managed block before and after, with every secret value replaced by C('********'). The rest
      of the file is never shown.
  returned: in diff mode
  type: dict
  contains:
    before:
      description: The managed block before the task (empty when there was none).
      type: str
    after:
      description: The managed block after the task.
      type: str
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native

from ansible_collections.esup_pod.xapi.plugins.module_utils._pod_settings import (
    PodSettingsError,
    plan,
    plan_absent,
)


def read_text(module, path):
    try:
        with open(to_bytes(path), "rb") as handle:
            data = handle.read()
    except (IOError, OSError) as exc:
        module.fail_json(msg="cannot read %s: %s" % (path, to_native(exc)), path=path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        module.fail_json(msg="%s is not UTF-8 text: %s" % (path, to_native(exc)), path=path)


def write_text(module, path, text, exists):
    """Write text to path atomically. A new file is first made empty and private, its requested
    owner/group/mode applied, so that the content never exists with wider permissions."""
    b_path = to_bytes(path)
    if not exists:
        try:
            os.close(os.open(b_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except (IOError, OSError) as exc:
            module.fail_json(msg="cannot create %s: %s" % (path, to_native(exc)), path=path)
        module.set_fs_attributes_if_different(module.load_file_common_arguments(module.params), False)
    fd, tmp = tempfile.mkstemp(dir=module.tmpdir, prefix="pod_settings.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(to_bytes(text))
    except (IOError, OSError) as exc:
        module.fail_json(msg="cannot write a temporary file: %s" % to_native(exc), path=path)
    module.atomic_move(tmp, path, unsafe_writes=module.params["unsafe_writes"])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            settings=dict(type="dict", default={}),
            secrets=dict(type="dict", default={}, no_log=True),
            create=dict(type="bool", default=False),
            block=dict(type="str", default=""),
            remove=dict(type="list", elements="str", default=[]),
            state=dict(type="str", default="present", choices=["present", "absent"]),
        ),
        add_file_common_args=True,
        supports_check_mode=True,
    )
    path = module.params["path"]
    settings = module.params["settings"] or {}
    secrets = module.params["secrets"] or {}
    result = dict(changed=False, path=path)
    absent = module.params["state"] == "absent"

    # A site that links settings_local.py from elsewhere keeps its link: the block goes into the file it points to.
    target = path
    if os.path.islink(to_bytes(path)):
        target = os.path.realpath(path)
        if not os.path.exists(to_bytes(target)):
            module.fail_json(msg="%s is a link to %s, which does not exist" % (path, target), **result)
    exists = os.path.exists(to_bytes(target))
    if absent and not exists:
        module.exit_json(names=[], shadowed=[], **result)
    if exists:
        if not os.path.isfile(to_bytes(target)):
            module.fail_json(msg="%s is not a regular file" % target, **result)
        text = read_text(module, target)
    elif module.params["create"]:
        text = ""
        parent = os.path.dirname(path) or "."
        if not os.path.isdir(to_bytes(parent)):
            module.fail_json(msg="cannot create %s: the directory %s does not exist" % (path, parent), **result)
    else:
        module.fail_json(
            msg="%s does not exist: is this a Pod checkout? (set create: true to create the file)" % path,
            **result
        )

    try:
        if absent:
            outcome = plan_absent(text, filename=path, block_id=module.params["block"])
        else:
            outcome = plan(text, settings, secrets, filename=path, block_id=module.params["block"],
                           remove=module.params["remove"])
    except PodSettingsError as exc:
        module.fail_json(msg=to_native(exc), **result)

    changed = outcome["changed"] or not exists
    result.update(names=outcome["names"], shadowed=outcome["shadowed"])
    if not absent:
        result.update(removed=outcome["removed"], left=outcome["left"])
    for item in outcome.get("left", []):
        module.warn("%s is bound at line %d of %s in a way the module does not remove (not a plain assignment of its "
                    "own at the top of the file): remove it by hand" % (item["name"], item["line"], path))
    for item in outcome["shadowed"]:
        module.warn(
            "%s is also assigned at line %d of %s, outside the managed block: that assignment is left "
            "as it is, and the managed block at the end of the file wins" % (item["name"], item["line"], path)
        )
    if module._diff:
        header = "%s (managed block%s)" % (path, " " + module.params["block"] if module.params["block"] else "")
        result["diff"] = dict(
            before=outcome["before"],
            after=outcome["after"],
            before_header=header if exists else "%s (absent)" % path,
            after_header=header,
        )

    # An existing file gets its requested attributes first: the new content then replaces it with
    # them (atomic_move keeps the owner, group and mode of the file it replaces).
    if exists:
        changed = module.set_fs_attributes_if_different(module.load_file_common_arguments(module.params, path=target),
                                                        changed)
    if outcome["changed"] and not module.check_mode:
        write_text(module, target, outcome["new_text"], exists)

    result["changed"] = changed
    module.exit_json(**result)


if __name__ == "__main__":
    main()
