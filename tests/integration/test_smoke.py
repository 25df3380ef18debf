from __future__ import annotations

from tests.integration.harness import Cluster
from titan_sdk import TitanJob


def test_chain_runs_in_order_and_logs_are_kept(cluster: Cluster) -> None:
    a = cluster.script("a.py", """
        import sys
        print("hello from a", sys.argv[1:])
        open("order.txt", "a").write("a\\n")
    """)
    b = cluster.script("b.py", """
        print("b sees", open("order.txt").read().split())
    """)
    client = cluster.client()
    client.submit_dag("chain", [TitanJob(job_id="a", filename=a, args="x 'y z'"),
                                TitanJob(job_id="b", filename=b, parents=["a"])])
    dag = client.wait("chain", timeout=30)
    assert dag["status"] == "COMPLETED", dag
    assert client.get_job_status("b") == "COMPLETED"
    assert "hello from a ['x', 'y z']" in client.fetch_logs("a")
    assert "b sees ['a']" in client.fetch_logs("chain/b")
