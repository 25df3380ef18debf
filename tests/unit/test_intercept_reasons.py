"""The reasons a run is a critical intercept, as the Runs page and the API write them."""

from __future__ import annotations

from titan.master.runs.views import intercept_reasons


def run(**kw: object) -> dict[str, object]:
    return {"status": "running", "over_budget": False, "blocked": False, "cost_usd": 0.0,
            "budget_usd": None, "intervention_rate": None, **kw}


def test_a_tiny_budget_is_written_as_every_cost_is() -> None:
    # Four decimals read "over budget ($0.0000 of $0.0000)" for a run of cheap calls.
    reasons = intercept_reasons(run(over_budget=True, blocked=True, cost_usd=0.0000117,
                                     budget_usd=0.00001))
    assert reasons == ["over budget ($0.000012 of $0.000010)"]


def test_an_ordinary_budget_keeps_four_decimals() -> None:
    assert intercept_reasons(run(over_budget=True, blocked=True, cost_usd=1.5,
                                     budget_usd=1.0)) == [
        "over budget ($1.5000 of $1.0000)"]


def test_a_budget_raised_since_says_the_run_went_over() -> None:
    # Raised after it went over (which releases it): not "over budget ($0.0100 of $5.0000)".
    assert intercept_reasons(run(over_budget=True, blocked=False, cost_usd=0.01,
                                 budget_usd=5.0)) == [
        "went over budget (since raised to $5.0000; spent $0.0100)"]
