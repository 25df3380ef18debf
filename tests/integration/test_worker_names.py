"""Worker names are unique among live workers (docs/deployment.md, *Worker names*): a second
`titan worker --name X` while X answers is refused, naming the live one; a worker left to its
default name (the host's) gets a free one; a worker killed and started again under its name
takes it over. Real worker processes on one `titan up`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from typing import Any

from tests.integration.harness import Cluster, shared_cluster
from titan_sdk import TitanJob

cluster = shared_cluster()


def named(c: Cluster, name: str) -> list[dict[str, Any]]:
    return [w for w in c.api("GET", "/workers")["workers"]
            if w["name"] == name and w["state"] in ("live", "draining")]


def exits(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the second worker kept running under a name already live") from None


def test_a_second_worker_under_a_live_workers_name_is_refused(cluster: Cluster) -> None:
    # Both registered, both shown as "twin", each leasing jobs: which one ran a job, whose
    # logs to read, which to stop, nothing said.
    for transport, name in (("channel", "twin-ch"), ("http", "twin-http")):
        cluster.add_worker(capabilities=f"TWIN_{transport.upper()}", slots=1, name=name,
                           extra=["--transport", transport])
        (live,) = named(cluster, name)
        n = len(cluster.workers)
        second = cluster.add_worker(capabilities="GENERAL", slots=1, name=name, wait=False)
        assert exits(second) == 1
        said = cluster.log(f"worker-{n}.log")
        assert f"a live worker is already named {name!r}: {live['id']}" in said, said
        assert "pick another --name" in said, said
        assert [w["id"] for w in named(cluster, name)] == [live["id"]]
        # The live one goes on working under its name.
        ok = cluster.script("twin_ok.py", "print('ran')\n")
        job = cluster.client().submit_job(
            TitanJob(f"twin_{transport}", ok, requirement=f"TWIN_{transport.upper()}"),
            wait=True, timeout=60)
        assert job["status"] == "COMPLETED", job
        assert cluster.client().get_job(f"twin_{transport}")["worker_id"] == live["id"]


def test_workers_left_to_their_default_name_get_free_ones(cluster: Cluster) -> None:
    host = socket.gethostname()
    before = {w["id"] for w in cluster.live_workers()}
    cluster.add_worker(capabilities="DEFAULT_NAMES", slots=1)
    cluster.add_worker(capabilities="DEFAULT_NAMES", slots=1)
    new = [w for w in cluster.live_workers() if w["id"] not in before]
    names = sorted(w["name"] for w in new)
    assert len(new) == 2 and len(set(names)) == 2, new
    assert names[0] == host or names[0].startswith(f"{host}-"), names
    assert all(n == host or n.startswith(f"{host}-") for n in names), names
    live = [w["name"] for w in cluster.live_workers()]
    assert len(live) == len(set(live)), live


def killed_and_replaced(cluster: Cluster, first: subprocess.Popen[bytes], old: dict[str, Any],
                        capability: str) -> dict[str, Any]:
    """Kill ``first`` (``old`` as the master lists it) and start a worker under its name, as
    a supervisor would: the new one, once it holds the name, the old one lost."""
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    name = old["name"]
    again = cluster.add_worker(capabilities=capability, slots=1, name=name, wait=False)
    deadline = time.time() + 30
    while [w["id"] for w in named(cluster, name)] in ([old["id"]], []):
        assert again.poll() is None, cluster.log(f"worker-{len(cluster.workers) - 1}.log")
        assert time.time() < deadline, named(cluster, name)
        time.sleep(0.05)
    (new,) = named(cluster, name)
    assert new["id"] != old["id"]
    gone = [w for w in cluster.api("GET", "/workers")["workers"] if w["id"] == old["id"]]
    assert [w["state"] for w in gone] == ["lost"], gone
    return new


def test_a_worker_killed_and_started_again_takes_its_name_over(cluster: Cluster) -> None:
    # A supervisor (systemd, a pod) restarting a crashed worker under its name at once: the
    # dead one, whose connection is gone, does not hold the name until its lease runs out.
    # The job it was running runs again on its successor at once, not after a lease.
    first = cluster.add_worker(capabilities="PHOENIX", slots=1, name="phoenix")
    (old,) = named(cluster, "phoenix")
    client = cluster.client()
    sleeps = cluster.script("phoenix_sleeps.py",
                            "import time\nfrom titan import TitanClient\n"
                            "TitanClient().store_incr('phoenix/started')\n"
                            "time.sleep(300)\n")
    client.submit_job(TitanJob("phoenix_job", sleeps, requirement="PHOENIX"))
    assert client.store_wait("phoenix/started", timeout=60) == "1"
    new = killed_and_replaced(cluster, first, old, "PHOENIX")
    deadline = time.time() + 30
    job = client.get_job("phoenix_job")
    (lost,) = [a for a in job["attempts"] if a["attempt"] == 1]
    assert lost["state"] == "LOST" and f"worker {old['id']} was replaced" in lost["error"], job
    while client.get_job("phoenix_job")["worker_id"] != new["id"]:
        assert time.time() < deadline, client.get_job("phoenix_job")
        time.sleep(0.05)
    client.cancel("phoenix_job")


def test_an_http_worker_killed_in_a_parked_poll_is_replaced_under_its_name(
        cluster: Cluster) -> None:
    # Over HTTP a worker spends its idle time in a long-poll, which counted as a connection
    # held until it timed out (20 s): the master never saw its client go, so a supervisor's
    # restart of it under its name was refused ("a live worker is already named") and exited.
    first = cluster.add_worker(capabilities="HTTP_GHOST", slots=1, name="http-ghost",
                               extra=["--transport", "http"])
    (old,) = named(cluster, "http-ghost")
    time.sleep(1.0)  # registered, it polls at once; with nothing to do, the poll parks
    killed_and_replaced(cluster, first, old, "HTTP_GHOST")


def test_a_worker_replacing_one_the_master_has_not_heard_gone_asks_again(cluster: Cluster) -> None:
    # Killed between registering and opening its channel (CI caught the restart test in
    # that window), a worker holds no connection the master could see close: it looks
    # alive for a third of a lease. Its successor was refused and exited; it now waits
    # until the master knows, and takes the name over.
    ghost = cluster.api("POST", "/workers/register", {
        "worker_id": "w-ghost-of-banshee", "name": "banshee", "name_given": True,
        "hostname": "gone", "pid": 1, "capabilities": ["BANSHEE"], "slots": 1})
    assert ghost["worker_id"] == "w-ghost-of-banshee"
    n = len(cluster.workers)
    started = time.monotonic()
    again = cluster.add_worker(capabilities="BANSHEE", slots=1, name="banshee", wait=False)
    while [w["id"] for w in named(cluster, "banshee")] in (["w-ghost-of-banshee"], []):
        assert again.poll() is None, cluster.log(f"worker-{n}.log")
        assert time.monotonic() - started < 30, named(cluster, "banshee")
        time.sleep(0.05)
    said = cluster.log(f"worker-{n}.log")
    assert "the name 'banshee' is held by w-ghost-of-banshee, which holds no connection: " \
           "asking again in" in said, said
    assert time.monotonic() - started < 15  # a third of the harness's 15 s lease, and a start
    gone = [w for w in cluster.api("GET", "/workers")["workers"]
            if w["id"] == "w-ghost-of-banshee"]
    assert [w["state"] for w in gone] == ["lost"], gone
