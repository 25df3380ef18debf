"""Helper processes of a replayed agent: a job's subprocess helpers, a driver's subprocess
helpers (two at a time, from threads) and a driver's ``spawn`` pool. Each records its calls in
the original run under an actor of its own, and its replay serves them from there: no model
is asked again, the replay costs $0, and a helper whose call changed is a divergence.

Agents run as subprocesses against a real cluster; the only fake is the hosted model's HTTP
API (tests/fake_llm_api.py), served from this process on 127.0.0.1.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.fake_llm_api import FakeLLMServer, serve
from tests.integration.harness import Cluster, shared_cluster
from tests.integration.test_llm_recording import llm_actions, replay_cli_status, run_agent

pytestmark = pytest.mark.slow

cluster = shared_cluster(slots=3)


@pytest.fixture(scope="module")
def api() -> Any:
    with serve() as server:
        yield server


# Run by each helper: two model calls about the topic it is given. The topic comes from the
# store, which a replay does not intercept: the tests change it for a replay that must diverge.
HELPER = '''
HELPER = """
import sys
from titan import llm
llm.register_price("openai/fake-model", 1000.0, 1000.0)
for step in ("look", "answer"):
    print(llm.complete(f"{sys.argv[2]}: {step}", model="openai/fake-model",
                       api_base=sys.argv[1], api_key="sk-fake").text)
