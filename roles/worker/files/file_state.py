# Reads {"exists": [paths], "state": [paths], "read": [paths]} as JSON on stdin (each list may be
# left out). Prints, as JSON: which of "exists" exist (a link counts, as it is); for each of "state"
# that is a regular file (not a link) "SHA1 OWNER GROUP MODE" (mode in octal, as `stat -c %a` shows
# it), or "other" for anything else there; the text of each of "read" that is a readable file.
# Reads only. It never reads the content of an "exists" path (the checkout's settings_local.py
# holds secrets): give only files without secrets to "state" and "read".
import grp
import hashlib
import json
import os
import pwd
import stat
import sys

wanted = json.load(sys.stdin)
found = {"exists": [], "state": {}, "read": {}}
for path in wanted.get("exists", []):
    if os.path.lexists(path):
        found["exists"].append(path)
for path in wanted.get("state", []):
    try:
        st = os.lstat(path)
    except OSError:
        continue
    if not stat.S_ISREG(st.st_mode):
        found["state"][path] = "other"
        continue
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(65536), b""):
            digest.update(chunk)
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    found["state"][path] = "%s %s %s %o" % (digest.hexdigest(), owner, group, stat.S_IMODE(st.st_mode))
for path in wanted.get("read", []):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            found["read"][path] = handle.read()
    except OSError:
        pass
print(json.dumps(found))
