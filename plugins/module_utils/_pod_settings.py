# -*- coding: utf-8 -*-
# Copyright: Esup-Pod xAPI collection maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module util is PRIVATE to the collection (hence the leading underscore): it is not a public
# API, it can change or go away in any release, even a bugfix one. Do not import it from another
# collection or from your own modules; use the esup_pod.xapi modules instead.
"""Pure logic of the pod_settings module: one managed block of Python settings at the end of a file.

Everything outside the block is kept byte for byte. The block holds one ``NAME = <literal>`` line per
managed name, sorted by name, and is always the last thing in the file (only other managed blocks may
follow it), so its assignments win over any assignment of the same names by the site.

Several writers (the frontal and the worker roles on one host) each keep a block of their own, named
by a block id: each updates its own block and leaves the others alone.
"""

from __future__ import annotations

import ast
import io
import keyword
import re

BEGIN_MARKER = "# BEGIN esup_pod.xapi managed settings -- do not edit"
END_MARKER = "# END esup_pod.xapi managed settings"
MASK = "********"
_ANY_MARKER = re.compile(r"^# (BEGIN|END) esup_pod\.xapi managed settings( \(([A-Za-z0-9_-]+)\))?( -- do not edit)?$")

_BOM = "\ufeff"
_SCALARS = (str, bool, int, float, type(None))


class PodSettingsError(Exception):
    """Bad input or a file that cannot be managed: the caller must fail without changing anything."""


def check_value(name, value):
    """Accept only values that render as Python literals and read back as the same value."""
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            check_value(name, item)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            check_value(name, key)
            check_value(name, item)
        return
    raise PodSettingsError(
        "%s: unsupported value type %s (use a string, boolean, integer, float, None, list or dict)"
        % (name, type(value).__name__)
    )


def check_block_id(block_id):
    if not isinstance(block_id, str) or not re.match(r"^[A-Za-z0-9_-]*$", block_id):
        raise PodSettingsError("%r is not a valid block id (letters, digits, '-' and '_' only)" % (block_id,))


def markers(block_id=""):
    """The (BEGIN, END) lines of the block named block_id ('' is the unnamed block)."""
    check_block_id(block_id)
    if not block_id:
        return BEGIN_MARKER, END_MARKER
    return ("# BEGIN esup_pod.xapi managed settings (%s) -- do not edit" % block_id,
            "# END esup_pod.xapi managed settings (%s)" % block_id)


def check_name(name):
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise PodSettingsError("%r is not a valid Python name for a setting" % (name,))


def merge_values(settings, secrets):
    """Return (values, secret_names) from the two option dicts; a name may be in only one of them."""
    settings = settings or {}
    secrets = secrets or {}
    both = sorted(set(settings) & set(secrets))
    if both:
        raise PodSettingsError("names given in both settings and secrets: %s" % ", ".join(both))
    values = {}
    for source in (settings, secrets):
        for name, value in source.items():
            check_name(name)
            check_value(name, value)
            values[name] = value
    return values, frozenset(secrets)


def render_block(values, secret_names=frozenset(), newline="\n", mask=False, block_id=""):
    """The managed block: markers and one sorted ``NAME = repr(value)`` line per name.

    With mask=True the values of secret_names are rendered as '********' (for diffs and results only).
    """
    begin, end = markers(block_id)
    lines = [begin]
    for name in sorted(values):
        if mask and name in secret_names:
            literal = repr(MASK)
        else:
            literal = repr(values[name])
        lines.append("%s = %s" % (name, literal))
    lines.append(end)
    return newline.join(lines) + newline


def _split_lines(text):
    return text.splitlines(True)


