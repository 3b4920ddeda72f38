"""Exit 0 when Ralph's auth file holds exactly one user, LAB_LRS_LOGIN, whose hash matches
LAB_LRS_PASSWORD and whose scopes and mbox are the wanted ones; exit 1 otherwise.

Lets the role rewrite the credentials only when they differ ("ralph auth -w" appends).
"""

import json
import os
import sys

import bcrypt


def main():
    login = os.environ["LAB_LRS_LOGIN"]
    password = os.environ["LAB_LRS_PASSWORD"].encode("utf-8")
    mbox = os.environ["LAB_LRS_MBOX"]
    try:
        with open(os.environ["RALPH_AUTH_FILE"], encoding="utf-8") as handle:
            users = json.load(handle)
    except (OSError, ValueError):
        return 1
    if not isinstance(users, list) or len(users) != 1:
        return 1
    user = users[0]
    ok = (
        user.get("username") == login
        and bcrypt.checkpw(password, user.get("hash", "").encode("ascii"))
        and sorted(user.get("scopes", [])) == ["statements/read", "statements/write"]
        and (user.get("agent") or {}).get("mbox") == mbox
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
