"""A stand-in for msa-helper speaking its pipe protocol, for transport tests.

Ops: set_env (replies timeout_ms from FAKE_TIMEOUT_MS in the environment it
is given, 10000 without), ping, info (its pid, environment and how many pings
it answered), headers (echoes the request; arg "slow" waits for a "release"
op), release, mute (answered; from then on nothing is answered, pings
included, while the process stays alive), exit (exits without answering),
die_once (the first time, when the file named by arg does not exist yet: creates
it and exits without answering; then answers).
"""

import json
import os
import sys
import threading

env = None
pings = 0
muted = False
released = threading.Event()
out_lock = threading.Lock()


def reply(call_id, body):
    with out_lock:
        if muted:
            return
        sys.stdout.write(json.dumps({"id": call_id, "reply": body}) + "\n")
        sys.stdout.flush()


def serve(req):
    global env, pings, muted
    op = req.get("op")
    if op == "set_env":
        env = req.get("env")
        timeout_ms = int(env.get("FAKE_TIMEOUT_MS", "10000"))
        body = {"ok": True, "timeout_ms": timeout_ms, "log_level": "INFO", "warnings": []}
    elif op == "ping":
        if muted:
            return
        pings += 1
        body = {"ok": True}
    elif op == "info":
        body = {"ok": True, "pid": os.getpid(), "env": env, "pings": pings}
    elif op == "headers":
        if req.get("arg") == "slow":
            released.wait()
        body = {"ok": True, "headers": {"X-Host": req.get("arg")}, "request": req}
    elif op == "release":
        released.set()
        body = {"ok": True}
    elif op == "mute":
        reply(req.get("id"), {"ok": True})
        muted = True
        return
    elif op == "exit":
        os._exit(3)
    elif op == "die_once":  # exits if the file arg does not exist yet, after creating it
        if not os.path.exists(req["arg"]):
            open(req["arg"], "w").close()
            os._exit(3)
        body = {"ok": True, "survived": req["arg"]}
    else:
        body = {"ok": False, "code": "internal", "message": "unknown op"}
    reply(req.get("id"), body)


for line in sys.stdin:
    threading.Thread(target=serve, args=(json.loads(line),), daemon=True).start()