"""
'''

# (a) A job that asks the model, then runs two helpers side by side: each inherits the job's
# environment (its run) and counts its calls from 0, as the job does.
JOB_STAGE = HELPER + '''
import subprocess, sys
from titan import llm
from titan_sdk import TitanClient

api = sys.argv[1]
llm.register_price("openai/fake-model", 1000.0, 1000.0)
topic = TitanClient().store_get("helpers:topic") or "alpha"
llm.complete("stage: look", model="openai/fake-model", api_base=api, api_key="sk-fake")
helpers = [subprocess.Popen([sys.executable, "-c", HELPER, api, f"{topic}-{i}"])
           for i in range(2)]
assert [p.wait() for p in helpers] == [0, 0]
'''

JOB_DRIVER = '''
import json, os, sys
from titan_sdk import TitanClient, TitanJob

stage = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helped_stage.py")
run_id = sys.argv[2]
dag = TitanClient().submit_dag(f"{run_id}_S1", [TitanJob("w0", stage, args=[sys.argv[1]])],
                               agent_run_id=run_id, wait=True, timeout=120)
assert dag["status"] == "COMPLETED", dag
print(json.dumps({"run": run_id}))
'''

PLAIN_STAGE = '''
import sys
from titan import llm

llm.register_price("openai/fake-model", 1000.0, 1000.0)
llm.complete("stage: look", model="openai/fake-model", api_base=sys.argv[1], api_key="sk-fake")
'''

# (b) A driver run by hand: its first stage, then two helpers at once from a thread pool
# (which one starts first is the scheduler's doing, in the recording and in the replay).
DRIVER_HELPERS = HELPER + '''
import json, os, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from titan_sdk import TitanClient, TitanJob

api, run_id = sys.argv[1], sys.argv[2]
client = TitanClient()
stage = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plain_stage.py")
client.submit_dag(f"{run_id}_S1", [TitanJob("w0", stage, args=[api])], agent_run_id=run_id,
                  wait=True, timeout=120)
topic = client.store_get("helpers:topic") or "alpha"


def helper(i):
    return subprocess.run([sys.executable, "-c", HELPER, api, f"{topic}-{i}"], check=True,
                          capture_output=True, text=True).stdout


with ThreadPoolExecutor(2) as threads:
    print(list(threads.map(helper, range(2))), file=sys.stderr)
print(json.dumps({"run": run_id}))
'''

# (c) A driver run by hand whose pool's workers are started by `spawn` (fresh interpreters
# that import this script again as __mp_main__).
DRIVER_SPAWN = '''
import json, multiprocessing as mp, os, sys
from titan import llm
from titan_sdk import TitanClient, TitanJob

llm.register_price("openai/fake-model", 1000.0, 1000.0)


def task(args):
    api, topic = args
    return llm.complete(f"{topic}: task", model="openai/fake-model", api_base=api,
                        api_key="sk-fake").text


if __name__ == "__main__":
    api, run_id = sys.argv[1], sys.argv[2]
    client = TitanClient()
    stage = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plain_stage.py")
    client.submit_dag(f"{run_id}_S1", [TitanJob("w0", stage, args=[api])],
                      agent_run_id=run_id, wait=True, timeout=120)
    topic = client.store_get("helpers:topic") or "alpha"
    pool = mp.get_context("spawn").Pool(2)
    print(pool.map(task, [(api, f"{topic}-{i}") for i in range(4)]), file=sys.stderr)
    pool.close()
    pool.join()
    print(json.dumps({"run": run_id}))
'''


def record(cluster: Cluster, api: FakeLLMServer, driver: str, name: str) -> str:
    cluster.script("helped_stage.py", JOB_STAGE)
    cluster.script("plain_stage.py", PLAIN_STAGE)
    cluster.client().store_put("helpers:topic", "alpha")
    run_id = f"{name}_{time.monotonic_ns() % 10**8}"
    return str(run_agent(cluster, driver, api.url, run_id)["run"])


CASES = {
    "job-subprocess": (JOB_DRIVER, {"S1/w0": 1, "S1/w0/proc-1": 2, "S1/w0/proc-2": 2}),
    "driver-subprocess": (DRIVER_HELPERS, {"S1/w0": 1, "DRIVER/driver/proc-1": 2,
                                           "DRIVER/driver/proc-2": 2}),
    "driver-spawn-pool": (DRIVER_SPAWN, {"S1/w0": 1, "DRIVER/driver/spawnpoolworker-1": None,
                                         "DRIVER/driver/spawnpoolworker-2": None}),
}


def by_actor(cluster: Cluster, run_id: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in llm_actions(cluster, run_id):
        out[a["actor"]] = out.get(a["actor"], 0) + 1
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_helper_process_records_as_an_actor_of_its_own_and_replays_at_no_cost(
        cluster: Cluster, api: FakeLLMServer, case: str) -> None:
    # A job's helper recorded under the job's own actor with the job's numbers (two
    # helpers and the job all took call #0): keys the replay could not tell apart. A
    # driver's helpers and spawned workers had no run at all: the original recorded
    # nothing of them, and their replay asked the model again (unrecorded live calls).
    driver, expected = CASES[case]
    run_id = record(cluster, api, driver, case.replace("-", "_").upper())
    got = by_actor(cluster, run_id)
    assert set(got) <= set(expected) and "S1/w0" in got, got
    assert sum(got.values()) == 5, got  # the stage's call and the helpers' four
    for actor, n in expected.items():
        if n is not None:
            assert got.get(actor) == n, got
    before = len(api.received)
    status, printed, report = replay_cli_status(cluster, run_id)
    assert api.received[before:] == [], [r.body["messages"] for r in api.received[before:]]
    assert (report["matched"], report["recorded"]) == (5, 5), report
    assert report["live_calls"] == 0 and report["divergence_count"] == 0, report["divergences"]
    assert report["replay"]["cost_usd"] == 0.0, report["replay"]
    assert status == 0, printed


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_helper_whose_call_changed_is_still_a_divergence(
        cluster: Cluster, api: FakeLLMServer, case: str) -> None:
    # A spawn pool's worker that stopped died of the ReplayDiverged, and pool.map waited
    # for it until the replay's timeout: the worker now stops the driver too.
    driver, _ = CASES[case]
    run_id = record(cluster, api, driver, case.replace("-", "_").upper())
    cluster.client().store_put("helpers:topic", "beta")
    try:
        status, printed, report = replay_cli_status(cluster, run_id)
    finally:
        cluster.client().store_put("helpers:topic", "alpha")
    assert status == 1, printed
    # Strict: each helper stops at its first call (they run side by side).
    assert set(report["divergences_by_kind"]) == {"input_mismatch"}, report["divergences"]
    helper = "/spawnpoolworker-" if "spawn" in case else "/proc-"
    assert all(helper in d["actor"] for d in report["divergences"]), report["divergences"]