def find_block(text, block_id=""):
    """Return (start, end) character offsets of the managed block (end is after END's line break), or None.

    A marker is a whole line (trailing white space ignored). More than one block, or a BEGIN without an
    END (or the reverse), is an error: the file was edited by hand and must be fixed by hand.
    """
    begin, end = markers(block_id)
    begins = []
    ends = []
    offset = 0
    for line in _split_lines(text):
        stripped = line.rstrip()
        if stripped == begin:
            begins.append(offset)
        elif stripped == end:
            ends.append(offset + len(line))
        offset += len(line)
    if not begins and not ends:
        return None
    if len(begins) != 1 or len(ends) != 1 or ends[0] <= begins[0]:
        raise PodSettingsError(
            "the managed block markers are damaged (found %d BEGIN and %d END lines, expected one of each, "
            "BEGIN first): fix the file by hand" % (len(begins), len(ends))
        )
    return begins[0], ends[0]


def other_block_ids(text, block_id=""):
    """The ids of the managed blocks of text other than block_id, in the order of the file."""
    found = []
    for line in _split_lines(text):
        match = _ANY_MARKER.match(line.rstrip())
        if match and match.group(1) == "BEGIN":
            other = match.group(3) or ""
            if other != block_id and other not in found:
                found.append(other)
    return found


def _without_blocks(text, block_ids):
    """text without the managed blocks named in block_ids."""
    for other in block_ids:
        span = find_block(text, other)
        if span is not None:
            text = text[:span[0]] + text[span[1]:]
    return text


def detect_newline(text):
    return "\r\n" if "\r\n" in text else "\n"


def update_text(text, values, secret_names=frozenset(), mask=False, block_id=""):
    """Return the file's new text: the site's text untouched, then the managed block as the last thing.

    - no block yet: the block is appended after one blank line;
    - a block that is already last (only white space, or other managed blocks, after it): it is
      replaced in place;
    - a block followed by site content: the block is removed from there and appended at the end.
    """
    bom = ""
    if text.startswith(_BOM):
        bom, text = _BOM, text[len(_BOM):]
    newline = detect_newline(text)
    block = render_block(values, secret_names, newline, mask, block_id)
    span = find_block(text, block_id)
    if span is not None:
        start, end = span
        prefix, suffix = text[:start], text[end:]
        if not _without_blocks(suffix, other_block_ids(suffix, block_id)).strip():
            return bom + prefix + block + suffix
        rest = prefix + suffix
    else:
        rest = text
    if rest and not rest.endswith(("\n", "\r")):
        rest += newline
    if rest.strip() and not rest.endswith(newline + newline):
        rest += newline
    return bom + rest + block


def _parse(text, filename):
    if text.startswith(_BOM):
        text = text[len(_BOM):]
    try:
        return ast.parse(text, filename=filename)
    except (SyntaxError, ValueError) as exc:
        raise PodSettingsError("%s is not valid Python: %s" % (filename, exc)) from exc


def check_compiles(text, filename):
    """compile() the text as Python; a failure is a PodSettingsError naming the file and the line."""
    if text.startswith(_BOM):
        text = text[len(_BOM):]
    try:
        compile(text, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        raise PodSettingsError("the result for %s would not be valid Python, nothing was changed: %s" % (filename, exc)) from exc


def _target_names(target):
    """Names bound by an assignment target (x, (x, y), [x, *y]); attributes and subscripts bind nothing."""
    if isinstance(target, ast.Name):
        yield target
    elif isinstance(target, (ast.Tuple, ast.List)):
        for elt in target.elts:
            yield from _target_names(elt)
    elif isinstance(target, ast.Starred):
        yield from _target_names(target.value)


def _module_level_bindings(tree):
    """Yield (name, lineno, value_node_or_None) for every module-level binding of a name.

    Walks compound statements (if, try, with, for, while, match) but not function or class bodies,
    which have their own scopes.
    """
    stack = list(reversed(tree.body))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name, node.lineno, None
            continue
        if isinstance(node, ast.Assign):
            for target in node.targets:
                for name in _target_names(target):
                    single = isinstance(target, ast.Name)
                    yield name.id, name.lineno, node.value if single else None
        elif isinstance(node, ast.AnnAssign):
            for name in _target_names(node.target):
                yield name.id, name.lineno, node.value
        elif isinstance(node, ast.AugAssign):
            for name in _target_names(node.target):
                yield name.id, name.lineno, node.value
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            for name in _target_names(node.target):
                yield name.id, name.lineno, None
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                if item.optional_vars is not None:
                    for name in _target_names(item.optional_vars):
                        yield name.id, name.lineno, None
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                yield bound, node.lineno, None
        # Walrus assignments anywhere in the statement's own expressions.
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.stmt, ast.excepthandler)) or type(child).__name__ == "match_case":
                continue
            for sub in ast.walk(child):
                if isinstance(sub, ast.NamedExpr) and isinstance(sub.target, ast.Name):
                    yield sub.target.id, sub.target.lineno, None
        children = []
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            for child in getattr(node, field, None) or []:
                if isinstance(child, ast.stmt):
                    children.append(child)
                elif hasattr(child, "body"):  # except handlers and match cases
                    children.extend(child.body)
        stack.extend(reversed(children))


