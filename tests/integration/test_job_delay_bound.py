"""A job's token delays what it submits at most TITAN_JOB_MAX_DELAY, against real processes.

Schedules are refused to job tokens so that a job cannot outlive itself; a DAG of a delayed
copy of itself (a delay of up to a year) did just that (a hostile QA pass)."""

from __future__ import annotations

from tests.integration.harness import Cluster, shared_cluster
from titan_sdk import TitanJob

cluster = shared_cluster(env={"TITAN_JOB_MAX_DELAY": "60"})

PROBE = """
    import os, sys
    from titan import TitanClient, TitanJob
    from titan.errors import TitanError

    me = os.path.basename(__file__)
    client = TitanClient()

    def submit(name, jobs):
        try:
            dag = client.submit_dag(name, jobs)
        except TitanError as exc:
            print(name, "refused", type(exc).__name__, exc.details, exc)
        else:
            client.cancel(dag["ref"])
            print(name, "accepted")

    if len(sys.argv) == 1:  # the copies submitted run nothing (each is cancelled at once)
        submit("far", [TitanJob("copy", me, args=["x"], delay=86400 * 365)])
        submit("past", [TitanJob("copy", me, args=["x"], delay=61)])
        submit("chain", [TitanJob("a", me, args=["x"], delay=40),
                         TitanJob("b", me, args=["x"], delay=40, parents=["a"])])
        submit("side_by_side", [TitanJob("a", me, args=["x"], delay=40),
                                TitanJob("b", me, args=["x"], delay=40)])
        submit("within", [TitanJob("copy", me, args=["x"], delay=60)])
"""


def test_a_job_may_not_delay_what_it_submits_past_the_bound(cluster: Cluster) -> None:
    client = cluster.client()
    client.submit_job(TitanJob("delayer", cluster.script("delayer.py", PROBE)))
    assert client.wait("delayer", timeout=60)["state"] == "COMPLETED"
    said = {line.split(" ", 1)[0]: line for line in client.fetch_logs("delayer").splitlines()}
    for name, job in (("far", "copy"), ("past", "copy"), ("chain", "b")):
        line = said[name]
        assert f"{name} refused Forbidden" in line, line
        assert f"'job_id': '{job}', 'field': 'delay', 'max': 60.0" in line, line
        assert "TITAN_JOB_MAX_DELAY" in line and "schedule" in line, line
    # Jobs that wait side by side wait the longest of them, not their sum.
    assert said["side_by_side"] == "side_by_side accepted"
    assert said["within"] == "within accepted"
    assert [d["name"] for d in client.list_dags(name="far")] == []
    # A person's token delays as before (up to a year), and is told nothing new.
    dag = client.submit_dag("operator_far", [
        TitanJob("later", cluster.script("later.py", "print('later')\n"), delay=86400 * 365)])
    client.cancel(dag["ref"])


def test_the_bound_is_not_an_operators(cluster: Cluster) -> None:
    made = cluster.api("POST", "/tokens", {"role": "operator", "name": "delay-operator"})
    operator = cluster.client(token=made["token"])
    dag = operator.submit_dag("operator_chain", [
        TitanJob("a", cluster.script("a.py", "print('a')\n"), delay=3600),
        TitanJob("b", cluster.script("b.py", "print('b')\n"), delay=3600, parents=["a"])])
    operator.cancel(dag["ref"])
