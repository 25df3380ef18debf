"""HTTP spoken by hand over a socket: for requests no client library would send (two Host
lines, a body larger than announced, an upgrade with one chosen Host)."""

from __future__ import annotations

import socket


def head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in
                                                              headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(sock: socket.socket, timeout: float = 10) -> tuple[int, str]:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    header, _, body = data.partition(b"\r\n\r\n")
    text = header.decode("latin-1").lower()
    length = next((int(line.split(":")[1]) for line in text.split("\r\n")
                   if line.startswith("content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(text.split()[1]), text + "\r\n\r\n" + body.decode("utf-8", "replace").lower()
