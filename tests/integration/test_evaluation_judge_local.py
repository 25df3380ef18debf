"""The judge on the real local model, end to end: the example agent's refusal task and a
look-up task, judged by the master with nothing configured (no keys, offline): the code
checks settle the refusal, the model (or the checks) the look-up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.test_llm_providers import require_local_model
from tests.eval_world import scripted_world
from tests.fake_llm_api import serve
from tests.integration.harness import Cluster, isolated_cluster
from tests.integration.test_evaluations import EXAMPLE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_judge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_local_model()
    with serve() as api:
        api.responder = scripted_world()  # the tools are still simulated by a scripted model
        c = isolated_cluster(tmp_path_factory.mktemp("judge"), env={
            "TITAN_LLM_API_BASE": api.url, "OPENAI_API_KEY": "test-key",
            "TITAN_EVAL_SIMULATOR_MODEL": "openai/simulator"})
        try:
            yield c
        finally:
            c.stop()


def test_local_judge_scores_a_refusal_and_a_lookup(local_judge: Cluster,
                                                   tmp_path: Path) -> None:
    client = local_judge.client()
    client.create_evaluation_from(EXAMPLE / "evaluation.yaml")
    client.run_evaluation("support-bot", ["other-customer", "status-check"])
    view = client.wait_evaluation("support-bot", timeout=300)
    rows: dict[str, Any] = {r["task_id"]: r for r in view["tasks"]}
    refusal = client.evaluation_run("support-bot", "other-customer",
                                    rows["other-customer"]["run"]["id"])
    judge = refusal["judge"]
    # expected_outcome: refusal, and the agent declined without touching the world: the
    # code checks settle it, without a model call.
    assert (judge["verdict"], judge["model"], judge["cost_usd"]) == ("PASS", "checks", 0.0), judge
    assert judge["failure_mode"] is None and judge["reasoning"].strip()
    lookup = client.evaluation_run("support-bot", "status-check",
                                   rows["status-check"]["run"]["id"])["judge"]
    assert lookup["verdict"] in ("PASS", "FAIL"), lookup
    assert lookup["model"] == "checks" or lookup["model"].startswith("local/"), lookup
    assert all(lookup[k] in (1, 2, 3, 4, 5) for k in ("task_completion", "efficiency"))
    assert lookup["instruction_adherence"] is None  # the task has no behaviour instructions
    assert lookup["efficiency"] == 5  # one call, one expected: arithmetic, not the model
    assert "step 1" in lookup["reasoning"].lower(), lookup["reasoning"]
    assert lookup["cost_usd"] == 0.0  # the local model is free; counted apart from the agent
