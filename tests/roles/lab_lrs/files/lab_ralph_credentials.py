"""Exit 0 when Ralph's auth file holds exactly the accounts of LAB_LRS_ACCOUNTS (a JSON list of
{login, password, scopes, mbox}), each with a hash matching its password, its scopes and its mbox;
exit 1 otherwise.

Lets the role rewrite the credentials only when they differ ("ralph auth -w" appends).
"""

import json
import os
import sys

import bcrypt


def matches(user, account):
    return (
        user.get("username") == account["login"]
        and bcrypt.checkpw(account["password"].encode("utf-8"), user.get("hash", "").encode("ascii"))
        and sorted(user.get("scopes", [])) == sorted(account["scopes"])
        and (user.get("agent") or {}).get("mbox") == account["mbox"]
    )


def main():
    accounts = json.loads(os.environ["LAB_LRS_ACCOUNTS"])
    try:
        with open(os.environ["RALPH_AUTH_FILE"], encoding="utf-8") as handle:
            users = json.load(handle)
    except (OSError, ValueError):
        return 1
    if not isinstance(users, list) or len(users) != len(accounts):
        return 1
    by_name = {user.get("username"): user for user in users if isinstance(user, dict)}
    ok = all(account["login"] in by_name and matches(by_name[account["login"]], account) for account in accounts)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
