"""``mlflow-secrets-auth`` command: ``info`` and ``doctor [--dry-run URL]``.

Exit status 0 when everything checked is fine, 1 otherwise. Output never
contains a secret: the core reports header values redacted.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mlflow_secrets_auth import __version__, _native


def _load() -> _native.Transport:
    from mlflow_secrets_auth.provider import sync

    return sync(_native.transport)


def _error(e: dict[str, Any]) -> str:
    text = str(e.get("message", ""))
    if e.get("variable"):
        text += f"  [variable: {e['variable']}]"
    return text


def _print_warnings(reply: dict[str, Any], prefix: str) -> None:
    """Every configuration warning the core reports (already free of secrets)."""
    for warning in reply.get("warnings") or []:
        print(f"{prefix}{warning}")


def _paths(header: str) -> list[str]:
    """Which credential each MLflow path sends in this environment (after ``_load``)."""
    import os

    from mlflow_secrets_auth import otlp, provider

    covered = otlp.covers(os.environ, otlp._installed(otlp.EXPORTER_DIST), otlp._registered(), otlp._mlflow_version())
    return otlp.credential_paths(os.environ, header or "Authorization", provider._static, covered)


def cmd_info(args: argparse.Namespace) -> int:
    info = _load().info()
    notes = _native.transport_notes()
    if args.json:
        info["transport"] = notes[0].split(": ", 1)[-1] if notes else ""
        info["credential_paths"] = _paths(str(info.get("header_name") or ""))
        print(json.dumps(info, indent=2))
        return 0 if info.get("ok") else 1
    print(f"mlflow-secrets-auth {__version__} (library {info.get('version')}, ABI {info.get('abi')})")
    for note in notes:
        print(note)
    _print_warnings(info, "warning: ")
    if not info.get("ok"):
        print(f"configuration error: {_error(info)}")
        return 1
    providers = info.get("providers") or []
    print("enabled providers: " + (", ".join(p["name"] for p in providers) or "(none)"))
    for p in providers:
        if p.get("error"):
            print(f"  {p['name']}: NOT USABLE: {_error(p['error'])}")
            continue
        print(f"  {p['name']}: mode {p['mode']}, ttl {p['ttl_seconds']}s")
        for name, value in p.get("details") or []:
            print(f"    {name}: {value}")
    hosts = info.get("allowed_hosts") or []
    print(f"allowed hosts ({info.get('allowed_from')}): " + (", ".join(hosts) or "(none)"))
    print(f"header: {info.get('header_name')}")
    print("credential per path:")
    for line in _paths(str(info.get("header_name") or "")):
        print(f"  {line}")
    servers = info.get("servers") or []
    for server in servers:
        sets = ", ".join(server.get("variables") or []) or "nothing"
        names = ", ".join(p.get("name", "?") for p in server.get("providers") or []) or "none"
        print(
            f"server {server.get('pattern')} (MLFLOW_SECRETS_SERVERS): sets {sets}; providers: {names}; "
            f"header: {server.get('header_name')}"
        )
        if server.get("error"):
            print(f"  NOT USABLE: {_error(server['error'])}")
    return (
        0
        if all(not p.get("error") for p in providers) and providers and not any(s.get("error") for s in servers)
        else 1
    )


def _dry_run(url: str) -> tuple[bool, str]:
    """One GET through MLflow's own request function, with the host credentials
    MLflow builds from the environment (so its TLS settings apply:
    MLFLOW_TRACKING_SERVER_CERT_PATH, MLFLOW_TRACKING_INSECURE_TLS,
    MLFLOW_TRACKING_CLIENT_CERT_PATH) and this plugin as the auth."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request
    from requests import PreparedRequest
    from requests.utils import urldefragauth

    from mlflow_secrets_auth.provider import MlflowSecretsAuthError, SecretsAuth

    # Userinfo and fragment never go on the wire with an auth object set; without
    # them the URL can appear in any message.
    target = urldefragauth(url)
    plugin = SecretsAuth()
    sent: dict[str, bool] = {}

    def auth(r: PreparedRequest) -> PreparedRequest:
        hooks = len(r.hooks["response"])
        r = plugin(r)
        sent["headers"] = len(r.hooks["response"]) > hooks  # the plugin hooks exactly the requests it adds to
        return r

    try:
        creds = get_default_host_creds(target)  # type: ignore[no-untyped-call]
        creds.auth, creds.aws_sigv4 = None, False  # the plugin's auth, watched, is passed below
        resp = http_request(  # type: ignore[no-untyped-call]
            creds, "", "GET", max_retries=0, timeout=30, raise_on_status=False, auth=auth
        )
    except MlflowSecretsAuthError as exc:
        return False, str(exc)
    except MlflowException as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, MlflowSecretsAuthError):
            return False, str(cause)
        return False, f"GET {target} failed: {exc.message}"
    how = "with credentials" if sent.get("headers") else "WITHOUT credentials"
    if resp.status_code in (401, 403):
        return False, f"GET {target} sent {how}: HTTP {resp.status_code}: the server rejected the request"
    return sent.get("headers", False), f"GET {target} sent {how}: HTTP {resp.status_code}"


def cmd_doctor(args: argparse.Namespace) -> int:
    from mlflow_secrets_auth.provider import interruptible

    t = _load()
    report = interruptible(lambda: t.doctor(args.dry_run or ""))
    ok = bool(report.get("ok"))
    for check in report.get("checks") or []:
        mark = "ok  " if check.get("ok") else "FAIL"
        text = check.get("detail") or _error(check.get("error") or {})
        print(f"[{mark}] {check['name']}: {text}")
    _print_warnings(report, "[warn] ")
    if args.dry_run and ok:
        passed, text = _dry_run(args.dry_run)
        print(f"[{'ok  ' if passed else 'FAIL'}] dry run: {text}")
        ok = ok and passed
    from mlflow_secrets_auth import otlp

    for passed, text in otlp.doctor_checks():
        print(f"[{'ok  ' if passed else 'FAIL'}] {text}")
        ok = ok and passed
    for text in otlp.gaps():
        print(f"[note] {text}")
    for text in _paths(str(t.info().get("header_name") or "")):
        print(f"[path] {text}")
    print("doctor: all checks passed" if ok else "doctor: problems found (see FAIL lines)")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlflow-secrets-auth", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mlflow-secrets-auth {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="show the effective configuration")
    p_info.add_argument("--json", action="store_true", help="print the raw JSON report")
    p_info.set_defaults(func=cmd_info)
    p_doc = sub.add_parser("doctor", help="check configuration, backends and headers")
    p_doc.add_argument("--dry-run", metavar="URL", help="also send one GET request to URL with the credentials")
    p_doc.set_defaults(func=cmd_doctor)
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except _native.NativeError as exc:
        print(f"mlflow-secrets-auth: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
