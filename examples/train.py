"""An ordinary MLflow training script. It knows nothing about mlflow-secrets-auth:
the tracking server and credentials come from the environment
(MLFLOW_TRACKING_URI, MLFLOW_TRACKING_AUTH=mlflow_secrets_auth and the plugin's
variables)."""

import random
import tempfile
from pathlib import Path

import mlflow

mlflow.set_experiment("secrets-auth-demo")
with mlflow.start_run() as run:
    lr = 0.01
    mlflow.log_param("learning_rate", lr)
    loss = 1.0
    for step in range(5):
        loss *= 0.8 + random.random() * 0.1
        mlflow.log_metric("loss", loss, step=step)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.txt"
        report.write_text(f"final loss {loss:.4f}\n")
        mlflow.log_artifact(str(report))

runs = mlflow.search_runs(experiment_names=["secrets-auth-demo"])
print(f"logged run {run.info.run_id}; the experiment has {len(runs)} run(s)")
