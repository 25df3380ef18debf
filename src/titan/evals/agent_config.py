"""The agent under test, as an evaluation declares it: how to dispatch it, its tools, its
declared multi-agent topology, and which models simulate and judge.

Two kinds of agent:

* ``job`` — a Python script run as a Titan job (uploaded once, content-addressed). It reads
  its task from :func:`titan.evals.task` and answers with :func:`titan.evals.respond`.
* ``http`` — an endpoint Titan POSTs the task to; the JSON reply carries ``final_response``.

The config lives on the evaluation, not on each run, so a re-run uses the current settings.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from titan.errors import ValidationFailed
from titan.evals import criteria

KINDS = ("job", "http")
TOOL_MODES = ("simulated", "passthrough")
_NAME = re.compile(r"^(?!\.+\Z)[A-Za-z0-9_.\-]{1,100}\Z")
_SHA = re.compile(r"^[0-9a-f]{64}\Z")
_KNOWN = {"name", "version", "kind", "script", "script_sha256", "args", "requirement",
          "timeout_s", "url", "headers", "tools", "topology", "simulator_model", "judge_model",
          "judge", "criteria"}
_TOOL_KNOWN = {"name", "description", "input_schema", "output_schema", "mode", "endpoint"}
DEFAULT_TIMEOUT_S = 600.0


def _fail(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"agent.{field}: {message}", details={"field": f"agent.{field}"})


def _text(cfg: dict[str, Any], field: str, *, required: bool = False, limit: int = 2000) -> Any:
    value = cfg.get(field)
    if value is None:
        if required:
            raise _fail(field, "is required")
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise _fail(field, f"must be a non-empty string of at most {limit} characters")
    return value


def _listed(cfg: dict[str, Any], field: str) -> Any:
    """``cfg[field]``, or an empty list when it is not given (None): a value of another type
    is returned as it is, for its caller to refuse."""
    value = cfg.get(field)
    return [] if value is None else value


def _url(value: Any, field: str) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[^\s]+\Z", value):
        raise _fail(field, f"must be an http(s) URL, got {value!r}")
    try:  # what urlsplit cannot take (a port past 65535, a broken [v6]) would fail every call
        parts = urlsplit(value)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        raise _fail(field, f"is not a valid URL ({exc}): {value!r}") from None
    if not parts.hostname:
        raise _fail(field, f"names no host: {value!r}")
    return value


def parse_tool(raw: Any, i: int) -> dict[str, Any]:
    where = f"tools[{i}]"
    if not isinstance(raw, dict):
        raise _fail(where, "must be an object {name, description, input_schema, ...}")
    unknown = set(raw) - _TOOL_KNOWN
    if unknown:
        raise _fail(f"{where}.{sorted(unknown)[0]}",
                    f"unknown field (known: {', '.join(sorted(_TOOL_KNOWN))})")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail(f"{where}.name", "must be 1-100 letters, digits, '_', '.', '-'")
    for schema in ("input_schema", "output_schema"):
        if raw.get(schema) is not None and not isinstance(raw[schema], dict):
            raise _fail(f"{where}.{schema}", "must be a JSON Schema object")
        if raw.get(schema):
            # Checked against the meta-schema now: an invalid one failed every run later, as
            # a contract error blamed on the agent.
            import jsonschema

            try:
                jsonschema.validators.validator_for(raw[schema]).check_schema(raw[schema])
            except jsonschema.SchemaError as exc:
                at = "/".join(str(p) for p in exc.absolute_path)
                raise _fail(f"{where}.{schema}", f"is not valid JSON Schema"
                                                 f"{f' at {at}' if at else ''}: {exc.message}"
                            ) from None
    mode = raw.get("mode") or "simulated"
    if mode not in TOOL_MODES:
        raise _fail(f"{where}.mode", f"must be simulated or passthrough, got {mode!r}")
    endpoint = raw.get("endpoint")
    if mode == "passthrough":
        endpoint = _url(endpoint, f"{where}.endpoint")
    elif endpoint is not None:
        raise _fail(f"{where}.endpoint", "is only for mode passthrough")
    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        raise _fail(f"{where}.description", f"must be text, got {type(description).__name__}")
    return {"name": name, "description": description or "",
            "input_schema": raw.get("input_schema"), "output_schema": raw.get("output_schema"),
            "mode": mode, "endpoint": endpoint}


def parse_topology(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("nodes", []), list):
        raise _fail("topology", 'must be {"nodes": [{"id", "tools", "parent"}], "edges": [...]}')
    nodes = []
    for i, node in enumerate(raw.get("nodes") or []):
        if not isinstance(node, dict) or not isinstance(node.get("id"), str) or not node["id"]:
            raise _fail(f"topology.nodes[{i}]", "must be an object with a string id")
        tools = node.get("tools") or []
        if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
            raise _fail(f"topology.nodes[{i}].tools", "must be a list of tool names")
        nodes.append({"id": node["id"], "tools": tools, "parent": node.get("parent")})
    edges = []
    for i, edge in enumerate(raw.get("edges") or []):
        if (not isinstance(edge, dict) or not isinstance(edge.get("from"), str)
                or not isinstance(edge.get("to"), str)):
            raise _fail(f"topology.edges[{i}]", 'must be {"from", "to", "kind"}')
        kind = edge.get("kind") or "delegation"
        if kind not in ("delegation", "handoff"):
            raise _fail(f"topology.edges[{i}].kind", "must be delegation or handoff")
        edges.append({"from": edge["from"], "to": edge["to"], "kind": kind})
    return {"nodes": nodes, "edges": edges}


def parse_agent(raw: Any) -> dict[str, Any]:
    """Check an evaluation's ``agent`` section; the config with defaults filled."""
    if not isinstance(raw, dict):
        raise ValidationFailed("agent must be an object {name, kind, ...}",
                               details={"field": "agent"})
    unknown = set(raw) - _KNOWN
    if unknown:
        raise _fail(sorted(unknown)[0], f"unknown field (known: {', '.join(sorted(_KNOWN))})")
    name = _text(raw, "name", required=True, limit=200)
    # Only a kind not given is guessed: a 0, [] or "" was taken for "not given" (and so was
    # any other field's falsy value of the wrong type below).
    kind = raw.get("kind")
    if kind is None:
        kind = "http" if raw.get("url") else "job"
    if not isinstance(kind, str) or kind not in KINDS:
        raise _fail("kind", f"must be job or http, got {kind!r}")
    judge = raw.get("judge", True)
    if not isinstance(judge, bool):
        raise _fail("judge", f"must be true or false, got {judge!r}")
    timeout = raw.get("timeout_s", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 86400:
        raise _fail("timeout_s", "must be a number of seconds between 0 and 86400")
    cfg: dict[str, Any] = {
        "name": name, "version": _text(raw, "version", limit=200), "kind": kind,
        "timeout_s": float(timeout),
        "simulator_model": _text(raw, "simulator_model", limit=200),
        "judge_model": _text(raw, "judge_model", limit=200),
        "judge": judge,
    }
    if kind == "job":
        sha = raw.get("script_sha256")
        if not isinstance(sha, str) or not _SHA.match(sha):
            raise _fail("script_sha256", "must be the sha256 of the uploaded agent script "
                                         "(`titan eval create` uploads it for you)")
        args = _listed(raw, "args")
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise _fail("args", "must be a list of strings")
        cfg.update(script=_text(raw, "script", limit=500) or "agent.py", script_sha256=sha,
                   args=args, requirement=_text(raw, "requirement", limit=200) or "GENERAL")
    else:
        headers = {} if raw.get("headers") is None else raw["headers"]
        if not isinstance(headers, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise _fail("headers", "must map header names to strings")
        cfg.update(url=_url(raw.get("url"), "url"), headers=headers)
    tools = _listed(raw, "tools")
    if not isinstance(tools, list):
        raise _fail("tools", "must be a list of tools")
    cfg["tools"] = [parse_tool(t, i) for i, t in enumerate(tools)]
    names = [t["name"] for t in cfg["tools"]]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise _fail("tools", f"tool {dup!r} is declared twice")
    cfg["topology"] = parse_topology(raw.get("topology"))
    for i, node in enumerate((cfg["topology"] or {}).get("nodes") or []):
        undeclared = [t for t in node["tools"] if t not in names]
        if undeclared:
            raise _fail(f"topology.nodes[{i}].tools", f"names {undeclared[0]!r}, which is not "
                        f"among the agent's tools ({', '.join(names) or 'none declared'})")
    cfg["criteria"] = _criteria(raw.get("criteria"))
    return cfg


def _criteria(raw: Any) -> list[dict[str, Any]]:
    """The workflow's custom ``llm_judge`` criteria (:mod:`titan.evals.criteria`)."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > 20:
        raise _fail("criteria", "must be a list of at most 20 llm_judge criteria")
    out = []
    for i, item in enumerate(raw):
        try:
            out.append(criteria.parse(item))
        except criteria.CriterionInvalid as exc:
            field = f"criteria[{i}]" + (f".{exc.field}" if exc.field else "")
            raise _fail(field, str(exc)) from None
    names = [c["name"] for c in out]
    if len(set(names)) != len(names):
        raise _fail("criteria", f"criterion {next(n for n in names if names.count(n) > 1)!r} "
                                "is declared twice")
    return out


def public_view(cfg: dict[str, Any]) -> dict[str, Any]:
    """The config as pages and the API show it: header values are secrets, names are not;
    so is a password in a URL (``https://user:secret@host``, which httpx sends as Basic
    auth), the agent's or a tool's endpoint's."""
    out = dict(cfg)
    if out.get("headers"):
        out["headers"] = {k: "***" for k in out["headers"]}
    if isinstance(out.get("url"), str):
        out["url"] = _masked(out["url"])
    if isinstance(out.get("tools"), list):
        out["tools"] = [dict(t, endpoint=_masked(t["endpoint"]))
                        if isinstance(t, dict) and isinstance(t.get("endpoint"), str) else t
                        for t in out["tools"]]
    return out


def _masked(url: str) -> str:
    """``url`` with the password of its user info as ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()


def check_task_tools(tasks: list[Any], agent: dict[str, Any]) -> None:
    """Refuse a task whose failure rule names a tool the agent does not declare: a call of
    it is a contract error, so the rule could never fire and the author would believe a
    failure injected that is not."""
    names = [t["name"] for t in agent.get("tools") or []]
    for n, task in enumerate(tasks, 1):
        for i, rule in enumerate(task.failure_rules):
            if rule.tool not in names:
                # Where, as the task file's own errors say it (task N, its id).
                raise ValidationFailed(
                    f"task {n} ({task.id!r}): failure_rules[{i}].tool names {rule.tool!r}, "
                    f"which is not among the evaluation's tools "
                    f"({', '.join(names) or 'none declared'})",
                    details={"field": f"failure_rules[{i}].tool", "task": task.id,
                             "position": n})