def _block_line_range(text, block_id=""):
    """1-based (first, last) line numbers of the managed block in text, or None."""
    if text.startswith(_BOM):
        text = text[len(_BOM):]
    span = find_block(text, block_id)
    if span is None:
        return None
    first = text.count("\n", 0, span[0]) + 1
    last = text.count("\n", 0, span[1] - 1) + 1
    return first, last


def find_shadowed(text, names, filename="<settings>", block_id=""):
    """Site bindings of managed names outside every managed block: a sorted list of {name, line}.

    The other writers' blocks are not the site's: the same names there are expected (set once per site).
    """
    wanted = set(names)
    blocks = [r for r in (_block_line_range(text, b) for b in [block_id] + other_block_ids(text, block_id)) if r]
    found = set()
    for name, lineno, _value in _module_level_bindings(_parse(text, filename)):
        if name not in wanted:
            continue
        if any(first <= lineno <= last for first, last in blocks):
            continue
        found.add((lineno, name))
    return [{"name": name, "line": lineno} for lineno, name in sorted(found)]


def _block_names(text, filename="<settings>", block_id=""):
    """The names assigned inside the managed block of text."""
    block = _block_line_range(text, block_id)
    if block is None:
        return set()
    return {
        name
        for name, lineno, _value in _module_level_bindings(_parse(text, filename))
        if block[0] <= lineno <= block[1]
    }


def _col_to_index(line, col):
    """ast column offsets count UTF-8 bytes: convert one to a character index in line."""
    return len(line.encode("utf-8")[:col].decode("utf-8", "ignore"))


def mask_text(text, secret_names, secret_values=(), filename="<settings>", block_names=(), block_id=""):
    """Return text with every secret value hidden, for diffs and results only (never written).

    - the value of every module-level assignment of a secret name (in or outside the managed block)
      is replaced by '********';
    - so is the value of every name of block_names, inside the managed block only;
    - every non-empty secret string (and its repr without quotes) still left anywhere is replaced too.
    """
    masked = text
    if secret_names:
        body = masked[len(_BOM):] if masked.startswith(_BOM) else masked
        bom = masked[: len(masked) - len(body)]
        try:
            tree = ast.parse(body, filename=filename)
        except (SyntaxError, ValueError):
            tree = None
        if tree is not None:
            lines = _split_lines(body)
            offsets = [0]
            for line in lines:
                offsets.append(offsets[-1] + len(line))
            spans = []
            block = _block_line_range(body, block_id)
            for name, lineno, value in _module_level_bindings(tree):
                in_block = block is not None and block[0] <= lineno <= block[1]
                hidden = name in secret_names or (in_block and name in block_names)
                if hidden and value is not None and value.end_lineno is not None:
                    start = offsets[value.lineno - 1] + _col_to_index(lines[value.lineno - 1], value.col_offset)
                    end = offsets[value.end_lineno - 1] + _col_to_index(lines[value.end_lineno - 1], value.end_col_offset)
                    spans.append((start, end))
            for start, end in sorted(spans, reverse=True):
                body = body[:start] + repr(MASK) + body[end:]
            masked = bom + body
    for value in secret_values:
        for form in _secret_forms(value):
            masked = masked.replace(form, MASK)
    return masked


