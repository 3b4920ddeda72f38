"""Test lab only: what a site runs, for the tests' before/after comparisons. Prints JSON.

  --file PATH      owner, group, mode and sha256 of a file
  --dir PATH       the sha256 of every file of a folder
  --service NAME   the main PID of a systemd service
  --git PATH       HEAD, branches and remotes of a checkout
  --pip VENV       pip freeze of a virtualenv
  --passwd USER    the user's passwd entry
  --tree PATH      every path under a folder (the sha256 of each file, the target of each link)
  --accounts       the names of every user and group
"""

import argparse
import grp
import hashlib
import json
import os
import pwd
import subprocess


def sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def tree(top):
    """{relative path: sha256 of a file, '-> target' of a link, 'dir' of a folder} of everything under top."""
    found = {}
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, top)
            if os.path.islink(path):
                found[relative] = "-> " + os.readlink(path)
            elif os.path.isdir(path):
                found[relative] = "dir"
            elif os.path.isfile(path):
                found[relative] = sha256(path)
    return found


def run(*argv):
    return subprocess.run(argv, check=True, text=True, stdout=subprocess.PIPE).stdout.strip()


def main():
    parser = argparse.ArgumentParser()
    for option in ("file", "dir", "service", "git", "pip", "passwd", "tree"):
        parser.add_argument("--" + option, action="append", default=[])
    parser.add_argument("--accounts", action="store_true")
    args = parser.parse_args()
    snapshot = {"files": {}, "dirs": {}, "services": {}, "git": {}, "pip": {}, "passwd": {}}
    for path in args.file:
        info = os.stat(path)
        snapshot["files"][path] = {"uid": info.st_uid, "gid": info.st_gid, "mode": oct(info.st_mode & 0o7777),
                                   "sha256": sha256(path)}
    for path in args.dir:
        snapshot["dirs"][path] = {name: sha256(os.path.join(path, name)) for name in sorted(os.listdir(path))
                                  if os.path.isfile(os.path.join(path, name))}
    for name in args.service:
        snapshot["services"][name] = int(run("systemctl", "show", "--property=MainPID", "--value", name))
    for path in args.git:
        git = ("git", "-c", "safe.directory=" + path, "-C", path)
        snapshot["git"][path] = {"head": run(*git, "rev-parse", "HEAD"), "branch": run(*git, "branch"),
                                 "remote": run(*git, "remote", "-v")}
    for venv in args.pip:
        snapshot["pip"][venv] = run(os.path.join(venv, "bin", "pip"), "freeze", "--all").splitlines()
    for user in args.passwd:
        snapshot["passwd"][user] = ":".join(str(field) for field in pwd.getpwnam(user))
    if args.tree:
        snapshot["trees"] = {top: tree(top) for top in args.tree}
    if args.accounts:
        snapshot["accounts"] = {"users": sorted(entry.pw_name for entry in pwd.getpwall()),
                                "groups": sorted(entry.gr_name for entry in grp.getgrall())}
    print(json.dumps(snapshot, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
