"""Run at interpreter start-up by ``mlflow_secrets_auth_otlp.pth`` (site-packages).

When ``MLFLOW_TRACKING_AUTH`` selects this plugin, OpenTelemetry's OTLP/HTTP
trace exporter is pointed at the plugin's credential provider (the
``opentelemetry_otlp_credential_provider`` entry point ``mlflow_secrets_auth``,
see ``otlp.py``), unless the user already named a provider. MLflow builds that
exporter with no session of its own, so this is what puts the credential on
``mlflow.otel.autolog()`` spans and on the OTLP exporter MLflow enables for
``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT``.

Start-up cost matters here: every interpreter of the environment runs this.
It imports nothing but ``os`` (already imported by ``site``) and only reads
and, at most, sets one variable.
"""

import os
from _collections_abc import MutableMapping  # what collections.abc re-exports; os has imported it already

PLUGIN = "mlflow_secrets_auth"  # the MLflow plugin name (provider.NAME) and the entry point's name
TRACKING_AUTH = "MLFLOW_TRACKING_AUTH"
# OpenTelemetry >= 1.37 reads the signal-less variable first, then the traces one.
HTTP_PROVIDER = "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER"
TRACES_PROVIDER = "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER"


def apply(environ: MutableMapping[str, str]) -> bool:
    """Name our provider for OTLP/HTTP traces if this plugin is selected and the user set neither variable.

    A variable set to the empty string counts as set: that is how a user turns this off.
    Returns True when it set the variable.
    """
    if environ.get(TRACKING_AUTH) != PLUGIN or HTTP_PROVIDER in environ or TRACES_PROVIDER in environ:
        return False
    environ[TRACES_PROVIDER] = PLUGIN
    return True


apply(os.environ)
