"""Log a run in this process, then one in each of 8 pool workers started with
the start method given in argv[1]; print one JSON line with what happened."""

import json
import multiprocessing as mp
import sys

import mlflow


def cold_cache() -> None:
    """As if the parent's cached headers had expired: every worker must reach
    the core (for fork, through the helper)."""
    from mlflow_secrets_auth import provider

    provider._entries.clear()


def log_run(i: int) -> tuple[str, str]:
    from mlflow_secrets_auth import _native

    with mlflow.start_run(run_name=f"worker-{i}") as run:
        mlflow.log_param("worker", i)
        mlflow.log_metric("x", float(i))
    t = _native._transport
    return run.info.run_id, type(t).__name__ if t is not None else "none"


if __name__ == "__main__":
    method = sys.argv[1]
    mlflow.set_experiment(f"pool-{method}")
    with mlflow.start_run(run_name="parent") as parent:
        mlflow.log_param("role", "parent")
    with mp.get_context(method).Pool(8, initializer=cold_cache) as pool:
        results = pool.map(log_run, range(8))
    print(json.dumps({"parent": parent.info.run_id, "workers": results}))
