"""``/api/v1/docs``: the API's operations as one page, from its OpenAPI description, offline.

FastAPI's default explorer loads Swagger UI's script and styles from a CDN: on a machine
without internet (where Titan's local model is meant to run) the page stayed blank. This page
is written by the master itself from ``app.openapi()``: every operation by tag, with its
parameters, body and answers, and links to the description as JSON and to docs/api.md's
contracts. It has no script; the description (``/api/v1/openapi.json``) is for tools.
Public, as the description is: the same for every Titan of a version, no data.
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from titan.master.api.deps import API_PREFIX

router = APIRouter(prefix=API_PREFIX)

_METHODS = ("get", "post", "put", "patch", "delete")
_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:70rem;padding:1rem 2rem;
color:#1d2230}
h1{margin:.2rem 0}h2{margin-top:2rem;border-bottom:1px solid #d8dce5}
details{border:1px solid #d8dce5;border-radius:6px;margin:.35rem 0;padding:.3rem .6rem}
summary{cursor:pointer}code,.path{font-family:ui-monospace,monospace}
.m{display:inline-block;min-width:4.2rem;font-weight:600;text-transform:uppercase}
.get{color:#1a6f3c}.post{color:#1f4fb8}.patch,.put{color:#8a5a00}.delete{color:#a32020}
table{border-collapse:collapse;margin:.3rem 0}td,th{border:1px solid #e3e6ee;
padding:.15rem .5rem;text-align:left;vertical-align:top}.muted{color:#667}
"""


def _text(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _schema(schema: dict[str, Any] | None) -> str:
    """A schema in a few words: its referenced name, its type, or an array of either."""
    if not schema:
        return ""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if schema.get("type") == "array":
        return f"array of {_schema(schema.get('items')) or 'values'}"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(filter(None, (_schema(s) for s in schema[key])))
    return str(schema.get("type") or "object")


def _operation(path: str, method: str, op: dict[str, Any]) -> str:
    out = [f'<details id="{_text(op.get("operationId", method + path))}"><summary>'
           f'<span class="m {method}">{method}</span> <span class="path">{_text(path)}</span>'
           f' <span class="muted">{_text(op.get("summary", ""))}</span></summary>']
    if op.get("description"):
        out += [f"<p>{_text(p)}</p>" for p in str(op["description"]).split("\n\n") if p.strip()]
    params = op.get("parameters") or []
    if params:
        out.append("<table><tr><th>parameter</th><th>in</th><th>type</th><th></th></tr>")
        for p in params:
            out.append(f"<tr><td><code>{_text(p.get('name'))}</code></td>"
                       f"<td>{_text(p.get('in'))}</td><td>{_text(_schema(p.get('schema')))}</td>"
                       f"<td>{'required' if p.get('required') else ''}</td></tr>")
        out.append("</table>")
    body = (op.get("requestBody") or {}).get("content") or {}
    if body:
        kinds = ", ".join(f"{_text(kind)} ({_text(_schema(v.get('schema')) or 'any')})"
                          for kind, v in body.items())
        out.append(f"<p>Body: {kinds}</p>")
    answers = op.get("responses") or {}
    if answers:
        out.append("<p>Answers: " + ", ".join(
            f"<code>{_text(code)}</code> {_text(r.get('description', ''))}"
            for code, r in answers.items()) + "</p>")
    out.append("</details>")
    return "".join(out)


def page(spec: dict[str, Any]) -> str:
    """The explorer's HTML for an OpenAPI description."""
    by_tag: dict[str, list[str]] = {}
    for path, item in sorted((spec.get("paths") or {}).items()):
        for method in _METHODS:
            op = item.get(method)
            if op is not None:
                tag = (op.get("tags") or ["other"])[0]
                by_tag.setdefault(tag, []).append(_operation(path, method, op))
    info = spec.get("info") or {}
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{_text(info.get('title', 'API'))} API</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_text(info.get('title', 'API'))} API <span class=muted>"
        f"{_text(info.get('version', ''))}</span></h1>",
        "<p>Every route but <code>GET /api/v1/health</code> and this description needs "
        "<code>Authorization: Bearer &lt;token&gt;</code>. The description for tools: "
        f'<a href="{API_PREFIX}/openapi.json">openapi.json</a>; the contracts (states, '
        "errors, limits) are in docs/api.md, also on the dashboard's Docs page.</p>",
        "<p>" + " · ".join(f'<a href="#tag-{_text(t)}">{_text(t)}</a>' for t in by_tag) + "</p>",
    ]
    for tag, ops in by_tag.items():
        parts.append(f'<h2 id="tag-{_text(tag)}">{_text(tag)}</h2>')
        parts.extend(ops)
    parts.append("</body></html>")
    return "\n".join(parts)


@router.get("/docs", include_in_schema=False)
async def explorer(request: Request) -> HTMLResponse:
    return HTMLResponse(page(request.app.openapi()))
