"""`titan worker --burst` against a real master: it leaves only once every job it could take
has run (a QA pass saw it exit 0 with its jobs leased and never started)."""

from __future__ import annotations

from typing import Any

import pytest

from titan.client import TitanJob


@pytest.mark.parametrize("slots", [1, 2])
def test_a_burst_worker_runs_every_queued_job_before_it_exits(make_cluster: Any,
                                                              slots: int) -> None:
    c = make_cluster()
    c.start_master()
    client = c.client()
    script = c.script("quick.py", "print('hi')\n")
    token = (c.data / "worker.token").read_text().strip()
    # Several rounds, each with a fresh worker: the exit raced the jobs' arrival, and one
    # round alone passed now and then.
    for round_ in range(6):
        cap = f"BURST{slots}R{round_}"
        dag = client.submit_dag(f"burst-{slots}-{round_}",
                                [TitanJob(f"j{i}", script, requirement=cap) for i in range(8)])
        workdir = c.root / f"burst-{round_}"
        workdir.mkdir()
        log = f"burst-{round_}.log"
        proc = c._spawn(["worker", "--master", c.url, "--capabilities", cap,
                         "--slots", str(slots), "--burst", "--workdir", str(workdir)],
                        log, env={**c.env, "TITAN_TOKEN": token})
        rc = proc.wait(timeout=60)
        got = client.get_dag(dag["id"], jobs=True)
        states = sorted(job["state"] for job in got["jobs"])
        assert (rc, got["status"], states) == (0, "COMPLETED", ["COMPLETED"] * 8), c.log(log)
        assert "Traceback" not in c.log(log)
