"""Custom scoring: ``llm_judge`` criteria, each an independent prompt and scale over one field
of the agent's result.

The built-in judge scores every run on a fixed rubric (seed 003: "not configurable per agent
or workflow"); a workflow adds dimensions of its own with a downstream ``llm_judge``
criterion, declared for every task in the agent section or for one task among its scorers::

    criteria:
      - name: politeness
        type: llm_judge
        target: final_response     # or messages, tool_calls, diff, response.<key>
        prompt: Is the reply polite, and does it avoid blaming the customer?
        scale: 1-5                 # or 0-10, pass_fail
        pass_threshold: 4          # numeric scales: PASS at or above (default: the top 40 %)
        model: openai/gpt-4o-mini  # default: the evaluation's judge model

Each criterion is one LLM call constrained to its scale (JSON schema), with its own prompt:
the model sees the task's instruction, the criterion and the targeted field, nothing of the
built-in rubric. Nothing here raises: a criterion that cannot be scored (the field is
missing, the model failed) is ``N/A`` with the reason.
"""

from __future__ import annotations

import json
import math
from typing import Any

from titan import llm
from titan.errors import LLMError

LLM_JUDGE = "llm_judge"
FIELDS = ("type", "name", "target", "prompt", "scale", "pass_threshold", "model")
SCALES: dict[str, tuple[int, int] | None] = {"1-5": (1, 5), "0-10": (0, 10), "pass_fail": None}
TARGETS = ("final_response", "messages", "tool_calls", "diff", "trajectory")
RESPONSE_PREFIX = "response."
#: What the model is shown of the targeted field.
SHOWN_CHARS = 12_000
MAX_TOKENS = 300
SYSTEM = ("You grade one aspect of an AI agent's work against the criterion given. Judge only "
          "that criterion, from the material shown; cite it in one or two sentences.")


