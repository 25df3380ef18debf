"""Seed 000 (the Agent Runs view), its snippets and statements checked against `titan up`."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx

from tests.integration.harness import Cluster, shared_cluster

cluster = shared_cluster()  # one `titan up` for the module (see harness.py)


def test_the_stages_of_run_1a9ac3_are_labelled_without_its_prefix(cluster: Cluster,
                                                                  tmp_path: Path) -> None:
    # "Stage label — the short name stripped of the common run ID prefix" and "the ITER1
    # stage of run 1a9ac3 opens at /dags/DAG-RESEARCH_1a9ac3_ITER1": a run named by its
    # random part showed its stages' whole names (RESEARCH_1a9ac3_PLAN → ...).
    (tmp_path / "plan.py").write_text("print('plan')\n")
    snippet = tmp_path / "stages.py"
    snippet.write_text(textwrap.dedent("""
        from titan_sdk import TitanClient, TitanJob

        client = TitanClient()
        run_id = "1a9ac3"
        for stage in ("PLAN", "ITER1", "EVAL1"):
            client.submit_dag(f"RESEARCH_{run_id}_{stage}",
                              [TitanJob(job_id="plan", filename="plan.py")],
                              agent_run_id=run_id, wait=True, timeout=60)
    """))
    done = subprocess.run([sys.executable, str(snippet)], cwd=tmp_path, env=cluster.env,
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    run = cluster.client().agent_run("1a9ac3")
    assert [(s["label"], s["status"]) for s in run["stages"]] == [
        ("PLAN", "COMPLETED"), ("ITER1", "COMPLETED"), ("EVAL1", "COMPLETED")]
    with httpx.Client(base_url=cluster.url, timeout=30,
                      headers={"Authorization": f"Bearer {cluster.admin_token}"}) as s:
        page = s.get("/agents").text
        boxes = re.findall(r'<a class="stage" data-label="(\w+)"[^>]* href="([^"?]+)', page)
        assert boxes == [("PLAN", "/dags/DAG-RESEARCH_1a9ac3_PLAN"),
                         ("ITER1", "/dags/DAG-RESEARCH_1a9ac3_ITER1"),
                         ("EVAL1", "/dags/DAG-RESEARCH_1a9ac3_EVAL1")]
        assert s.get("/dags/DAG-RESEARCH_1a9ac3_ITER1").status_code == 200
