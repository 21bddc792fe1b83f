"""The MLflow path matrix: every way an unmodified MLflow script talks to the tracking
server, each in a fresh process, against a real ``mlflow server --app-name basic-auth``.

OpenBao holds the server's credential and the script's environment has no
MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN (``clean_env`` removes every MLFLOW_*
and OTEL_* variable): whatever the server stored got there with the plugin's
credential. Each test reads back, with the admin credential, what the server
stored. The one path no supported hook reaches (``gateway:/`` judges) is
asserted as the documented gap: a 401.

The scripts run under ``conftest.client_python()``: MSA_MLFLOW_PYTHON if set
(``make test-mlflow2``: an MLflow 2.x environment), else this interpreter; the
servers stay this environment's. A test whose script uses an MLflow feature the
client's MLflow does not have is skipped, naming the feature and the release
that added it (``needs``).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

import harness
import pytest
from conftest import clean_env, client_python
from mlflow import MlflowClient
from mlflow_secrets_auth import _startup, otlp, provider
from packaging.version import Version

OTLP_PROVIDER_VARS = (_startup.TRACES_PROVIDER, _startup.HTTP_PROVIDER)


class Feature(NamedTuple):
    """What a client script needs from MLflow, and the first MLflow release that has it."""

    what: str
    since: str


LAST_TRACE_ID = Feature("mlflow.get_last_active_trace_id()", "2.22.0")
# MLflow exports over OTLP since 2.16.1, but until 3.1.1 its OtelSpanProcessor cannot be built with
# opentelemetry-sdk 1.35 or later (it assigns BatchSpanProcessor.span_exporter, a read-only property
# since 1.35; the trace is lost, logged at DEBUG only), and the credential-provider hook needs 1.37.
OTLP_EXPORT = Feature("OTLP export with opentelemetry-sdk 1.35+ (the credential provider needs 1.37+)", "3.1.1")
PROMPT_REGISTRY = Feature("the prompt registry (mlflow.register_prompt)", "2.21.0")
GENAI_PROMPTS = Feature("mlflow.genai.register_prompt", "3.1.0")
OTEL_AUTOLOG_API = Feature("mlflow.otel.autolog()", "3.11.0")
GENAI_EVALUATE = Feature("mlflow.genai.evaluate with mlflow.genai.scorers", "3.0.0")
MAKE_JUDGE = Feature("mlflow.genai.judges.make_judge", "3.4.0")


def needs(*features: Feature) -> pytest.MarkDecorator:
    return pytest.mark.mlflow_features(*features)


def has(version: Version, feature: Feature) -> bool:
    return version >= Version(feature.since)


@pytest.fixture(autouse=True)
def _skip_without_mlflow_features(request: pytest.FixtureRequest, client_mlflow_version: Version) -> None:
    """Skips a test marked ``needs(...)`` when the client's MLflow lacks a feature, naming each."""
    marker = request.node.get_closest_marker("mlflow_features")
    missing = [f for f in (marker.args if marker else ()) if not has(client_mlflow_version, f)]
    if missing:
        named = "; nor ".join(f"{f.what} (MLflow {f.since} and later)" for f in missing)
        pytest.skip(f"MLflow {client_mlflow_version} has no {named}")


