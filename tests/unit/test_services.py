"""Services' rules that need no cluster: their settings, the restart policy (backoff and the
cap within a window), and the worker's readiness check, port and address."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from titan import services
from titan.client.job import TitanJob
from titan.errors import ConfigError, ValidationFailed
from titan.worker.service import RestartPolicy
from titan.worker.service_network import advertised_host, allocate_port, check


def _fail(field: str, message: str) -> ValueError:
    return ValueError(f"{field}: {message}")


# -- settings -------------------------------------------------------------------------------------
def test_settings_fill_defaults_and_keep_what_is_given() -> None:
    assert services.settings({}, _fail) == services.DEFAULTS
    got = services.settings({"readiness": "http:/health", "max_restarts": 2,
                             "restart_window": 60, "stop_grace": 1.5, "ready_timeout": None},
                            _fail)
    assert got == {"readiness": "http:/health", "max_restarts": 2, "restart_window": 60.0,
                   "stop_grace": 1.5, "ready_timeout": 60.0}


@pytest.mark.parametrize(("field", "value"), [
    ("readiness", "http:health"), ("readiness", "http:/a b"), ("readiness", "udp"),
    ("readiness", 5), ("max_restarts", -1), ("max_restarts", 1.5), ("max_restarts", True),
    ("restart_window", 0), ("stop_grace", float("inf")), ("ready_timeout", "10"),
    ("stop_grace", 4000),
])
def test_settings_refuse_nonsense_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        services.settings({field: value}, _fail)


def test_readiness_spellings() -> None:
    for ok in ("tcp", "none", "http", "http:/", "http:/v1/health?full=1"):
        assert services.readiness_problem(ok) is None, ok
    assert services.store_key("infer", "model") == "services/infer/model"
    assert services.run_store_key("infer", 3, "model") == "services/infer#3/model"


def test_the_sdk_checks_service_settings_and_sends_them_only_for_services() -> None:
    job = TitanJob("model", "server.py", job_type="service", readiness="http:/health",
                   max_restarts=3)
    payload = job.to_payload("0" * 64)
    assert payload["job_type"] == "SERVICE"
    assert payload["readiness"] == "http:/health" and payload["max_restarts"] == 3
    assert payload["stop_grace"] is None  # the master's default
    assert "readiness" not in TitanJob("run", "a.py").to_payload("0" * 64)
    with pytest.raises(ValidationFailed, match="readiness is for services only") as exc:
        TitanJob("run", "a.py", readiness="tcp")
    assert exc.value.details == {"field": "readiness", "job_id": "run"}
    with pytest.raises(ValidationFailed, match="max_restarts must be an integer"):
        TitanJob("svc", "a.py", job_type="SERVICE", max_restarts=-2)


# -- restart policy -------------------------------------------------------------------------------
def test_backoff_doubles_to_its_cap_and_the_cap_of_restarts_ends_it() -> None:
    policy = RestartPolicy(max_restarts=8, window=1000, base=1.0, cap=60.0)
    delays = [policy.crashed(float(t)) for t in range(8)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    assert policy.crashed(9.0) is None  # the 9th crash in the window: one too many
    assert policy.summary() == "crashed 9 times in 1000 s"


def test_crashes_older_than_the_window_are_forgotten() -> None:
    policy = RestartPolicy(max_restarts=2, window=300)
    assert policy.crashed(0.0) == 1
    assert policy.crashed(100.0) == 2
    # Two crashes in the window are allowed restarts; the first has left it by now.
    assert policy.crashed(350.0) == 2
    assert policy.recent == 2
    assert policy.crashed(360.0) is None
    assert policy.summary() == "crashed 3 times in 300 s"


def test_no_restarts_allowed_gives_up_at_the_first_crash() -> None:
    policy = RestartPolicy(max_restarts=0, window=300)
    assert policy.crashed(5.0) is None
    assert policy.summary() == "crashed once in 300 s"


# -- the worker's side: address, port, checks ---------------------------------------------------
def test_advertised_host_is_the_route_to_the_master_unless_set() -> None:
    assert advertised_host("http://127.0.0.1:9090", environ={}) == "127.0.0.1"
    assert advertised_host("http://127.0.0.1:9090",
                           environ={"TITAN_SERVICE_HOST": "10.1.2.3"}) == "10.1.2.3"


def test_a_service_host_that_names_no_host_is_refused() -> None:
    """TITAN_SERVICE_HOST was published as the services' address whatever it held (a space,
    a URL, a port): nothing could reach them there and every readiness check failed."""
    for good in ("10.1.2.3", "::1", "gpu-3.internal", "worker_7"):
        assert advertised_host("http://127.0.0.1:9090",
                               environ={"TITAN_SERVICE_HOST": f" {good} "}) == good
    for bad in ("not a host", "http://10.0.0.5", "10.0.0.5:8000", "-x"):
        with pytest.raises(ConfigError, match="TITAN_SERVICE_HOST must be an address or a "
                                              "host name"):
            advertised_host("http://127.0.0.1:9090", environ={"TITAN_SERVICE_HOST": bad})


def test_an_allocated_port_can_be_bound() -> None:
    port = allocate_port("127.0.0.1")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(200 if self.path == "/health" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_checks_tcp_and_http(http_port: int) -> None:
    async def run(readiness: str, port: int) -> str | None:
        return await check("127.0.0.1", port, readiness, 2.0)

    assert asyncio.run(run("tcp", http_port)) is None
    assert asyncio.run(run("http:/health", http_port)) is None
    why = asyncio.run(run("http:/other", http_port))
    assert why is not None and "503" in why
    closed = allocate_port("127.0.0.1")  # nothing listens there
    why = asyncio.run(run("tcp", closed))
    assert why is not None and why.startswith(f"no connection to 127.0.0.1:{closed}")
