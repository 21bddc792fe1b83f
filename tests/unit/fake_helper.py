"""A stand-in for msa-helper speaking its pipe protocol, for transport tests.

Ops: set_env, info (returns its pid and environment), headers (arg "slow"
waits for a "release" op), release, exit (exits without answering).
"""

import json
import os
import sys
import threading

env = None
released = threading.Event()
out_lock = threading.Lock()


def reply(call_id, body):
    with out_lock:
        sys.stdout.write(json.dumps({"id": call_id, "reply": body}) + "\n")
        sys.stdout.flush()


def serve(req):
    global env
    op = req.get("op")
    if op == "set_env":
        env = req.get("env")
        body = {"ok": True}
    elif op == "info":
        body = {"ok": True, "pid": os.getpid(), "env": env}
    elif op == "headers":
        if req.get("arg") == "slow":
            released.wait()
        body = {"ok": True, "headers": {"X-Host": req.get("arg")}}
    elif op == "release":
        released.set()
        body = {"ok": True}
    elif op == "exit":
        os._exit(3)
    else:
        body = {"ok": False, "code": "internal", "message": "unknown op"}
    reply(req.get("id"), body)


for line in sys.stdin:
    threading.Thread(target=serve, args=(json.loads(line),), daemon=True).start()