def _secret_forms(value):
    """The strings under which a secret value could show up in a text: raw, and as a quoted literal."""
    if not isinstance(value, str) or not value:
        return []
    forms = {value, repr(value)[1:-1]}
    return sorted((form for form in forms if form), key=len, reverse=True)


def block_text(text, block_id=""):
    """The managed block of text, markers included ('' when there is none)."""
    if text.startswith(_BOM):
        text = text[len(_BOM):]
    span = find_block(text, block_id)
    return text[span[0]:span[1]] if span else ""


def _site_ranges(text):
    """1-based (first, last) line ranges of every managed block of text (BOM already removed)."""
    ids = [""] + other_block_ids(text, "")
    return [r for r in (_block_line_range(text, b) for b in ids) if r]


def _outside(ranges, lineno):
    return not any(first <= lineno <= last for first, last in ranges)


def site_literal(text, name, filename="<settings>"):
    """The value that the site's own lines (outside every managed block) give NAME, parsed, never run:
    (True, value), or (False, None) when they never bind it.

    Only a plain assignment of a literal at the top of the module counts, the last binding winning; a
    last binding of another kind (a call, an import, inside an if or a try...) raises PodSettingsError.
    """
    if text.startswith(_BOM):
        text = text[len(_BOM):]
    tree = _parse(text, filename)
    ranges = _site_ranges(text)
    lines = [lineno for bound, lineno, _value in _module_level_bindings(tree) if bound == name and _outside(ranges, lineno)]
    if not lines:
        return False, None
    last = max(lines)
    for statement in tree.body:
        if _simple_names(statement) and name in _simple_names(statement) and statement.lineno == last:
            try:
                return True, ast.literal_eval(statement.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                break
    raise PodSettingsError("%s in %s is not set by a plain assignment of a literal (line %d): it is read without "
                           "running the file" % (name, filename, last))


def _simple_names(statement):
    """The names that a top-level NAME = literal-or-not (or NAME: type = value) statement assigns, else ()."""
    if isinstance(statement, ast.Assign) and all(isinstance(t, ast.Name) for t in statement.targets):
        return tuple(t.id for t in statement.targets)
    if isinstance(statement, ast.AnnAssign) and statement.value is not None and isinstance(statement.target, ast.Name):
        return (statement.target.id,)
    return ()


def remove_site_names(text, names, filename="<settings>"):
    """Remove the site's own top-level assignments of NAMES (outside every managed block), whole lines,
    every other byte kept. Returns (new text, removed, left): removed and left are sorted lists of
    {name, line} (line numbers of TEXT); left are bindings that are not removed (inside an if, sharing a
    line with another statement, assigning another name too...)."""
    wanted = set(names or ())
    if not wanted:
        return text, [], []
    bom = ""
    if text.startswith(_BOM):
        bom, text = _BOM, text[len(_BOM):]
    tree = _parse(text, filename)
    ranges = _site_ranges(text)
    body = tree.body
    drop, removed = set(), []
    for index, statement in enumerate(body):
        assigned = set(_simple_names(statement))
        if not assigned or not assigned <= wanted or not _outside(ranges, statement.lineno):
            continue
        before = body[index - 1].end_lineno if index else 0
        after = body[index + 1].lineno if index + 1 < len(body) else None
        if before >= statement.lineno or (after is not None and after <= statement.end_lineno):
            continue
        drop.update(range(statement.lineno, statement.end_lineno + 1))
        removed.extend({"name": name, "line": statement.lineno} for name in sorted(assigned))
    left = [{"name": bound, "line": lineno} for bound, lineno, _value in _module_level_bindings(tree)
            if bound in wanted and _outside(ranges, lineno) and lineno not in drop]
    lines = io.StringIO(text, newline="").readlines()
    kept = "".join(line for number, line in enumerate(lines, 1) if number not in drop)
    return bom + kept, sorted(removed, key=_by_line), sorted(left, key=_by_line)


def _by_line(item):
    return item["line"], item["name"]


def removed_lines(removed):
    """The removed assignments as the diff shows them: every value hidden."""
    return "".join("%s = %r  # line %d of the site's own lines\n" % (item["name"], MASK, item["line"]) for item in removed)


def plan(text, settings, secrets, filename="<settings>", block_id="", remove=()):
    """Compute everything the module needs; raises PodSettingsError and changes nothing.

    text is the current content ('' for a file to create). Returns a dict with: new_text (the real
    content to write), changed, names, shadowed, before and after: the managed block only, masked,
    for the diff. The rest of the file (the site's own settings and secrets) is never in them.
    """
    values, secret_names = merge_values(settings, secrets)
    if not values:
        raise PodSettingsError("nothing to manage: give at least one name in settings or secrets")
    for name in remove or ():
        check_name(name)
    clash = sorted(set(remove or ()) & set(values))
    if clash:
        raise PodSettingsError("names both managed and removed: %s" % ", ".join(clash))
    _parse(text, filename)
    site_text, removed, left = remove_site_names(text, remove, filename)
    new_text = update_text(site_text, values, secret_names, block_id=block_id)
    check_compiles(new_text, filename)
    secret_values = [secrets[name] for name in secret_names]
    old_block, new_block = block_text(text, block_id), block_text(new_text, block_id)
    # A name of the current block that is no longer managed, or was a secret before, may hold an old
    # secret: in the "before" block every value is hidden, except current settings.
    old_block_names = _block_names(old_block, filename, block_id) - set(settings or {})
    return {
        "new_text": new_text,
        "changed": new_text != text,
        "names": sorted(values),
        "shadowed": find_shadowed(new_text, values, filename, block_id),
        "before": removed_lines(removed) + mask_text(old_block, secret_names, secret_values, filename, old_block_names,
                                                     block_id),
        "after": mask_text(new_block, secret_names, secret_values, filename, block_id=block_id),
        "removed": removed,
        "left": left,
    }


def remove_text(text, block_id=""):
    """Return text without its managed block block_id, and without the blank line that update_text put
    before it (or, first in the file, after it): a file that had no block gets back its bytes, but for a
    line break that update_text added at its end and a blank line that ended it."""
    bom = ""
    if text.startswith(_BOM):
        bom, text = _BOM, text[len(_BOM):]
    span = find_block(text, block_id)
    if span is None:
        return bom + text
    newline = detect_newline(text)
    prefix, suffix = text[:span[0]], text[span[1]:]
    if prefix.endswith(newline + newline):
        prefix = prefix[:-len(newline)]
    elif not prefix and suffix.startswith(newline):
        suffix = suffix[len(newline):]
    return bom + prefix + suffix


def plan_absent(text, filename="<settings>", block_id=""):
    """Like plan, for removing the block: new_text, changed, names (those the block held), before (the
    block, every value hidden) and after ('')."""
    _parse(text, filename)
    new_text = remove_text(text, block_id)
    check_compiles(new_text, filename)
    old_block = block_text(text, block_id)
    names = _block_names(old_block, filename, block_id)
    return {
        "new_text": new_text,
        "changed": new_text != text,
        "names": sorted(names),
        "shadowed": [],
        "before": mask_text(old_block, names, (), filename, names, block_id),
        "after": "",
    }
