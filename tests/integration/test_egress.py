"""The master does not call where the egress policy forbids (issue 15 item 5): an HTTP agent's
``url`` and a passthrough tool's ``endpoint`` on loopback — by address in any spelling, by a
name that resolves there, or the master's own API — are refused, redirects are not followed, the
target never sees a request, and nothing it could have said reaches the run's readers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.integration.harness import Cluster
from tests.integration.test_api_contract import assert_error, call
from titan.evals import Proxy

TASK = {"id": "t1", "user_instruction": "What is the status of order A-1001?"}
SECRET = "internal-secret-4242"


class _Secret(BaseHTTPRequestHandler):
    """An internal service the master must not reach: it counts who came."""

    hits = 0

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802
        type(self).hits += 1
        body = json.dumps({"final_response": SECRET, "status": SECRET}).encode()
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Allowed(BaseHTTPRequestHandler):
    """The one target the policy allows: a redirector, and an agent that calls a tool."""

    secret_port = 0

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802
        task = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/redirect":
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{self.secret_port}/agent")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        proxy = Proxy(task["proxy"]["url"], task["proxy"]["token"])
        try:
            said = f"tool said {proxy.call('get_order', {'order_id': 'A-1001'})}"
        except Exception as exc:  # noqa: BLE001 - the agent reports what the proxy told it
            said = f"tool failed: {exc}"
        body = json.dumps({"final_response": said}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    secret, secret_port = serve(_Secret)
    _Allowed.secret_port = secret_port
    allowed, allowed_port = serve(_Allowed)
    # Only the allowed service's own port on loopback; everything else keeps the default.
    c = Cluster(tmp_path_factory.mktemp("egress"),
                env={"TITAN_EGRESS_ALLOW": f"127.0.0.1:{allowed_port}"})
    try:
        c.start_master()
        yield {"cluster": c, "secret": secret_port, "allowed": allowed_port}
    finally:
        c.stop()
        secret.shutdown()
        allowed.shutdown()


def tool(endpoint: str | None = None) -> dict[str, Any]:
    t: dict[str, Any] = {"name": "get_order", "description": "Look up an order."}
    if endpoint:
        t |= {"mode": "passthrough", "endpoint": endpoint}
    return t


def run(c: Cluster, name: str, url: str, endpoint: str | None = None) -> dict[str, Any]:
    client = c.client()
    client.create_evaluation(name, {"name": "svc", "kind": "http", "url": url, "judge": False,
                                    "timeout_s": 20, "tools": [tool(endpoint)]}, [TASK])
    client.run_evaluation(name)
    row: dict[str, Any] = client.wait_evaluation(name, timeout=60)["tasks"][0]
    return row


def everything_readers_see(c: Cluster, name: str) -> str:
    """The evaluation as a viewer reads it: explorer, task, run trace, the run's actions."""
    viewer = c.api("POST", "/tokens", {"role": "viewer", "name": f"reader-{name}"})["token"]
    client = c.client(token=viewer)
    view = client.api("GET", f"/evaluations/{name}")
    run_id = view["tasks"][0]["run"]["id"]
    parts = [view, client.api("GET", f"/evaluations/{name}/tasks/t1"),
             client.evaluation_run(name, "t1", run_id),
             client.api("GET", f"/runs/{run_id}/actions")]
    return json.dumps(parts)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{secret}/agent", "http://2130706433:{secret}/agent",
    "http://0x7f.0.0.1:{secret}/agent", "http://[::1]:{secret}/agent",
    "http://169.254.169.254/latest/meta-data/", "http://10.0.0.5:5432/",
    "http://127.0.0.1:{master}/api/v1/tokens"])
def test_a_literal_address_the_policy_refuses_is_refused_at_registration(
        world: dict[str, Any], url: str) -> None:
    c: Cluster = world["cluster"]
    url = url.format(secret=world["secret"], master=c.port)
    name = f"reg-{abs(hash(url)) % 10**8}"
    agent = {"name": "svc", "kind": "http", "url": url, "tools": [tool()]}
    status, body = call(c, "PUT", f"/evaluations/{name}", {"agent": agent, "tasks": [TASK]})
    assert_error(status, body, 400, "invalid_request")
    assert body["error"]["details"] == {"field": "agent.url"}
    assert "TITAN_EGRESS_ALLOW" in body["error"]["message"]
    agent = {"name": "svc", "kind": "http", "url": f"http://127.0.0.1:{world['allowed']}/ok",
             "tools": [tool(url)]}
    status, body = call(c, "PUT", f"/evaluations/{name}", {"agent": agent, "tasks": [TASK]})
    assert body["error"]["details"] == {"field": "agent.tools[0].endpoint"}
    assert_error(*call(c, "GET", f"/evaluations/{name}"), 404, "not_found")


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/", "http://[::1:80/", "http://:80/"])
def test_a_url_no_call_could_use_is_a_400_not_a_500(world: dict[str, Any], url: str) -> None:
    agent = {"name": "svc", "kind": "http", "url": url, "tools": [tool()]}
    status, body = call(world["cluster"], "PUT", "/evaluations/bad-url",
                        {"agent": agent, "tasks": [TASK]})
    assert_error(status, body, 400, "invalid_request")
    assert body["error"]["details"] == {"field": "agent.url"}


def test_a_name_that_resolves_to_loopback_is_refused_when_called(world: dict[str, Any]) -> None:
    c: Cluster = world["cluster"]
    before = _Secret.hits
    row = run(c, "by-name", f"http://localhost:{world['secret']}/agent")
    assert row["run"]["status"] == "failed" and row["run"]["error_class"] == "agent_unreachable"
    assert "egress policy refused localhost" in json.dumps(row)
    assert _Secret.hits == before
    assert SECRET not in everything_readers_see(c, "by-name")


def test_a_redirect_is_not_followed(world: dict[str, Any]) -> None:
    """A 3xx would carry the agent's headers and the run's proxy token to the host it names,
    allowed or not: it is the agent's answer, a bad one."""
    c: Cluster = world["cluster"]
    before = _Secret.hits
    row = run(c, "redirected", f"http://127.0.0.1:{world['allowed']}/redirect")
    assert row["run"]["error_class"] == "agent_bad_response", row
    assert "HTTP 307" in json.dumps(row)
    assert _Secret.hits == before


def test_a_passthrough_tool_is_held_to_the_policy(world: dict[str, Any]) -> None:
    c: Cluster = world["cluster"]
    before = _Secret.hits
    row = run(c, "tool-by-name", f"http://127.0.0.1:{world['allowed']}/ok",
              endpoint=f"http://localhost:{world['secret']}/orders")
    assert row["run"]["status"] == "completed", row  # the allowed agent itself was reached
    seen = everything_readers_see(c, "tool-by-name")
    assert "tool failed" in seen and "egress policy refused" in seen
    assert _Secret.hits == before and SECRET not in seen


def test_an_allowed_target_that_errs_shows_its_status_not_its_body(
        world: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> None:
    """With the internal service allowed, its 500 page is still not shown to readers."""
    c = Cluster(tmp_path_factory.mktemp("egress-open"),
                env={"TITAN_EGRESS_ALLOW": f"127.0.0.1:{world['secret']}"})
    try:
        c.start_master()
        before = _Secret.hits
        row = run(c, "allowed-500", f"http://127.0.0.1:{world['secret']}/agent")
        assert _Secret.hits == before + 1
        assert row["run"]["error_class"] == "agent_5xx"
        assert SECRET not in everything_readers_see(c, "allowed-500")
    finally:
        c.stop()
