"""The docs pages (/docs, /docs/<page>) against a real `titan up`: served to anyone, in the
dashboard's layout, with anchors, links between pages rewritten, nothing but Markdown's own
markup, a 404 through the one error handler — the determinism API's links landing on them,
and troubleshooting.md's reachability checks answering as its table says."""

from __future__ import annotations

import html
import json
import re
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import Cluster, shared_cluster

# The master may call the test's agent endpoint, on loopback.
cluster = shared_cluster(slots=1, env={"TITAN_EGRESS_ALLOW": "127.0.0.1"})
# What markdown-it makes of Markdown, and the page around it: any other tag in a page's
# article would have come from the Markdown's raw HTML.
ARTICLE_TAGS = {"article", "h1", "h2", "h3", "h4", "h5", "h6", "p", "a", "ul", "ol", "li",
                "pre", "code", "table", "thead", "tbody", "tr", "th", "td", "em", "strong",
                "blockquote", "hr", "br", "span", "img"}


@pytest.fixture(scope="module")
def anon(cluster: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{cluster.dashboard_port}", timeout=30) as c:
        yield c


class _Article(HTMLParser):
    """The tags and attributes inside <article id="doc">."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.tags: set[str] = set()
        self.attrs: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "article" and ("id", "doc") in attrs:
            self.depth = 1
        elif self.depth and tag not in ("br", "hr", "img"):
            self.depth += 1
        if self.depth:
            self.tags.add(tag)
            self.attrs.update(name for name, _ in attrs)

    def handle_endtag(self, tag: str) -> None:
        if self.depth:
            self.depth -= 1


def test_the_index_is_served_to_anyone(anon: httpx.Client, cluster: Cluster) -> None:
    r = anon.get("/docs", headers={"Accept": "text/html"})
    assert r.status_code == 200, r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    body = r.text
    assert 'data-page="docs"' in body and 'aria-current="page">Docs</a>' in body
    assert '<a href="/docs/troubleshooting" data-page="troubleshooting">Troubleshooting</a>' \
        in body
    assert "Sign out" not in body  # a visitor: no session, no header of one
    twin = anon.get("/docs.json").json()
    names = [p["name"] for p in twin["pages"]]
    assert {"troubleshooting", "determinism", "dashboard", "api"} <= set(names)
    assert names == sorted(names)
    page = next(p for p in twin["pages"] if p["name"] == "determinism")
    assert page == {"name": "determinism", "title": "Determinism findings",
                    "summary": page["summary"], "href": "/docs/determinism"}
    assert page["summary"].startswith("What each finding")
    # Signed in, the header is the usual one.
    signed = httpx.get(f"{cluster.url}/docs",
                       headers={"Authorization": f"Bearer {cluster.admin_token}"})
    assert signed.status_code == 200 and 'title="signed in">admin' in signed.text


def test_a_page_with_anchors_tables_code_and_rewritten_links(anon: httpx.Client) -> None:
    r = anon.get("/docs/troubleshooting")
    assert r.status_code == 200, r.text
    html = r.text
    assert "<title>Troubleshooting · Titan</title>" in html
    assert '<h2 id="failure-modes">Failure modes <a class="anchor" href="#failure-modes"' \
        in html
    for anchor in ("agent-timeout", "agent-5xx", "transport-error", "network-reachability",
                   "replay-not-available", "cant-find-my-run", "action-data-missing"):
        assert f'id="{anchor}"' in html, anchor
    assert '<li><a href="#network-reachability">Network reachability</a></li>' in html
    assert "<table>" in html and "<th>error class</th>" in html
    assert '<pre><code class="language-bash">curl -sS -m 5' in html
    # Links between docs pages point at their routes, with their anchors.
    assert 'href="/docs/security#outbound-calls-from-the-master"' in html
    assert 'href="/docs/determinism"' in html
    assert not [h for h in re.findall(r'href="([^"]*)"', html) if ".md" in h]
    twin = anon.get("/docs/troubleshooting.json").json()
    assert twin["name"] == "troubleshooting" and twin["html"] in html
    assert {"level": 3, "text": "Agent timeout", "anchor": "agent-timeout"} in twin["headings"]


def test_every_page_holds_only_markdowns_own_markup(anon: httpx.Client) -> None:
    for page in anon.get("/docs.json").json()["pages"]:
        r = anon.get(page["href"])
        assert r.status_code == 200, page
        article = _Article()
        article.feed(r.text)
        assert article.tags and article.tags <= ARTICLE_TAGS, (page["name"], article.tags)
        assert not [a for a in article.attrs if a.startswith("on")], page["name"]
        assert article.attrs <= {"id", "class", "href", "aria-label", "data-page", "src",
                                 "alt", "title", "start"}, (page["name"], article.attrs)


def test_an_unknown_page_is_a_404_through_the_error_handler(anon: httpx.Client) -> None:
    r = anon.get("/docs/no-such-page", headers={"Accept": "text/html"})
    assert r.status_code == 404
    assert "<h1>Not found</h1>" in r.text and "no docs page &#39;no-such-page&#39;" in r.text
    assert 'data-page="docs"' in r.text
    r = anon.get("/docs/%3Cscript%3Ealert(1)%3C%5Cscript%3E")
    assert r.status_code == 404 and "<script>alert" not in r.text
    assert "&lt;script&gt;alert(1)&lt;" in r.text
    r = anon.get("/docs/no-such-page.json")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_determinism_findings_link_to_their_section(cluster: Cluster,
                                                    anon: httpx.Client) -> None:
    cluster.api("POST", "/runs", {"id": "docs-links", "agent_id": "docs"})
    cluster.api("POST", "/runs/docs-links/actions", {"actions": [{
        "id": "a1", "actor": "main", "channel": "custom", "name": "generate_report",
        "started_at": time.time(), "inputs": {"topic": "sales"},
        "outputs": {"report": "Q3", "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "report_id": "3f2b9c1e-8a4d-4e2b-9b7a-1c2d3e4f5a6b"}}]})
    cluster.api("PATCH", "/runs/docs-links", {"status": "completed"})
    report = cluster.api("GET", "/runs/docs-links/determinism")
    links = {f["kind"]: f["docs"] for f in report["findings"]}
    assert links == {"timestamp_in_output": "/docs/determinism#timestamp-in-output",
                     "uuid_in_output": "/docs/determinism#uuid-in-output"}
    assert {r["kind"]: r["docs"] for r in report["recommendations"]} == links
    page = anon.get("/docs/determinism").text
    for link in links.values():
        assert f'id="{link.split("#")[1]}"' in page


def test_the_apis_own_docs_stay_where_they_were_and_work_offline(cluster: Cluster) -> None:
    # FastAPI's explorer loaded Swagger UI from a CDN: blank without internet.
    r = httpx.get(f"{cluster.url}/api/v1/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "http://" not in r.text and "https://" not in r.text and "<script" not in r.text
    spec = httpx.get(f"{cluster.url}/api/v1/openapi.json").json()
    for path, item in spec["paths"].items():
        for method in item:
            if method in ("get", "post", "put", "patch", "delete"):
                assert f'<span class="m {method}">{method}</span> <span class="path">' \
                       f"{html.escape(path)}</span>" in r.text, (method, path)
    assert 'href="/api/v1/openapi.json"' in r.text


class _HeldAgent(BaseHTTPRequestHandler):
    """An HTTP agent that keeps its run in flight until the test lets it answer."""

    got: dict[str, Any] = {}
    arrived = threading.Event()
    release = threading.Event()

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        _HeldAgent.got = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _HeldAgent.arrived.set()
        _HeldAgent.release.wait(60)
        body = json.dumps({"final_response": "done"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_the_reachability_checks_answer_as_documented(cluster: Cluster) -> None:
    """docs/troubleshooting.md#network-reachability: the health check, the side-effect-free
    probe, and what a wrong token, an undeclared tool, another Host and an ended run get."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HeldAgent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = cluster.client()
        client.create_evaluation("reach", {
            "name": "reach-bot", "kind": "http", "judge": False,
            "url": f"http://127.0.0.1:{server.server_address[1]}/agent",
            "tools": [{"name": "get_order", "input_schema": {
                "type": "object", "properties": {"order_id": {"type": "string"}}}}]},
            [{"id": "t1", "user_instruction": "Where is my order?"}])
        client.run_evaluation("reach")
        assert _HeldAgent.arrived.wait(30), "the master never called the agent"
        proxy, run_id = _HeldAgent.got["proxy"], _HeldAgent.got["run_id"]
        assert proxy["url"] == f"{cluster.url}/api/v1/runs/{run_id}/tools"

        health = httpx.get(f"{cluster.url}/api/v1/health").json()
        assert health["status"] == "ok"
        # The example's fields are the reply's (it lacked role and epoch).
        page = (Path(__file__).parents[2] / "docs" / "troubleshooting.md").read_text()
        shown = re.search(r'^# (\{"status":"ok".*\})$', page, re.M)
        assert shown is not None
        assert sorted(json.loads(shown.group(1))) == sorted(health), health

        def probe(tool: str = "get_order", token: str = proxy["token"],
                  **headers: str) -> httpx.Response:
            return httpx.post(f"{proxy['url']}/{tool}", content=b"[]", headers={
                "Authorization": f"Bearer {token}", "Content-Type": "application/json",
                **headers})

        r = probe()
        assert r.status_code == 400
        assert r.json()["error"] == {"code": "invalid_request", "details": {},
                                     "message": 'the body must be {"arguments": {...}, '
                                                '"actor"?: "..."}'}
        r = probe(token="tr_not-the-runs-token")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert f"may not call tools for run {run_id}" in r.json()["error"]["message"]
        # No token at all: the answer the page quotes, in the table and in Proxy misconfigured.
        r = httpx.post(f"{proxy['url']}/get_order", content=b"[]",
                       headers={"Content-Type": "application/json"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        quoted = re.findall(r'no token at all: "([^"]+)"|at all is refused before the master '
                            r'knows it is meant for this run \("([^"]+)"\)',
                            " ".join(page.split()))
        assert len(quoted) == 2, quoted
        for said in (a or b for a, b in quoted):
            assert said in r.json()["error"]["message"], (said, r.json())
        r = probe(tool="get_weather")
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_tool"
        r = probe(Host="titan.example.org")
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_host"
        # Nothing was called: the probes left no tool call behind.
        assert cluster.api("GET", f"/runs/{run_id}/actions")["actions"] == []

        _HeldAgent.release.set()
        view = client.wait_evaluation("reach", timeout=60)
        run = view["tasks"][0]["run"]
        assert run["status"] == "completed" and run["tool_calls"] == 0
        r = probe()
        assert r.status_code == 409 and r.json()["error"]["code"] == "run_ended"
        trace = client.evaluation_run("reach", "t1", run_id)
        assert trace["completion_warning"]  # tools declared, no call through the proxy
        assert trace["debug"]["proxy_refusals"] >= 1  # the undeclared tool, at least
    finally:
        _HeldAgent.release.set()
        server.shutdown()
