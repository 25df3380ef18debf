"""`titan eval calibrate` with the real local model, on a few cases: the output has the
promised shape (the agreement is a measured figure, not asserted here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.contract.test_llm_providers import require_local_model

pytestmark = pytest.mark.slow

# One the code checks decide, two they leave to the model.
CASES = ["retail-boots-stock-contradiction", "sup-plan-terse", "hr-pto-remaining-wrong"]


def test_calibrate_on_the_local_model() -> None:
    require_local_model()
    argv = [sys.executable, "-m", "titan", "eval", "calibrate", "--json"]
    for case in CASES:
        argv += ["--case", case]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "TITAN_EVAL_JUDGE_MODEL": "local"})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["cases"] == 3 and out["mode"] == "combined" and 0 <= out["agreement"] <= 1
    results = {r["case"]: r for r in out["results"]}
    assert set(results) == set(CASES)
    assert all(r["verdict"] in ("PASS", "FAIL", "NOT_APPLICABLE") for r in results.values())
    assert results["retail-boots-stock-contradiction"]["model"] == "checks"
    assert results["sup-plan-terse"]["model"].startswith("local/")
    assert out["model_median_s"] > 0 and out["decided_by_checks"] >= 1
    assert sum(out["confusion"]["PASS"].values()) + sum(out["confusion"]["FAIL"].values()) == 3
    # Progress goes to stderr, one line per case.
    assert done.stderr.count("] ") >= 3 and "labelled" in done.stderr