class CriterionInvalid(ValueError):
    """A criterion's field is wrong: ``field`` names it (``scale``, ``target``, ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse(raw: Any) -> dict[str, Any]:
    """Check one ``llm_judge`` criterion; the criterion with its defaults filled."""
    if not isinstance(raw, dict):
        raise CriterionInvalid("", f"must be an object with type llm_judge, got {raw!r}")
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise CriterionInvalid(unknown[0], f"unknown field (known: {', '.join(FIELDS)})")
    if raw.get("type") != LLM_JUDGE:
        raise CriterionInvalid("type", f"must be {LLM_JUDGE}, got {raw.get('type')!r}")
    for key, limit in (("name", 100), ("prompt", 4000)):
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            raise CriterionInvalid(key, f"is required: a non-empty string of at most {limit} "
                                        "characters")
    target = raw.get("target", "final_response")
    if not isinstance(target, str) or not (
            target in TARGETS or (target.startswith(RESPONSE_PREFIX)
                                  and len(target) > len(RESPONSE_PREFIX))):
        raise CriterionInvalid("target", f"must be one of {', '.join(TARGETS)} or "
                                         f"{RESPONSE_PREFIX}<key>, got {target!r}")
    scale = raw.get("scale", "1-5")
    if scale not in SCALES:
        raise CriterionInvalid("scale", f"must be one of {', '.join(SCALES)}, got {scale!r}")
    bounds = SCALES[scale]
    threshold = raw.get("pass_threshold")
    if threshold is not None:
        if bounds is None:
            raise CriterionInvalid("pass_threshold", "has no meaning on a pass_fail scale")
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) \
                or not bounds[0] <= threshold <= bounds[1]:
            raise CriterionInvalid("pass_threshold", f"must be a number within {scale}, got "
                                                     f"{threshold!r}")
    elif bounds is not None:
        threshold = math.ceil(bounds[0] + 0.6 * (bounds[1] - bounds[0]))  # 4 of 5, 6 of 10
    model = raw.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise CriterionInvalid("model", "must be a model name")
    return {"type": LLM_JUDGE, "name": raw["name"].strip(), "target": target,
            "prompt": raw["prompt"], "scale": scale, "pass_threshold": threshold,
            "model": model}


def target_value(target: str, run: dict[str, Any]) -> Any:
    """The field a criterion targets, from the run (``final_response``, ``messages``,
    ``tool_calls``, ``diff``, ``trajectory``, ``raw_response``); None when it has none."""
    if target.startswith(RESPONSE_PREFIX):
        raw = run.get("raw_response")
        try:
            body = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            return None
        for key in target[len(RESPONSE_PREFIX):].split("."):
            body = body.get(key) if isinstance(body, dict) else None
        return body
    value = run.get(target)
    return None if value in (None, "", []) else value


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=1, default=str)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "\n[... truncated]"


def _schema(scale: str) -> dict[str, Any]:
    bounds = SCALES[scale]
    verdict: dict[str, Any] = ({"type": "string", "enum": ["PASS", "FAIL"]} if bounds is None
                               else {"type": "integer", "minimum": bounds[0],
                                     "maximum": bounds[1]})
    key = "verdict" if bounds is None else "score"
    return {"type": "object", "properties": {key: verdict, "reasoning": {"type": "string"}},
            "required": [key, "reasoning"]}


def score(criterion: dict[str, Any], task: dict[str, Any], run: dict[str, Any], *,
          model: str | None = None) -> dict[str, Any]:
    """Score one criterion; never raises (``verdict`` N/A with ``error`` when it cannot)."""
    out: dict[str, Any] = {"name": criterion["name"], "type": LLM_JUDGE,
                           "target": criterion["target"], "scale": criterion["scale"],
                           "pass_threshold": criterion.get("pass_threshold"), "score": None,
                           "verdict": "N/A", "reasoning": "", "model": "", "cost_usd": 0.0,
                           "error": None}
    status = run.get("status")
    if status not in (None, "completed"):  # as the built-in judge: completed runs only
        out["error"] = f"the run did not complete ({status}), so it is not scored"
        return out
    value = target_value(criterion["target"], run)
    if value is None:
        out["error"] = f"the run has no {criterion['target']} to score"
        return out
    bounds = SCALES[criterion["scale"]]
    ask = ("Answer PASS or FAIL." if bounds is None
           else f"Score it from {bounds[0]} (worst) to {bounds[1]} (best).")
    prompt = (f"The user asked the agent:\n{task.get('user_instruction') or '(none)'}\n\n"
              f"Criterion ({criterion['name']}): {criterion['prompt']}\n\n"
              f"The agent's {criterion['target']}:\n{_shown(value)}\n\n{ask}")
    try:
        reply = llm.complete([{"role": "system", "content": SYSTEM},
                              {"role": "user", "content": prompt}],
                             model=criterion.get("model") or model, temperature=0.0,
                             max_tokens=MAX_TOKENS, json_schema=_schema(criterion["scale"]))
    except LLMError as exc:
        # Cost unknown, as the judge's: a failed call may have been billed ($0 when no
        # model was there to ask).
        out.update(cost_usd=0.0 if llm.recording.unsent(exc) else None,
                   error=f"the criterion's model could not score it: {exc}"[:500])
        return out
    # None when the model has no known price (never a made-up $0: docs/llm.md).
    out.update(model=reply.model, cost_usd=reply.cost_usd)
    try:
        data = reply.json()
    except ValueError as exc:
        out["error"] = f"the criterion's model could not score it: {exc}"[:500]
        return out
    out["reasoning"] = str(data.get("reasoning") or "")[:1000]
    if bounds is None:
        out["verdict"] = data["verdict"]
    else:
        out["score"] = int(data["score"])
        out["verdict"] = "PASS" if out["score"] >= criterion["pass_threshold"] else "FAIL"
    return out


def score_all(criteria: list[dict[str, Any]], task: dict[str, Any], run: dict[str, Any], *,
              model: str | None = None) -> list[dict[str, Any]]:
    return [score(c, task, run, model=model) for c in criteria]
