"""OTLP trace export: the start-up default and doctor's checks, as pure logic."""

from __future__ import annotations

import pytest
from mlflow_secrets_auth import _startup, otlp, provider

OURS = {"MLFLOW_TRACKING_AUTH": "mlflow_secrets_auth"}
TRACES, HTTP = _startup.TRACES_PROVIDER, _startup.HTTP_PROVIDER


def test_the_names_agree_with_the_plugin_and_opentelemetry() -> None:
    from opentelemetry.sdk import environment_variables as otel_env

    assert _startup.PLUGIN == provider.NAME
    assert TRACES == otel_env._OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER
    assert HTTP == otel_env._OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER


@pytest.mark.parametrize(
    ("env", "changed", "after"),
    [
        (OURS, True, "mlflow_secrets_auth"),
        ({}, False, None),
        ({"MLFLOW_TRACKING_AUTH": "mlflow_secrets_auth "}, False, None),  # MLflow matches the name exactly
        ({**OURS, TRACES: "theirs"}, False, "theirs"),
        ({**OURS, TRACES: ""}, False, ""),  # the opt-out
        ({**OURS, HTTP: "theirs"}, False, None),
        ({**OURS, HTTP: ""}, False, None),
    ],
)
def test_apply(env: dict[str, str], changed: bool, after: str | None) -> None:
    environ = dict(env)
    assert _startup.apply(environ) is changed
    assert environ.get(TRACES) == after
    assert {k: v for k, v in environ.items() if k != TRACES} == {k: v for k, v in env.items() if k != TRACES}


def test_ensure_env_sets_the_default_in_a_given_mapping() -> None:
    environ = dict(OURS)
    assert otlp.ensure_env(environ)
    assert not otlp.ensure_env(environ)  # once
    assert environ[TRACES] == "mlflow_secrets_auth"


def oks(checks: list[otlp.Check]) -> list[bool]:
    return [ok for ok, _ in checks]


def text(checks: list[otlp.Check]) -> str:
    return "\n".join(message for _, message in checks)


def test_assess_all_good() -> None:
    checks = otlp.assess({**OURS, TRACES: "mlflow_secrets_auth"}, "1.45.2", True)
    assert oks(checks) == [True]
    assert "carry the credential" in text(checks) and "1.45.2" in text(checks)


def test_assess_plugin_not_selected() -> None:
    checks = otlp.assess({TRACES: "mlflow_secrets_auth"}, "1.45.2", True)
    assert oks(checks) == [False]
    assert "MLFLOW_TRACKING_AUTH does not select mlflow_secrets_auth" in text(checks)


@pytest.mark.parametrize("version", ["1.36.0", "1.20.0", "1.36.0rc1"])
def test_assess_old_opentelemetry_sends_without_the_credential(version: str) -> None:
    checks = otlp.assess({**OURS, TRACES: "mlflow_secrets_auth"}, version, True)
    assert oks(checks) == [False]
    assert f"{version} is older than 1.37" in text(checks) and "WITHOUT the credential" in text(checks)


@pytest.mark.parametrize("version", ["1.37.0", "1.37", "2.0.0"])
def test_assess_new_enough(version: str) -> None:
    assert oks(otlp.assess({**OURS, TRACES: "mlflow_secrets_auth"}, version, True)) == [True]


def test_assess_entry_point_missing() -> None:
    checks = otlp.assess({**OURS, TRACES: "mlflow_secrets_auth"}, "1.45.2", False)
    assert oks(checks) == [False]
    assert "opentelemetry_otlp_credential_provider" in text(checks)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({TRACES: "theirs"}, f"{TRACES}='theirs' names another credential provider"),
        ({HTTP: "theirs", TRACES: "mlflow_secrets_auth"}, f"{HTTP}='theirs' names another"),  # read first
        ({TRACES: ""}, "is empty or unset"),
        ({}, "is empty or unset"),
    ],
)
def test_assess_provider_not_ours(env: dict[str, str], says: str) -> None:
    checks = otlp.assess({**OURS, **env}, "1.45.2", True)
    assert oks(checks) == [False]
    assert says in text(checks) and "WITHOUT" in text(checks)


def test_assess_signal_less_variable_naming_us_is_fine() -> None:
    assert oks(otlp.assess({**OURS, HTTP: "mlflow_secrets_auth"}, "1.45.2", True)) == [True]


@pytest.mark.parametrize(
    ("protocol", "bad"),
    [
        ({}, True),  # MLflow's default is grpc
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, True),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, False),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, False),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, False),
    ],
)
@pytest.mark.parametrize("endpoint", ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"])
def test_assess_grpc_protocol(protocol: dict[str, str], bad: bool, endpoint: str) -> None:
    env = {**OURS, TRACES: "mlflow_secrets_auth", endpoint: "http://127.0.0.1:5000/v1/traces", **protocol}
    checks = otlp.assess(env, "1.45.2", True)
    assert oks(checks) == ([True, False] if bad else [True])
    assert ("gRPC" in text(checks)) is bad


def test_assess_no_grpc_warning_without_an_endpoint() -> None:
    env = {**OURS, TRACES: "mlflow_secrets_auth", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    assert oks(otlp.assess(env, "1.45.2", True)) == [True]  # mlflow.otel.autolog always uses HTTP


def test_assess_exporter_not_installed() -> None:
    assert oks(otlp.assess(OURS, None, True)) == [True]
    checks = otlp.assess({**OURS, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, None, True)
    assert oks(checks) == [False]
    assert "is not installed" in text(checks)


@pytest.mark.parametrize(
    ("mlflow", "exporter", "lost"),
    [
        ("2.22.5", "1.44.0", True),  # every MLflow 2.x: its OtelSpanProcessor cannot be built
        ("3.1.0", "1.37.0", True),
        ("2.16.1", "1.37.0", True),
        ("3.1.1", "1.37.0", False),
        ("3.17.2", "1.45.2", False),
        (None, "1.45.2", False),  # MLflow not found: nothing to say
    ],
)
def test_assess_mlflow_before_3_1_1_loses_otlp_traces(mlflow: str | None, exporter: str, lost: bool) -> None:
    env = {**OURS, TRACES: "mlflow_secrets_auth", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:5000/v1/traces",
           "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}
    checks = otlp.assess(env, exporter, True, mlflow)
    assert oks(checks) == ([True, False] if lost else [True])
    assert (f"MLflow {mlflow} cannot build its OTLP exporter" in text(checks)) is lost
    assert otlp.covers(env, exporter, True, mlflow) is not lost


def test_assess_old_mlflow_without_an_endpoint_exports_nothing_over_otlp() -> None:
    assert oks(otlp.assess({**OURS, TRACES: "mlflow_secrets_auth"}, "1.44.0", True, "2.22.5")) == [True]


def test_messages_never_echo_a_long_value() -> None:
    checks = otlp.assess({**OURS, TRACES: "x" * 500}, "1.45.2", True)
    assert "x" * 61 not in text(checks)


def test_doctor_checks_in_this_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The installed package: exporter found, entry point registered."""
    monkeypatch.setenv("MLFLOW_TRACKING_AUTH", "mlflow_secrets_auth")
    monkeypatch.setenv(TRACES, "mlflow_secrets_auth")
    monkeypatch.delenv(HTTP, raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert oks(otlp.doctor_checks()) == [True]


def test_gaps_name_the_gateway_judges() -> None:
    gaps = otlp.gaps()
    assert any("gateway:/" in g and "401" in g for g in gaps)
    assert all(g.startswith("not covered: ") for g in gaps)