def run_script(code: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``python -c code`` in a fresh process whose environment is the user's (``env``) and nothing else
    of the plugin's, MLflow's or OpenTelemetry's."""
    full = {k: v for k, v in clean_env(**env).items() if not (k.startswith("OTEL_") and k not in env)}
    return subprocess.run(
        [client_python(), "-c", textwrap.dedent(code)],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def output(result: subprocess.CompletedProcess[str], secret: str) -> dict[str, Any]:
    """The JSON line the script printed last; the script succeeded and leaked nothing."""
    assert result.returncode == 0, result.stderr[-3000:]
    assert secret not in result.stdout + result.stderr
    value: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return value


@pytest.fixture()
def admin(mlflow_server: harness.MlflowServer, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """An MLflow client in this process that reads the server with the admin credential."""
    for var in ("MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    user, password = mlflow_server.basic_auth
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    # Trace data an MLflow 2.x client stored as an mlflow-artifacts: file is read through the tracking URI.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


PRELUDE = """
import json, os, sys
import mlflow
mlflow.set_experiment(os.environ["MSA_TEST_EXPERIMENT"])
"""


def script(body: str) -> str:
    """A script that first selects the experiment named by MSA_TEST_EXPERIMENT (a REST call)."""
    return PRELUDE + textwrap.dedent(body)


def experiment_name() -> str:
    return f"paths-{secrets.token_hex(4)}"


def test_run_with_params_metrics_and_artifact(
    basic_env: dict[str, str], admin: MlflowClient, mlflow_server: harness.MlflowServer
) -> None:
    code = script("""
    with mlflow.start_run() as run:
        mlflow.log_param("alpha", "0.5")
        mlflow.log_metric("loss", 0.25, step=1)
        mlflow.log_text("hello", "notes/hello.txt")
    print(json.dumps({"run_id": run.info.run_id}))
    """)
    out = output(run_script(code, {**basic_env, "MSA_TEST_EXPERIMENT": experiment_name()}),
                 mlflow_server.admin_password)
    run = admin.get_run(out["run_id"])
    assert run.data.params == {"alpha": "0.5"}
    assert run.data.metrics == {"loss": 0.25}
    assert [f.path for f in admin.list_artifacts(out["run_id"], "notes")] == ["notes/hello.txt"]
    assert admin.download_artifacts(out["run_id"], "notes/hello.txt", dst_path=None)


def test_registered_model_version(
    basic_env: dict[str, str], admin: MlflowClient, mlflow_server: harness.MlflowServer
) -> None:
    name = f"model-{secrets.token_hex(4)}"
    code = script(f"""
    client = mlflow.MlflowClient()
    with mlflow.start_run() as run:
        mlflow.log_text("weights", "model/weights.txt")
    client.create_registered_model({name!r})
    mv = client.create_model_version({name!r}, source=f"runs:/{{run.info.run_id}}/model", run_id=run.info.run_id)
    print(json.dumps({{"version": mv.version}}))
    """)
    out = output(run_script(code, {**basic_env, "MSA_TEST_EXPERIMENT": experiment_name()}),
                 mlflow_server.admin_password)
    version = admin.get_model_version(name, out["version"])
    assert version.name == name and version.version == "1"


@needs(PROMPT_REGISTRY)
def test_prompt(
    basic_env: dict[str, str], admin: MlflowClient, mlflow_server: harness.MlflowServer, client_mlflow_version: Version
) -> None:
    """mlflow.genai.register_prompt; before MLflow 3.1, mlflow.register_prompt (the same registry calls)."""
    name = f"prompt-{secrets.token_hex(4)}"
    register = "mlflow.genai.register_prompt" if has(client_mlflow_version, GENAI_PROMPTS) else "mlflow.register_prompt"
    code = script(f"""
    p = {register}(name={name!r}, template="Answer {{{{question}}}} briefly.")
    print(json.dumps({{"version": p.version}}))
    """)
    out = output(run_script(code, {**basic_env, "MSA_TEST_EXPERIMENT": experiment_name()}),
                 mlflow_server.admin_password)
    prompt = admin.get_prompt_version(name, out["version"])
    assert prompt.template == "Answer {{question}} briefly."


TRACED = """
@mlflow.trace(name="traced-step")
def step(x):
    return x * 2

step(21)
trace_id = mlflow.get_last_active_trace_id()
print(json.dumps({"trace_id": trace_id}))
"""


def span_names(client: MlflowClient, trace_id: str) -> list[str]:
    return [span.name for span in client.get_trace(trace_id).data.spans]


@needs(LAST_TRACE_ID)
def test_trace_default_exporter(
    basic_env: dict[str, str], admin: MlflowClient, mlflow_server: harness.MlflowServer
) -> None:
    """@mlflow.trace with MLflow's own exporter (asynchronous: the flush at exit sends it)."""
    out = output(run_script(script(TRACED), {**basic_env, "MSA_TEST_EXPERIMENT": experiment_name()}),
                 mlflow_server.admin_password)
    assert span_names(admin, out["trace_id"]) == ["traced-step"]


def otlp_env(basic_env: dict[str, str], server: harness.MlflowServer, admin: MlflowClient,
             endpoint: str | None = None) -> dict[str, str]:
    experiment_id = admin.create_experiment(experiment_name())
    return {
        **basic_env,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint or f"{server.url}/v1/traces",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
        # The MLflow server files OTLP spans under the experiment this header names.
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": f"x-mlflow-experiment-id={experiment_id}",
        "MSA_TEST_EXPERIMENT_ID": experiment_id,
    }


OTLP_TRACED = """
import json
import mlflow

@mlflow.trace(name="otlp-step")
def step(x):
    return x * 2

step(21)
trace_id = mlflow.get_last_active_trace_id()
print(json.dumps({"trace_id": trace_id}))
"""


def traces_in(client: MlflowClient, experiment_id: str) -> dict[str, list[str]]:
    found = client.search_traces(locations=[experiment_id], include_spans=True)
    return {t.info.trace_id: [s.name for s in t.data.spans] for t in found}


@needs(OTLP_EXPORT, LAST_TRACE_ID)
def test_trace_otlp_exporter(
    basic_env: dict[str, str], admin: MlflowClient, mlflow_server: harness.MlflowServer
) -> None:
    """OTEL_EXPORTER_OTLP_TRACES_ENDPOINT at the server's /v1/traces: the exporter's session is ours."""
    env = otlp_env(basic_env, mlflow_server, admin)
    result = run_script(OTLP_TRACED, env)
    output(result, mlflow_server.admin_password)
    assert list(traces_in(admin, env["MSA_TEST_EXPERIMENT_ID"]).values()) == [["otlp-step"]], result.stderr[-2000:]


@needs(OTLP_EXPORT, LAST_TRACE_ID)
def test_trace_otlp_exporter_without_our_provider_is_refused(
    basic_env: dict[str, str], admin: MlflowClient, mlflow_server: harness.MlflowServer
) -> None:
    """The same export with the provider variable set empty (the documented opt-out) goes out
    without a credential: the server answers 401 and stores nothing. So the test above passes
    because of the credential provider, not because /v1/traces is open."""
    env = otlp_env(basic_env, mlflow_server, admin)
    env[_startup.TRACES_PROVIDER] = ""
    result = run_script(OTLP_TRACED, env)
    assert result.returncode == 0  # MLflow and OpenTelemetry lose the trace silently
    assert "401" in result.stderr, result.stderr[-2000:]
    assert traces_in(admin, env["MSA_TEST_EXPERIMENT_ID"]) == {}


OTEL_AUTOLOG = script("""
import mlflow.otel
from opentelemetry import trace as otel

mlflow.otel.autolog(batch=False)
with otel.get_tracer("paths-test").start_as_current_span("otel-span") as span:
    span.set_attribute("answer", 42)
    trace_hex = format(span.get_span_context().trace_id, "032x")
print(json.dumps({"experiment_id": mlflow.get_experiment_by_name(os.environ["MSA_TEST_EXPERIMENT"]).experiment_id,
                  "trace_hex": trace_hex}))
""")


@needs(OTEL_AUTOLOG_API)
def test_span_through_otel_autolog(
    basic_env: dict[str, str], admin: MlflowClient, mlflow_server: harness.MlflowServer
) -> None:
    """mlflow.otel.autolog(): a plain OpenTelemetry span, exported to the server's /v1/traces."""
    out = output(run_script(OTEL_AUTOLOG, {**basic_env, "MSA_TEST_EXPERIMENT": experiment_name()}),
                 mlflow_server.admin_password)
    assert list(traces_in(admin, out["experiment_id"]).values()) == [["otel-span"]]
    assert admin.get_trace(f"tr-{out['trace_hex']}").data.spans[0].attributes["answer"] == 42


EVALUATE = script("""
from mlflow.genai.scorers import scorer

@scorer
def exact(outputs, expectations):
    return outputs == expectations["answer"]

data = [
    {"inputs": {"q": "2+2"}, "outputs": "4", "expectations": {"answer": "4"}},
    {"inputs": {"q": "3+3"}, "outputs": "7", "expectations": {"answer": "6"}},
]
result = mlflow.genai.evaluate(data=data, scorers=[exact])
print(json.dumps({"run_id": result.run_id}))
""")


@needs(GENAI_EVALUATE)
def test_evaluation_with_code_scorer(
    basic_env: dict[str, str], admin: MlflowClient, mlflow_server: harness.MlflowServer
) -> None:
    out = output(run_script(EVALUATE, {**basic_env, "MSA_TEST_EXPERIMENT": experiment_name()}),
                 mlflow_server.admin_password)
    metrics = admin.get_run(out["run_id"]).data.metrics
    assert metrics.get("exact/mean") == 0.5, metrics


GATEWAY_JUDGE = script("""
from mlflow.genai.judges import make_judge

judge = make_judge(name="concise", instructions="Is {{ outputs }} concise? Answer yes or no.",
                   model="gateway:/paths-test-endpoint", feedback_value_type=bool)
try:
    judge(outputs="four")
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:2000]}))
else:
    print(json.dumps({"error": None}))
""")


@needs(MAKE_JUDGE)
def test_gateway_judge_is_the_documented_gap(
    basic_env: dict[str, str], mlflow_server: harness.MlflowServer
) -> None:
    """gateway:/ judges build their own Authorization header from MLFLOW_TRACKING_USERNAME/PASSWORD
    only (mlflow/genai/utils/gateway_utils.py: _build_auth_headers): with the plugin alone the server
    answers 401. With the static variables the same call gets past authentication (the endpoint does
    not exist), so the 401 is the missing credential. The README and doctor list this gap."""
    env = {**basic_env, "MSA_TEST_EXPERIMENT": experiment_name()}
    mark = log_size(mlflow_server)
    error = output(run_script(GATEWAY_JUDGE, env), mlflow_server.admin_password)["error"]
    assert error is not None and "You are not authenticated" in error, error
    assert gateway_statuses(mlflow_server, mark) == ["401"]
    assert any("gateway:/" in text and "_build_auth_headers" in text for text in otlp.NOT_COVERED)

    user, password = mlflow_server.basic_auth
    static = {**env, "MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password}
    mark = log_size(mlflow_server)
    error = output(run_script(GATEWAY_JUDGE, static), password)["error"]
    assert error is not None and "GatewayEndpoint not found" in error, error
    assert gateway_statuses(mlflow_server, mark) == ["404"]


def log_size(server: harness.MlflowServer) -> int:
    assert server.log_path is not None
    return server.log_path.stat().st_size


def gateway_statuses(server: harness.MlflowServer, since: int) -> list[str]:
    """The statuses the server's access log shows for gateway chat calls after offset ``since``."""
    assert server.log_path is not None
    with open(server.log_path, "rb") as f:
        f.seek(since)
        lines = f.read().decode(errors="replace").splitlines()
    path = '"POST /gateway/mlflow/v1/chat/completions HTTP/1.1" '
    return [line.split(path, 1)[1].split()[0] for line in lines if path in line]


# --------------------------------------------------------------------------- #
# A collector outside the host policy gets nothing from us.
# --------------------------------------------------------------------------- #


class Collector:
    """An OTLP/HTTP endpoint on 127.0.0.1 that records each request's headers and answers 200."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen.append({k.lower(): v for k, v in self.headers.items()} | {":path": self.path})
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((harness.LOCALHOST, 0), Handler)
        self.url = f"http://{harness.LOCALHOST}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture()
def collector() -> Iterator[Collector]:
    c = Collector()
    try:
        yield c
    finally:
        c.close()


@needs(OTLP_EXPORT, LAST_TRACE_ID)
@pytest.mark.parametrize("allowed", [False, True], ids=["outside-policy", "allowed-by-policy"])
def test_collector_gets_the_credential_only_if_the_policy_allows(
    basic_env: dict[str, str],
    admin: MlflowClient,
    mlflow_server: harness.MlflowServer,
    collector: Collector,
    allowed: bool,
) -> None:
    env = otlp_env(basic_env, mlflow_server, admin, endpoint=f"{collector.url}/v1/traces")
    if allowed:
        env["MLFLOW_SECRETS_ALLOWED_HOSTS"] = f"{mlflow_server.url},{collector.url}"
    output(run_script(OTLP_TRACED, env), mlflow_server.admin_password)
    assert [r[":path"] for r in collector.requests] == ["/v1/traces"]
    sent = collector.requests[0].get("authorization")
    carried = sent == mlflow_server.basic_auth_header  # compared, never shown in a failure
    assert carried is allowed
    assert allowed or sent is None


# --------------------------------------------------------------------------- #
# The start-up file and the entry point, as installed.
# --------------------------------------------------------------------------- #


def provider_vars_at_start(env: dict[str, str]) -> dict[str, str | None]:
    code = f"import json, os; print(json.dumps({{v: os.environ.get(v) for v in {list(OTLP_PROVIDER_VARS)!r}}}))"
    result = run_script(code, env, timeout=60)
    assert result.returncode == 0, result.stderr
    value: dict[str, str | None] = json.loads(result.stdout)
    return value


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MLFLOW_TRACKING_AUTH": "mlflow_secrets_auth"}, "mlflow_secrets_auth"),
        ({}, None),
        ({"MLFLOW_TRACKING_AUTH": "other_plugin"}, None),
        ({"MLFLOW_TRACKING_AUTH": "mlflow_secrets_auth", _startup.TRACES_PROVIDER: "theirs"}, "theirs"),
        ({"MLFLOW_TRACKING_AUTH": "mlflow_secrets_auth", _startup.TRACES_PROVIDER: ""}, ""),
        ({"MLFLOW_TRACKING_AUTH": "mlflow_secrets_auth", _startup.HTTP_PROVIDER: "theirs"}, None),
    ],
    ids=["selected", "not-selected", "other-plugin", "user-named-one", "user-opted-out", "signal-less-set"],
)
def test_startup_file_sets_the_traces_provider_only_when_ours_and_unset(
    env: dict[str, str], expected: str | None
) -> None:
    assert provider_vars_at_start(env)[_startup.TRACES_PROVIDER] == expected


def test_wheel_installs_the_startup_file_and_the_entry_point() -> None:
    """The start-up file sits at the root of site-packages and is in RECORD, so pip uninstall removes it
    (as installed for the client interpreter)."""
    code = f"""
    import json
    from importlib import metadata
    dist = metadata.distribution("mlflow-secrets-auth")
    pth = [f for f in dist.files or () if f.name == "mlflow_secrets_auth_otlp.pth"]
    eps = [ep for ep in dist.entry_points if ep.group == {otlp.ENTRY_POINT_GROUP!r}]
    print(json.dumps({{"pth": [str(f) for f in pth], "text": [f.read_text() for f in pth],
                      "eps": [[ep.name, ep.value] for ep in eps]}}))
    """
    result = run_script(code, {}, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == {
        "pth": ["mlflow_secrets_auth_otlp.pth"],
        "text": ["import mlflow_secrets_auth._startup\n"],
        "eps": [["mlflow_secrets_auth", "mlflow_secrets_auth.otlp:session"]],
    }


def test_entry_point_session_carries_the_plugins_auth() -> None:
    """OpenTelemetry's own loader finds our entry point and gets a session whose auth is the plugin's."""
    code = """
    import json
    from opentelemetry.exporter.otlp.proto.http._common import _load_session_from_envvar
    from mlflow_secrets_auth import provider
    s = _load_session_from_envvar("OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER")
    print(json.dumps({"auth_is_plugins": s is not None and s.auth is provider._AUTH}))
    """
    result = run_script(code, {"MLFLOW_TRACKING_AUTH": "mlflow_secrets_auth"}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == {"auth_is_plugins": True}
    assert _startup.PLUGIN == provider.NAME  # the start-up file names the plugin MLflow loads
