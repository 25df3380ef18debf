"""Where a worker's services are reached, and whether they answer: the address other machines
use (:func:`advertised_host`), a free port (:func:`allocate_port`, and "the port race" in
:mod:`titan.worker.service`), and one readiness or health check (:func:`check`)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping
from urllib.parse import urlsplit

from titan.worker.settings import service_host


def advertised_host(master_url: str, environ: Mapping[str, str] = os.environ) -> str:
    """The address other machines reach this worker's services at: ``TITAN_SERVICE_HOST``,
    else this host's address on the route to the master (127.0.0.1 for a master on
    loopback), which is the network the cluster shares."""
    given = service_host(environ)
    if given:
        return given
    host = urlsplit(master_url).hostname or "127.0.0.1"
    found = _routes.get(host)
    if found is None:
        found = "127.0.0.1"
        for family in (socket.AF_INET, socket.AF_UNSPEC):
            try:
                info = socket.getaddrinfo(host, 9, family, socket.SOCK_DGRAM)[0]
                with socket.socket(info[0], socket.SOCK_DGRAM) as probe:
                    probe.connect(info[4])  # UDP: the kernel picks a route, nothing is sent
                    found = str(probe.getsockname()[0])
                break
            except OSError:
                continue
        _routes[host] = found
    return found


_routes: dict[str, str] = {}


def allocate_port(host: str) -> int:
    """A TCP port free on every interface of this host, now (see "the port race" above)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens on ``port`` of this host already: binding it (as a server
    does, ``SO_REUSEADDR`` so a closed connection's TIME_WAIT does not count) fails."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError:
            return True
    return False


async def check(host: str, port: int, readiness: str, timeout: float) -> str | None:
    """One readiness or health check: None when the service answers as ``readiness`` asks
    (a TCP connection; for ``http:/path`` a GET answered 2xx or 3xx), else why not."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as exc:
        return f"no connection to {host}:{port} ({exc or 'timed out'})"
    try:
        if not readiness.startswith("http"):
            return None
        path = readiness[5:] or "/"
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: titan-worker"
                     f"\r\nConnection: close\r\n\r\n".encode("ascii"))
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400:
            return None
        answer = line.decode("latin-1").strip()[:80]
        return f"GET {path} answered {answer!r}" if answer else f"GET {path}: no answer"
    except (OSError, TimeoutError) as exc:
        return f"GET {readiness[5:] or '/'}: {exc or 'timed out'}"
    finally:
        writer.close()
