"""Test lab only: what a site runs, for the tests' before/after comparisons. Prints JSON.

  --file PATH      owner, group, mode and sha256 of a file
  --dir PATH       the sha256 of every file of a folder
  --service NAME   the main PID of a systemd service
  --git PATH       HEAD, branches and remotes of a checkout
  --pip VENV       pip freeze of a virtualenv
  --passwd USER    the user's passwd entry
"""

import argparse
import hashlib
import json
import os
import pwd
import subprocess


def sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def run(*argv):
    return subprocess.run(argv, check=True, text=True, stdout=subprocess.PIPE).stdout.strip()


def main():
    parser = argparse.ArgumentParser()
    for option in ("file", "dir", "service", "git", "pip", "passwd"):
        parser.add_argument("--" + option, action="append", default=[])
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
    print(json.dumps(snapshot, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
