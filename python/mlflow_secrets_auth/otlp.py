"""OpenTelemetry OTLP/HTTP trace export with the plugin's credential, and what stays uncovered.

MLflow sends ``mlflow.otel.autolog()`` spans, and the traces of the OTLP
exporter it enables for ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT``, through
OpenTelemetry's ``OTLPSpanExporter``, with headers built once from the static
``MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN`` (``mlflow/tracing/utils/otlp.py``),
never through the request-auth plugin. OpenTelemetry 1.37 and later load a
``requests.Session`` for an exporter that was given none (MLflow gives none)
from the entry-point group ``opentelemetry_otlp_credential_provider``, named by
``OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER`` or
``OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER``.

:func:`session` is our entry there: its ``auth`` is the plugin's own auth
object, so the host policy, the cache, redirects and the 401 refetch apply as
on MLflow's REST calls, and a collector outside the policy gets nothing from
us. ``_startup.py`` (run by a ``.pth`` file) names it for traces when
``MLFLOW_TRACKING_AUTH`` selects this plugin and the user named no provider.

:func:`doctor_checks` says when traces would still go out without the
credential; :data:`NOT_COVERED` lists the MLflow paths no supported hook
reaches.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from importlib import metadata
from typing import TYPE_CHECKING

from mlflow_secrets_auth._startup import HTTP_PROVIDER, PLUGIN, TRACES_PROVIDER, TRACKING_AUTH

if TYPE_CHECKING:
    import requests

    from mlflow_secrets_auth.provider import Static

ENTRY_POINT_GROUP = "opentelemetry_otlp_credential_provider"
EXPORTER_DIST = "opentelemetry-exporter-otlp-proto-http"
MIN_VERSION = (1, 37)  # the first OpenTelemetry release that loads a credential-provider session
# MLflow before 3.1.1 (every 2.x) assigns BatchSpanProcessor.span_exporter, a read-only property since
# OpenTelemetry 1.35: its OTLP exporter is never built there, and every trace is lost (logged at DEBUG).
MLFLOW_OTLP_FIXED = (3, 1, 1)
SPAN_EXPORTER_READ_ONLY = (1, 35)

Check = tuple[bool, str]


def session() -> requests.Session:
    """The ``opentelemetry_otlp_credential_provider`` entry point: a session carrying the plugin's auth."""
    import requests

    from mlflow_secrets_auth.provider import SecretsAuthProvider

    s = requests.Session()
    s.auth = SecretsAuthProvider().get_auth()
    return s


def ensure_env(environ: MutableMapping[str, str] | None = None) -> bool:
    """Name our provider for OTLP/HTTP traces now, as the start-up file does.

    For a process that selected the plugin after start-up (``os.environ``
    changed in a notebook): cheap enough to call on every ``get_auth()``.
    """
    from mlflow_secrets_auth._startup import apply

    return apply(os.environ if environ is None else environ)


