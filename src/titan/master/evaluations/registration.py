"""What an evaluation's agent config is checked against when it is registered (``PUT
/api/v1/evaluations/{e}``, ``titan eval create``), beyond its own shape
(:mod:`titan.evals.agent_config`): the egress policy for the URLs it names, and that every
model it names can be called from this master.
"""

from __future__ import annotations

import asyncio

from titan.errors import LLMError, ValidationFailed
from titan.master.egress import EgressPolicy
from titan.storage.base import Row


def check_egress(egress: EgressPolicy, agent: Row) -> None:
    """Refuse at registration a URL whose host is an address the policy forbids (names
    are resolved and checked at every call)."""
    targets = [("agent.url", agent.get("url"))] + [
        (f"agent.tools[{i}].endpoint", t.get("endpoint"))
        for i, t in enumerate(agent.get("tools") or [])]
    for where, url in targets:
        why = egress.check_url(url) if url else None
        if why is not None:
            raise ValidationFailed(f"{where}: the egress policy refuses it: {why}",
                                   details={"field": where})


async def check_models(agent: Row) -> None:
    """Refuse a judge or simulator model no call can reach (an unknown provider, a hosted
    one whose key this master lacks), as ``titan eval calibrate --judge-model`` does:
    accepted, it made every run NOT APPLICABLE with LiteLLM's raw error."""
    from titan import llm

    named = [(f"agent.{key}", agent.get(key)) for key in ("judge_model", "simulator_model")]
    named += [(f"agent.criteria[{i}].model", c.get("model"))
              for i, c in enumerate(agent.get("criteria") or [])]
    loop = asyncio.get_running_loop()
    for where, model in named:
        if not model:
            continue
        try:
            await loop.run_in_executor(None, llm.usable, model)
        except LLMError as exc:
            raise ValidationFailed(f"{where}: {exc}", details={"field": where}) from None
