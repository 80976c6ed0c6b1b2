#!/usr/bin/env python3
"""meterd client example in Python, standard library only (3.8+).

    meterd_client.py send INSTANCE_ID [COUNT]     send COUNT (default 3) events of 2.5 units, now
    meterd_client.py preview INSTANCE_ID          the instance's usage and charge so far
    meterd_client.py verify SECRET SIGNATURE_HEADER BODY_FILE [--no-age-check]
                                                  check a notification's Meterd-Signature

Environment: METERD_URL (default http://127.0.0.1:9464), METERD_TOKEN (the bearer token, when
the server has `server.token_env` set). Exit codes: 0 ok, 1 refused or failed, 2 bad usage.
"""

import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone

URL = os.environ.get("METERD_URL", "http://127.0.0.1:9464").rstrip("/")
TOKEN = os.environ.get("METERD_TOKEN")
MAX_AGE_SECS = 300


class Failed(Exception):
    """A call or a check that did not succeed; the message says why."""


def call(method, path, body=None, content_type="application/json"):
    """One HTTP call; the parsed JSON answer, or Failed with the server's error message."""
    req = urllib.request.Request(URL + path, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", content_type)
    if TOKEN:
        req.add_header("Authorization", "Bearer " + TOKEN)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as e:
        text = e.read().decode("utf-8", "replace")
        try:
            text = json.loads(text)["error"]
        except (ValueError, KeyError, TypeError):
            pass
        raise Failed(f"meterd answered {e.code}: {text}") from None
    except urllib.error.URLError as e:
        raise Failed(f"cannot reach meterd at {URL}: {e.reason}") from None


def send(instance_id, count=3):
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    run = f"{int(time.time())}-{os.getpid()}"
    # `id` makes a resend of the same event a duplicate, never counted twice. Quantities are
    # decimal strings: meterd never reads money or usage through a float.
    events = [
        {"id": f"py-{run}-{i}", "instance_id": instance_id, "quantity": "2.5", "time": now}
        for i in range(1, count + 1)
    ]
    result = call("POST", "/v1/events", json.dumps(events).encode())
    rejected = result["rejected"]
    total = result["accepted"] + result["duplicates"] + len(rejected)
    print(f"sent {total} events: accepted {result['accepted']}, duplicates {result['duplicates']}, rejected {len(rejected)}")
    for r in rejected:  # each refused event says what to fix
        print(f"  event #{r['index']} {r.get('id', '-')}: {r['error']}")
    # A stop-before-excess package used up: the app must stop this instance's service now.
    for inst in result.get("quota_exhausted", []):
        print(f"  quota exhausted: {inst} - stop its service")
    return 0 if not rejected else 1


def preview(instance_id):
    p = call("GET", "/v1/preview?" + urllib.parse.urlencode({"instance": instance_id}))
    mine = [i for i in p["instances"] if i["instance_id"] == instance_id]
    if not mine:
        raise Failed(f"preview: no usage for {instance_id} yet")
    for i in mine:
        print(f"preview {i['instance_id']}: usage {i['usage']} {i['unit']}, charge {i['charge']} {i['currency']}")
    for r in p["rows"]:
        if r["instance_id"] == instance_id:
            print(f"  {r['begin_time']} .. {r['end_time']} {r['state']}: usage {r['usage']}, charge {r['charge']}")
    return 0


def verify_signature(secret, header, body, now=None, max_age=MAX_AGE_SECS):
    """Checks `Meterd-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over `<t>.` + body.

    `body` is the exact bytes received; `now=None` reads the clock, `max_age=None` skips the
    age check (only for replaying a recorded vector). Returns t; raises Failed otherwise."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    t, v1 = fields.get("t", ""), fields.get("v1", "")
    if not t.isdigit() or len(v1) != 64:
        raise Failed("the header is not t=<unix seconds>,v1=<64 hex digits>")
    if max_age is not None:
        now = int(time.time()) if now is None else now
        if abs(now - int(t)) > max_age:
            raise Failed(f"timestamp {t} is more than {max_age // 60} minutes from now ({now}): a replay or a wrong clock")
    expected = hmac.new(secret.encode("utf-8"), t.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, v1):  # constant time
        raise Failed("the body or the secret does not match")
    return int(t)


def verify(secret, header, body_file, flag=None):
    if flag not in (None, "--no-age-check"):
        return usage()
    with open(body_file, "rb") as f:
        body = f.read()
    try:
        t = verify_signature(secret, header, body, max_age=None if flag else MAX_AGE_SECS)
    except Failed as e:
        raise Failed(f"signature INVALID: {e}") from None
    print(f"signature valid (t={t})")
    return 0


def usage():
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


def main(argv):
    try:
        if len(argv) in (2, 3) and argv[0] == "send":
            return send(argv[1], int(argv[2]) if len(argv) == 3 else 3)
        if len(argv) == 2 and argv[0] == "preview":
            return preview(argv[1])
        if len(argv) in (4, 5) and argv[0] == "verify":
            return verify(*argv[1:])
        return usage()
    except Failed as e:
        print(e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
