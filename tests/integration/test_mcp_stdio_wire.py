"""``titan mcp`` on its pipes answers every line JSON-RPC 2.0 answers: garbage, a batch, a
``"jsonrpc": "1.0"`` request, ``params`` as an array and ids that are neither strings nor
integers got no reply at all, and the client waited until its timeout (a QA pass). Driven
here line by line, as a client writes them; no master is needed for the protocol, only for
the answers owed when stdin ends."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from typing import Any

from tests.conftest import free_port
from tests.integration.harness import Cluster, shared_cluster
from titan import TitanJob

cluster = shared_cluster()

HELLO = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "wire-test", "version": "0"}}}


def test_every_line_that_needs_an_answer_gets_one() -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "titan", "mcp", "--master", f"http://127.0.0.1:{free_port()}",
         "--token", "tt_unused"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    assert server.stdin is not None and server.stdout is not None

    def send(line: bytes | str | dict[str, Any]) -> None:
        data = line if isinstance(line, bytes) else \
            (line if isinstance(line, str) else json.dumps(line)).encode()
        server.stdin.write(data + b"\n")  # type: ignore[union-attr]
        server.stdin.flush()  # type: ignore[union-attr]

    def reply(wait: float = 20) -> dict[str, Any] | None:
        ready, _, _ = select.select([server.stdout], [], [], wait)
        if not ready:
            return None
        answer: dict[str, Any] = json.loads(server.stdout.readline())  # type: ignore[union-attr]
        return answer

    try:
        send(HELLO)
        assert reply()["result"]["serverInfo"]["name"] == "titan"  # type: ignore[index]
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        cases: list[tuple[bytes | str | dict[str, Any], Any, int, str]] = [
            ("this is not json", None, -32700, "Parse error"),
            (b'\xff\xfe{"x"', None, -32700, "Parse error"),  # not UTF-8 either
            ("{}", None, -32600, '"jsonrpc" must be "2.0"'),
            (json.dumps([{"jsonrpc": "2.0", "id": 2, "method": "ping"}]), None, -32600,
             "batches are not supported"),
            ({"jsonrpc": "1.0", "id": 5, "method": "ping"}, 5, -32600,
             '"jsonrpc" must be "2.0"'),
            ({"jsonrpc": "2.0", "id": "six", "method": "tools/call", "params": [1, 2]}, "six",
             -32600, '"params" must be an object'),
            ({"jsonrpc": "2.0", "id": 7, "method": 7}, 7, -32600, '"method" must be a string'),
        ]
        for ident in (None, 1.5, {"a": 1}, True):
            cases.append(({"jsonrpc": "2.0", "id": ident, "method": "ping"}, None, -32600,
                          "an id is a string or an integer"))
        # A key named twice: the SDK ran the last, a log may show the first (as at /mcp).
        cases.append(('{"jsonrpc": "2.0", "id": 3, "method": "ping", "method": "tools/list"}',
                      3, -32600, "the key 'method' appears more than once"))
        for line, ident, code, said in cases:
            send(line)
            got = reply()
            assert got is not None, f"no answer to {line!r}"
            assert got["jsonrpc"] == "2.0" and got["id"] == ident, (line, got)
            assert got["error"]["code"] == code and said in got["error"]["message"], (line, got)
        # Not answered: a blank line, and a response (JSON-RPC never answers one); the
        # server goes on serving after all of it.
        send("")
        send({"jsonrpc": "2.0", "id": 99, "result": {}})
        send({"jsonrpc": "2.0", "id": 8, "method": "ping"})
        assert reply() == {"jsonrpc": "2.0", "id": 8, "result": {}}
        # An answer still owed when the client closes its end goes out before the exit.
        send("garbage")
        server.stdin.close()
        assert reply()["error"]["code"] == -32700  # type: ignore[index]
        assert server.wait(timeout=20) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_every_request_is_answered_before_the_end_of_stdin_ends_it(cluster: Cluster) -> None:
    # Piped in and stdin closed: the SDK took the end of stdin for the end of the connection
    # and cancelled the calls in flight, so only the initialize answer came out (a QA pass).
    admin = cluster.client()
    admin.store_put("wire:owed", "still here")
    admin.submit_job(TitanJob(job_id="wire-sleeper", filename=cluster.script(
        "wire_sleep.py", "import time\ntime.sleep(60)\n")))
    calls = [("store_get", {"key": "wire:owed"}),
             ("wait_dag", {"ref": "wire-sleeper", "timeout_seconds": 3}),
             ("get_dag_status", {"ref": "wire-sleeper"})]
    lines = [HELLO, {"jsonrpc": "2.0", "method": "notifications/initialized"}]
    lines += [{"jsonrpc": "2.0", "id": ident, "method": "tools/call",
               "params": {"name": name, "arguments": arguments}}
              for ident, (name, arguments) in enumerate(calls, start=2)]
    lines.append({"jsonrpc": "2.0", "id": "last", "method": "ping"})
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "titan", "mcp", "--master", cluster.url,
             "--token", cluster.admin_token], env=dict(cluster.env), capture_output=True,
            timeout=60, input="".join(json.dumps(line) + "\n" for line in lines).encode())
    finally:
        admin.cancel("wire-sleeper/wire-sleeper")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    answers = {answer["id"]: answer for answer in map(json.loads, done.stdout.splitlines())}
    assert set(answers) == {1, 2, 3, 4, "last"}, (answers, done.stderr.decode()[-2000:])
    assert answers[2]["result"]["structuredContent"] == {"key": "wire:owed",
                                                         "value": "still here"}
    waited = answers[3]["result"]["structuredContent"]
    assert waited["finished"] is False and waited["status"] == "RUNNING", waited
    assert answers[4]["result"]["structuredContent"]["name"] == "wire-sleeper"
    assert answers["last"]["result"] == {}
    assert time.monotonic() - started < 30  # the wait's 3 s, not the drain's bound
