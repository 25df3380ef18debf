"""Which of Ray's exceptions lose a job's attempt (the cluster's doing: no retry spent) and
which fail it, on Ray's own exception objects. A node killed under a job end to end:
tests/integration/test_ray_executor.py."""

from __future__ import annotations

from typing import Any

import pytest
from tests.ray_cluster import require_ray

from titan.worker.ray_failures import lost_why, task_failure

NODE = "bd4f2d48f0fdb16ae9a60b5ffc6923fe0a530b095d64890a9787c3f8"


@pytest.fixture(scope="module")
def ray() -> Any:
    require_ray()
    import ray

    return ray


def test_a_dead_node_raylet_or_ray_worker_loses_the_attempt(ray: Any) -> None:
    ex = ray.exceptions
    died = ex.NodeDiedError("Task failed because the node it was running on is dead or "
                            f"unavailable. Node IP: 10.0.0.7, node ID: {NODE}. This can happen")
    assert lost_why(ray, died) == f"lost on Ray: the node running it ({NODE[:12]}) died"
    assert "own Ray node" in (lost_why(ray, ex.LocalRayletDiedError()) or "")
    assert "Ray worker running it died" in (lost_why(ray, ex.WorkerCrashedError()) or "")
    # Its output went with a node, or Ray itself failed: the job did nothing wrong either.
    owner = ex.OwnerDiedError("ab" * 28, None, "gen")
    assert (lost_why(ray, owner) or "").startswith("lost on Ray: OwnerDiedError")
    assert (lost_why(ray, ex.RaySystemError("raylet gone")) or "").startswith(
        "lost on Ray: RaySystemError: System error: raylet gone")


def test_what_the_job_or_its_request_did_fails_the_attempt(ray: Any) -> None:
    ex = ray.exceptions
    # Killed by Ray's memory monitor for its memory, as the kernel's OOM killer would.
    for exc in (ex.OutOfMemoryError("node out of memory"), ex.TaskCancelledError(),
                ex.RuntimeEnvSetupError("pip failed"), ValueError("bad")):
        assert lost_why(ray, exc) is None, exc
    assert task_failure(ray, ex.TaskCancelledError()) == "cancelled on the Ray cluster"
    assert task_failure(ray, ex.OutOfMemoryError("node out of memory")) == (
        "Ray: OutOfMemoryError: node out of memory")
