"""What the `titan` command says of states, against a real cluster: a DAG nothing has
started, and how a followed job ended."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.integration.harness import Cluster, shared_cluster
from tests.integration.test_cli import titan
from titan_sdk import TitanJob

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


def test_logs_follow_says_how_a_job_that_did_not_complete_ended(cluster: Cluster) -> None:
    # It exited 1 with nothing on stderr (a gate said how it was decided), and --json lines
    # did not say which attempt they were of, though a follow goes on into a retry's log.
    (cluster.root / "fail.py").write_text("import sys\nprint('bad')\nsys.exit(3)\n")
    (cluster.root / "fl.yaml").write_text(
        "name: fl\njobs:\n  - id: fl\n    file: fail.py\n    retries: 1\n")
    titan(cluster, "submit", "fl.yaml", "--wait", check=False)
    out = titan(cluster, "logs", "fl/fl", "--follow", check=False)
    assert out.returncode == 1 and out.stdout == "bad\n", out
    assert out.stderr == "fl#1/fl: FAILED: exit code 3\n", out.stderr
    out = titan(cluster, "logs", "fl/fl", "--follow", "--attempt", "1", check=False)
    assert out.returncode == 1 and out.stderr.startswith("fl#1/fl attempt 1: FAILED"), out.stderr
    out = titan(cluster, "logs", "fl/fl", "--json", "--attempt", "1", check=False)
    assert [(e["attempt"], e["line"]) for e in map(json.loads, out.stdout.splitlines())] == [
        (1, "bad")], out.stdout
    slow = cluster.script("slow.py", "import time\ntime.sleep(60)\n")
    cluster.client().submit_dag("cancelled_follow", [TitanJob(job_id="cf", filename=slow)])
    follow = subprocess.Popen(
        [sys.executable, "-m", "titan", "logs", "cancelled_follow/cf", "--follow"],
        env=dict(cluster.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
                 TITAN_TOKEN=cluster.admin_token), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    titan(cluster, "cancel", "DAG-cancelled_follow")
    _, err = follow.communicate(timeout=60)
    assert follow.returncode == 1 and err.startswith("cancelled_follow#1/cf: CANCELLED"), err
