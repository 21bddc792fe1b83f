"""Forked children of a process whose core is in-process (issue 16's fleet,
issue 17's weight): run as `shared_core.py URL MODE`, print one JSON line.

The parent sends one request through the plugin (its core loads in-process),
then forks children with os.fork. Each child sends requests and reports, on a
pipe, the header sent, the transport note, how many helper processes it
started, and whether it has any child process. MODE:
  shared        4 children, nothing changes: all use the parent's core;
  child-env     the child points MLFLOW_VAULT_SECRET_PATH at another secret
                (MSA_OTHER_PATH) before its first request;
  parent-env    the child's first request is shared; then the parent changes
                its own environment and sends a request; the child's second
                request (its header cache cleared) comes after that;
  parent-exits  2 children; each child's first request is shared; the parent
                exits; each child's second request comes after that (each
                child prints its own line).
Every wait is bounded: a hang is a failure."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import requests
from mlflow.tracking.request_auth.registry import fetch_auth
from mlflow_secrets_auth import _native, provider

URL, MODE = sys.argv[1], sys.argv[2]
BOUND = 60.0


def header() -> str:
    provider._entries.clear()  # as if the cached header had expired: reach the core
    req = requests.Request("GET", URL).prepare()
    req.prepare_auth(fetch_auth("mlflow_secrets_auth"))
    return req.headers.get("Authorization", "")


def children_of_self() -> list[int]:
    """The live processes whose parent is this one (from /proc/*/stat)."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    stat = fh.read()
            except OSError:
                continue  # gone meanwhile
            if int(stat.rpartition(")")[2].split()[1]) == me:
                found.append(int(entry))
    return found


def report() -> dict[str, object]:
    t = _native._transport
    return {
        "notes": _native.transport_notes(),
        "starts": getattr(t, "starts", -1),
        "children": len(children_of_self()),
        "type": type(t).__name__,
    }


def wait_for(fd: int) -> None:
    """Block until the other side writes a byte (or BOUND passes)."""
    import select

    ready, _, _ = select.select([fd], [], [], BOUND)
    if not ready or not os.read(fd, 1):
        raise SystemExit("the other side never signalled")


def child(out_fd: int, go_fd: int, ready_fd: int) -> None:
    result: dict[str, object] = {}
    try:
        if MODE == "child-env":
            os.environ["MLFLOW_VAULT_SECRET_PATH"] = os.environ["MSA_OTHER_PATH"]
        result["first"] = header()
        result["after_first"] = report()
        if MODE in ("parent-env", "parent-exits"):
            os.write(ready_fd, b"1")
            if MODE == "parent-env":
                wait_for(go_fd)
            else:
                deadline = time.monotonic() + BOUND
                while os.getppid() == PARENT and time.monotonic() < deadline:
                    time.sleep(0.01)
            result["second"] = header()
            result["after_second"] = report()
    except BaseException as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    if MODE == "parent-exits":
        os.write(1, (json.dumps(result) + "\n").encode())  # one write: siblings share stdout
        # Stay until every sibling has reported: a live sibling is what keeps
        # the parent's end of this child's socket open after the parent exits.
        Path(DONE, str(os.getpid())).touch()
        deadline = time.monotonic() + BOUND
        while len(os.listdir(DONE)) < count and time.monotonic() < deadline:
            time.sleep(0.01)
    else:
        os.write(out_fd, json.dumps(result).encode())
    os._exit(0)


PARENT = os.getpid()
DONE = tempfile.mkdtemp()  # parent-exits: one file per child that has reported
results: dict[str, object] = {"parent": header(), "parent_type": type(_native._transport).__name__}
count = {"shared": 4, "parent-exits": 2}.get(MODE, 1)
kids = []
for _ in range(count):
    out_r, out_w = os.pipe()
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        child(out_w, go_r, ready_w)
    for fd in (out_w, go_r, ready_w):
        os.close(fd)
    kids.append((pid, out_r, go_w, ready_r))
if MODE == "parent-exits":
    for kid in kids:
        wait_for(kid[3])
    os._exit(0)  # the child goes on without its parent
if MODE == "parent-env":
    wait_for(kids[0][3])
    os.environ["MLFLOW_SECRETS_TIMEOUT_SEC"] = "9"  # another environment, same secret
    results["parent_after_change"] = header()
    os.write(kids[0][2], b"1")
results["children"] = []
for pid, out_r, _, _ in kids:
    deadline = time.monotonic() + BOUND
    while not os.waitpid(pid, os.WNOHANG)[0]:
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            raise SystemExit("a forked child hung")
        time.sleep(0.02)
    data = b""
    while chunk := os.read(out_r, 65536):
        data += chunk
    results["children"].append(json.loads(data) if data else {"error": "no report"})  # type: ignore[attr-defined]
print(json.dumps(results))
