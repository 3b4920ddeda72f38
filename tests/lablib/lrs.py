"""Read the lab's LRS (Ralph): fetch stored statements by id or by count, wait for ids.

Every HTTP request runs inside a lab container (python3's urllib through podman exec), so it
goes over the lab network like Pod's worker does. The URL and the credentials come from the lab
inventory (xapi_lrs_url, xapi_lrs_login, xapi_lrs_password); the script and the credentials go
through the container's stdin, never on a command line.
"""

import json
import subprocess
import time
from urllib.parse import quote

from . import lab

# Runs inside the container: REQUESTS is a list of {method, url, body, login, password, follow}; prints
# a list of [status, body text]. An unreachable server gives status 0 and the error as body. With
# follow false, a redirect is not followed, and the body is {"location": ..., "body": ...} as JSON.
# HTTPS is verified against the container's system CA store, which holds the lab CA.
_REMOTE = r"""
import base64, json, urllib.error, urllib.request

class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

def one(item):
    # Like Pod's task: no X-Experience-API-Version header.
    headers = {"Content-Type": "application/json"}
    if item.get("login") is not None:
        token = "%s:%s" % (item["login"], item["password"])
        headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
    data = None if item.get("body") is None else json.dumps(item["body"]).encode()
    request = urllib.request.Request(item["url"], data=data, method=item["method"], headers=headers)
    follow = item.get("follow", True)
    opener = urllib.request.build_opener() if follow else urllib.request.build_opener(Stay)
    try:
        with opener.open(request, timeout=item.get("timeout", 10)) as answer:
            status, text, location = answer.status, answer.read().decode(), answer.headers.get("Location")
    except urllib.error.HTTPError as error:
        status, text, location = error.code, error.read().decode(), error.headers.get("Location")
    except (urllib.error.URLError, OSError) as error:
        return [0, str(error)]
    return [status, text if follow else json.dumps({"location": location, "body": text})]

print(json.dumps([one(item) for item in REQUESTS]))
"""


class LRSError(AssertionError):
    """The LRS answered something unexpected."""


class LRS:
    """The lab's LRS, reached from the inventory host VIA (default: the lrs host itself)."""

    def __init__(self, via="lrs", url=None, login=None, password=None):
        self.via = via
        self.url = url or lab.var("lrs", "xapi_lrs_url")
        self.login = login if login is not None else lab.var("lrs", "xapi_lrs_login")
        self.password = password if password is not None else lab.var("lrs", "xapi_lrs_password")
        self.root = self.url.split("/xAPI/", 1)[0]

    # Transport -----------------------------------------------------------------------------
    def requests(self, items):
        """Run several requests in one podman exec; returns [(status, body text), ...]."""
        script = "import json\nREQUESTS = json.loads(%r)\n%s" % (json.dumps(items), _REMOTE)
        done = subprocess.run(["podman", "exec", "-i", lab.container(self.via), "python3", "-"],
                              input=script, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError("request from %s failed: %s" % (lab.container(self.via), done.stderr.strip()))
        return [tuple(pair) for pair in json.loads(done.stdout)]

    def request(self, method, url, body=None, login=None, password=None, auth=True):
        """One request; LOGIN/PASSWORD override the inventory's; auth=False sends none."""
        item = {"method": method, "url": url, "body": body}
        if auth:
            item["login"] = self.login if login is None else login
            item["password"] = self.password if password is None else password
        return self.requests([item])[0]

    def answer(self, method, url, body=None, auth=False):
        """One request whose redirect is not followed: (status, Location or None, body text)."""
        item = {"method": method, "url": url, "body": body, "follow": False}
        if auth:
            item["login"], item["password"] = self.login, self.password
        status, text = self.requests([item])[0]
        if status == 0:
            return status, None, text
        data = json.loads(text)
        return status, data["location"], data["body"]

    # xAPI ----------------------------------------------------------------------------------
    def heartbeat(self):
        """(status, body) of Ralph's /__heartbeat__."""
        return self.request("GET", self.root + "/__heartbeat__", auth=False)

    def post(self, statements, **auth):
        """POST one statement or a list; returns (status, body text)."""
        return self.request("POST", self.url, body=statements, **auth)

    def get(self, statement_id):
        """The stored statement with this id, or None."""
        status, body = self.request("GET", "%s?statementId=%s" % (self.url, quote(str(statement_id))))
        stored = self._statements(status, body)
        return stored[0] if stored else None

    def get_many(self, ids):
        """{id: statement} for the ids that are stored (one podman exec for all of them)."""
        items = [{"method": "GET", "url": "%s?statementId=%s" % (self.url, quote(str(i))),
                  "login": self.login, "password": self.password} for i in ids]
        found = {}
        for statement_id, (status, body) in zip(ids, self.requests(items) if items else []):
            stored = self._statements(status, body)
            if stored:
                found[str(statement_id)] = stored[0]
        return found

    def statements(self, since=None, agent=None, page=500):
        """Every stored statement (following "more"), optionally since a time or for an agent."""
        query = "limit=%d" % page
        if since:
            query += "&since=" + quote(since)
        if agent:
            query += "&agent=" + quote(json.dumps(agent))
        url, result = "%s?%s" % (self.url, query), []
        while url:
            status, body = self.request("GET", url)
            result.extend(self._statements(status, body))
            more = json.loads(body).get("more")
            url = self.root + more if more else None
        return result

    def count(self, **filters):
        """How many statements are stored (with the filters of statements())."""
        return len(self.statements(**filters))

    def latest(self, count):
        """The COUNT most recently stored statements, newest first."""
        stored = sorted(self.statements(), key=lambda s: s.get("stored", ""), reverse=True)
        return stored[:count]

    def wait_for(self, ids, timeout=60.0, interval=0.5):
        """Poll (bounded by TIMEOUT seconds) until every id is stored; returns {id: statement}.

        Raises LRSError naming the ids still missing when the time is up.
        """
        wanted = [str(i) for i in ids]
        found, deadline = {}, time.monotonic() + timeout
        while True:
            missing = [i for i in wanted if i not in found]
            if len(missing) > 50:
                stored = {s["id"]: s for s in self.statements()}
                found.update({i: stored[i] for i in missing if i in stored})
            else:
                found.update(self.get_many(missing))
            missing = [i for i in wanted if i not in found]
            if not missing:
                return found
            if time.monotonic() >= deadline:
                raise LRSError("%d of %d statements not stored after %.0f s, e.g. %s"
                               % (len(missing), len(wanted), timeout, missing[:5]))
            time.sleep(interval)

    @staticmethod
    def _statements(status, body):
        if status != 200:
            raise LRSError("LRS answered %s: %s" % (status, body[:300]))
        data = json.loads(body)
        if isinstance(data, dict) and "statements" in data:
            return data["statements"]
        return [data] if isinstance(data, dict) and "id" in data else []
