"""What the `titan` command says of states, against a real cluster: a DAG nothing has
started, and how a followed job ended."""

from __future__ import annotations

from tests.integration.harness import Cluster, shared_cluster
from tests.integration.test_cli import titan

cluster = shared_cluster()  # its worker offers GENERAL: a GPU job waits


def test_a_dag_nothing_has_started_is_waiting_after_a_cancel_and_a_retry(cluster: Cluster) -> None:
    # Seed 000's WAITING is "no jobs have started yet": cancelling one of its jobs, and
    # retrying the whole cancelled DAG, made it RUNNING with every job only queued.
    (cluster.root / "ok.py").write_text("print('ok')\n")
    (cluster.root / "gpuq.yaml").write_text(
        "name: gpuq\njobs:\n  - id: g1\n    file: ok.py\n    requirement: GPU\n"
        "  - id: g2\n    file: ok.py\n    depends_on: [g1]\n  - id: g3\n    file: ok.py\n"
        "    requirement: GPU\n")
    titan(cluster, "submit", "gpuq.yaml")
    assert titan(cluster, "status", "DAG-gpuq").stdout.startswith("DAG-gpuq#1  WAITING")
    titan(cluster, "cancel", "g3")
    said = titan(cluster, "status", "DAG-gpuq").stdout
    assert said.startswith("DAG-gpuq#1  WAITING  (CANCELLED 1, PENDING 2)"), said
    titan(cluster, "cancel", "DAG-gpuq")
    assert titan(cluster, "retry", "DAG-gpuq").stdout == "gpuq#1: WAITING\n"
    assert titan(cluster, "status", "DAG-gpuq").stdout.startswith("DAG-gpuq#1  WAITING")
    titan(cluster, "cancel", "DAG-gpuq")
