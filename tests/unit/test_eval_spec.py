"""An evaluation's spec is refused where it is wrong, at `titan eval create` or when tasks are
added, not at every run later with the agent blamed: a tool schema that is no JSON Schema, a
topology or a failure rule naming a tool the agent does not declare."""

from __future__ import annotations

from typing import Any

import pytest

from titan.errors import ValidationFailed
from titan.evals.agent_config import check_task_tools, parse_agent
from titan.evals.tasks import parse_tasks

TOOL = {"name": "lookup", "input_schema": {"type": "object",
                                           "properties": {"id": {"type": "string"}}}}


def agent(**fields: Any) -> dict[str, Any]:
    return {"name": "a", "kind": "http", "url": "http://127.0.0.1:1/", "tools": [TOOL],
            **fields}


@pytest.mark.parametrize(("schema", "said"), [
    ({"type": "not-a-type"}, "is not valid JSON Schema"),
    ({"type": "object", "properties": {"id": {"type": 3}}},
     "is not valid JSON Schema at properties/id/type"),
    ({"required": "id"}, "is not valid JSON Schema")])
def test_a_tool_schema_that_is_no_json_schema_is_refused(schema: dict[str, Any],
                                                        said: str) -> None:
    for side in ("input_schema", "output_schema"):
        with pytest.raises(ValidationFailed, match=rf"tools\[0\]\.{side}: {said}"):
            parse_agent(agent(tools=[{"name": "lookup", side: schema}]))
    assert parse_agent(agent())["tools"][0]["input_schema"] == TOOL["input_schema"]


def test_a_topology_names_only_declared_tools() -> None:
    topology = {"nodes": [{"id": "lead", "tools": ["lookup"]},
                          {"id": "helper", "tools": ["ghost_tool"], "parent": "lead"}]}
    with pytest.raises(ValidationFailed, match=r"topology.nodes\[1\].tools: names "
                                               r"'ghost_tool', which is not among"):
        parse_agent(agent(topology=topology))
    topology["nodes"].pop()
    assert parse_agent(agent(topology=topology))["topology"]["nodes"][0]["tools"] == ["lookup"]


def test_a_failure_rule_on_a_tool_the_agent_lacks_is_refused() -> None:
    cfg = parse_agent(agent())
    tasks = parse_tasks([{"id": "t1", "user_instruction": "go", "failure_rules": [
        {"tool": "lookup", "payload": {"error": "down"}},
        {"tool": "no_such_tool", "payload": {"error": "down"}}]}], "tasks")
    with pytest.raises(ValidationFailed, match=r"task 1 \('t1'\): failure_rules\[1\].tool names "
                                               r"'no_such_tool', which is not among the "
                                               r"evaluation's tools \(lookup\)"):
        check_task_tools(tasks, cfg)
    tasks[0].failure_rules.pop()
    check_task_tools(tasks, cfg)


@pytest.mark.parametrize(("fields", "named"), [
    ({"kind": 0}, "kind"), ({"kind": []}, "kind"), ({"kind": ""}, "kind"),
    ({"judge": "no"}, "judge"), ({"judge": 0}, "judge"), ({"judge": {}}, "judge"),
    ({"tools": 0}, "tools"), ({"tools": {}}, "tools"), ({"tools": ""}, "tools"),
    ({"tools": [dict(TOOL, description=5)]}, "tools[0].description"),
    ({"headers": []}, "headers"),
    ({"kind": "job", "script_sha256": "ab" * 32, "args": {}}, "args")])
def test_a_field_of_the_wrong_type_is_refused_naming_it(fields: dict[str, Any],
                                                         named: str) -> None:
    # A falsy value of any type stood for "not given" (kind 0 was guessed from the url, tools
    # {} was no tools), and a judge or a tool's description of any type was kept.
    with pytest.raises(ValidationFailed) as exc:
        parse_agent(agent(**fields))
    assert exc.value.details["field"] == f"agent.{named}", exc.value.details


def test_fields_not_given_take_their_defaults() -> None:
    cfg = parse_agent({"name": "a", "url": "http://127.0.0.1:1/", "tools": None,
                       "headers": None})
    assert (cfg["kind"], cfg["judge"], cfg["tools"], cfg["headers"]) == ("http", True, [], {})
    assert parse_agent(agent(judge=False))["judge"] is False