def _installed(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _mlflow_version() -> str | None:
    return _installed("mlflow") or _installed("mlflow-skinny")


def _registered() -> bool:
    eps = metadata.entry_points()
    group = eps.select(group=ENTRY_POINT_GROUP) if hasattr(eps, "select") else eps.get(ENTRY_POINT_GROUP, ())
    return any(ep.name == PLUGIN for ep in group)


def doctor_checks() -> list[Check]:
    """(ok, message) pairs: does OTLP trace export carry the credential in this environment?"""
    return assess(os.environ, _installed(EXPORTER_DIST), _registered(), _mlflow_version())


def _first_set(env: Mapping[str, str], *names: str) -> str | None:
    return next((name for name in names if env.get(name)), None)


def assess(
    env: Mapping[str, str], exporter_version: str | None, registered: bool, mlflow_version: str | None = None
) -> list[Check]:
    """The checks of :func:`doctor_checks` for an environment, an installed exporter version
    (None when absent), whether our entry point is installed and the installed MLflow version."""
    from packaging.version import Version

    if env.get(TRACKING_AUTH) != PLUGIN:
        return [
            (
                False,
                f"OTLP traces: {TRACKING_AUTH} does not select {PLUGIN}: no MLflow request, "
                "REST or OTLP, carries this plugin's credential",
            )
        ]
    endpoint_var = _first_set(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    if exporter_version is None:
        if endpoint_var:
            return [
                (
                    False,
                    f"OTLP traces: {endpoint_var} is set but {EXPORTER_DIST} is not installed; "
                    f"install {EXPORTER_DIST}>=1.37",
                )
            ]
        return [
            (
                True,
                f"OTLP traces: {EXPORTER_DIST} is not installed, so nothing exports over OTLP/HTTP "
                "(mlflow.otel.autolog needs it)",
            )
        ]
    checks: list[Check] = []
    if Version(exporter_version).release < MIN_VERSION:
        checks.append(
            (
                False,
                f"OTLP traces: {EXPORTER_DIST} {exporter_version} is older than 1.37: traces sent by "
                "mlflow.otel.autolog() or to OTEL_EXPORTER_OTLP_*ENDPOINT go out WITHOUT the "
                "credential (the server answers 401 and the trace is lost); "
                f"install {EXPORTER_DIST}>=1.37",
            )
        )
    elif not registered:
        checks.append(
            (
                False,
                f"OTLP traces: the entry point {PLUGIN} of group {ENTRY_POINT_GROUP} is not installed "
                "(reinstall mlflow-secrets-auth): OTLP/HTTP export fails",
            )
        )
    else:
        # OpenTelemetry reads the signal-less variable first.
        named_by = _first_set(env, HTTP_PROVIDER, TRACES_PROVIDER)
        named = env.get(named_by, "") if named_by else ""
        if named == PLUGIN:
            checks.append(
                (
                    True,
                    f"OTLP traces over HTTP carry the credential to the hosts the policy allows "
                    f"({EXPORTER_DIST} {exporter_version}, {named_by}={PLUGIN})",
                )
            )
        elif named:
            checks.append(
                (
                    False,
                    f"OTLP traces: {named_by}={named[:60]!r} names another credential provider: "
                    "traces exported over OTLP/HTTP go out WITHOUT this plugin's credential",
                )
            )
        else:
            checks.append(
                (
                    False,
                    f"OTLP traces: {TRACES_PROVIDER} is empty or unset (it is set at interpreter start "
                    f"when {TRACKING_AUTH}={PLUGIN} and neither it nor {HTTP_PROVIDER} is set): "
                    "traces exported over OTLP/HTTP go out WITHOUT the credential",
                )
            )
    if (
        endpoint_var
        and mlflow_version
        and Version(mlflow_version).release < MLFLOW_OTLP_FIXED
        and Version(exporter_version).release >= SPAN_EXPORTER_READ_ONLY
    ):
        checks.append(
            (
                False,
                f"OTLP traces: {endpoint_var} is set but MLflow {mlflow_version[:30]} cannot build "
                f"its OTLP exporter with OpenTelemetry {exporter_version} (1.35 or later): every "
                "trace is lost (logged at DEBUG only); upgrade MLflow to 3.1.1 or later",
            )
        )
    if endpoint_var:
        protocol_var = _first_set(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
        protocol = env.get(protocol_var, "") if protocol_var else ""
        if protocol in ("", "grpc"):  # MLflow refuses any other value but http/protobuf itself
            how = f"{protocol_var}={protocol[:30]!r}" if protocol_var else "no OTLP protocol is set (MLflow: grpc)"
            checks.append(
                (
                    False,
                    f"OTLP traces: {endpoint_var} is set and {how}: MLflow exports over gRPC, which "
                    "never carries this plugin's credential (and an MLflow server takes OTLP over "
                    "HTTP only); set OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf",
                )
            )
    return checks


def covers(
    env: Mapping[str, str], exporter_version: str | None, registered: bool, mlflow_version: str | None = None
) -> bool:
    """True when traces exported over OTLP/HTTP carry this plugin's credential (every :func:`assess` check passes)."""
    return exporter_version is not None and all(
        ok for ok, _ in assess(env, exporter_version, registered, mlflow_version)
    )


def credential_paths(env: Mapping[str, str], header: str, static: Static, otlp_plugin: bool) -> list[str]:
    """Which credential each MLflow path sends, for ``info`` and ``doctor`` (names only, never values).

    static: MLflow's static credential (``provider.static_credential``); otlp_plugin: :func:`covers`.
    """
    from mlflow_secrets_auth.provider import STATIC_FALLBACK_ENV, TOKEN, static_names

    names = static_names(static) if static.authorization else ""
    plugin = env.get(TRACKING_AUTH) == PLUGIN
    if names and static.fallback:
        refused = f"the static {names} ({STATIC_FALLBACK_ENV}=true)"
    else:
        refused = "no credential" + (
            f" (not the static {names} either; {STATIC_FALLBACK_ENV}=true sends it)" if names else ""
        )
    ours = (
        f"this plugin's {header} header to the hosts the policy allows"
        + (f" (replacing the static {names})" if names else "")
        + f"; other hosts: {refused}"
    )
    theirs = f"the static {names}" if names else "no credential"
    rest = ours if plugin else f"{theirs} ({TRACKING_AUTH} does not select {PLUGIN})"
    basic = tuple(n for n in static.names if n != TOKEN)
    gateway = (
        f"the static {' and '.join(basic)} (Basic), never this plugin's"
        if basic
        else "no credential (MLflow sends only a static username and password there; the server answers 401)"
    )
    return [
        f"REST (MLflow's tracking, registry and artifact calls): {rest}",
        f"OTLP/HTTP traces: {ours if plugin and otlp_plugin else theirs}",
        f"gateway:/ judges and score_model_on_payload: {gateway}",
    ]


# The README's "What is not covered" list and doctor's notes: MLflow paths that
# build their own headers from the static variables, with no supported hook.
NOT_COVERED: tuple[str, ...] = (
    "`gateway:/...` LLM judges and `score_model_on_payload` (MLflow AI Gateway endpoints served by the tracking "
    "server): MLflow builds their Authorization header itself, from MLFLOW_TRACKING_USERNAME/PASSWORD only "
    "(mlflow/genai/utils/gateway_utils.py: _build_auth_headers), and offers no hook; without those variables the "
    "server answers 401 and the judge fails with 'not authenticated'",
    "OTLP trace export over gRPC (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc, MLflow's default when an "
    "OTEL_EXPORTER_OTLP_*ENDPOINT is set): use http/protobuf",
    "OTLP trace export with opentelemetry-exporter-otlp-proto-http older than 1.37 (no credential-provider hook)",
)


def gaps() -> list[str]:
    """The paths this plugin cannot cover, for doctor to print as notes (they do not fail it)."""
    return [f"not covered: {text}" for text in NOT_COVERED]
