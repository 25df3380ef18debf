"""What a client trusts of an https master and how it explains a refusal (client/tls.py),
and what a master says when its certificate is not the one its database's clients were told
to trust (master/tls_pin.py)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from pathlib import Path

import pytest

from titan import errors
from titan.client.tls import (
    RECORDED,
    PinnedContext,
    explain,
    fingerprint,
    parse_pins,
    self_signed,
)
from titan.master.tls_pin import mismatch


def test_several_pins_are_accepted_separated_by_commas(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One pin only: standby masters with a certificate each stranded their pinned workers.
    a = fingerprint(self_signed(tmp_path / "a", ["127.0.0.1"])[0])
    b = fingerprint(self_signed(tmp_path / "b", ["127.0.0.1"])[0])
    assert parse_pins(f"{a}, {b.upper().replace('SHA256:', 'sha256:')},") == {
        bytes.fromhex(a[7:]), bytes.fromhex(b[7:])}
    assert PinnedContext(f"{a},{b}").pins == parse_pins(f"{b},{a}")
    with pytest.raises(errors.ConfigError, match=r"several separated by commas\), got 'sha256:ab'"):
        parse_pins(f"{a},sha256:ab")
    with pytest.raises(errors.ConfigError, match="names no fingerprint"):
        parse_pins(" , ")


def test_a_standby_with_another_certificate_is_told_which_pins_clients_need() -> None:
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    said = mismatch(a, b, "https://m1:9090")
    assert said is not None
    assert f"({a}, at https://m1:9090)" in said and f"TITAN_TLS_FINGERPRINT={a},{b}" in said
    assert "same certificate" in said and "TITAN_CA_FILE that holds every" in said
    assert "now that it leads" in (mismatch(a, b, leading=True) or "")
    # The same certificate, or plain HTTP on either side (refused elsewhere), says nothing.
    assert mismatch(a, a) is None and mismatch(None, b) is None and mismatch("", b) is None
    assert mismatch(a, "") is None


def test_each_tls_failure_is_explained_with_what_would_fix_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The words the CLI raises and the worker logs: no advice to set what is set, the file
    that is set named, a host name mismatch pointed at the name, plain HTTP said to be so."""
    monkeypatch.delenv("TITAN_CA_FILE", raising=False)
    url, seen = "https://m1:9090", "sha256:" + "c" * 64
    pinned = explain(f"the master's certificate is not any of the 2 pinned "
                     f"(TITAN_TLS_FINGERPRINT): it has {seen}", url) or ""
    assert f"the master at {url} did not present a certificate this client pins" in pinned
    assert f"it has {seen}" in pinned and "add its pin to TITAN_TLS_FINGERPRINT" in pinned
    assert "set TITAN_TLS_FINGERPRINT" not in pinned and "TITAN_CA_FILE" not in pinned
    recorded = explain(f"the master's certificate is not the pinned one ({RECORDED}): it has "
                       f"{seen}", url) or ""
    assert "start that master again" in recorded
    verify = "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {} (_ssl.c:1006)"
    untrusted = explain(verify.format("self-signed certificate"), url) or ""
    assert "(self-signed certificate): set TITAN_CA_FILE to its certificate" in untrusted
    monkeypatch.setenv("TITAN_CA_FILE", "/etc/titan/master.pem")
    wrong_ca = explain(verify.format("self-signed certificate"), url) or ""
    assert "TITAN_CA_FILE=/etc/titan/master.pem does not vouch for" in wrong_ca
    assert "set TITAN_CA_FILE" not in wrong_ca
    for kind, name in (("Hostname", "localhost"), ("IP address", "10.0.0.5")):
        said = explain(verify.format(f"{kind} mismatch, certificate is not valid for "
                                     f"'{name}'."), url) or ""
        assert f"is not valid for {name}, the" in said and "subjectAltName" in said, said
        assert "TITAN_CA_FILE" not in said and "TITAN_TLS_FINGERPRINT" not in said
    expired = explain(verify.format("certificate has expired"), url) or ""
    assert "has expired: give the master a new one" in expired
    plain = explain("[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)", url)
    assert plain is not None and "name it with http://" in plain
    # Not TLS failures, or not over TLS: nothing to explain.
    assert explain("[Errno 111] Connection refused", url) is None
    assert explain(verify.format("self-signed certificate"), "http://m1:9090") is None


def test_a_refused_pin_reads_as_a_sentence_not_a_tuple(tmp_path: Path) -> None:
    # str() of an SSLError made from a message alone is its args' repr: workers logged
    # ("the master's certificate is not the pinned one ...",).
    cert, key = self_signed(tmp_path, ["127.0.0.1"])
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def accept() -> None:
            conn, _ = listener.accept()
            with contextlib.suppress(OSError), server.wrap_socket(conn, server_side=True):
                pass

        threading.Thread(target=accept, daemon=True).start()
        context = PinnedContext("sha256:" + "ab" * 32)
        with socket.create_connection(listener.getsockname()) as raw, \
                pytest.raises(ssl.SSLCertVerificationError) as refused:
            context.wrap_socket(raw, server_hostname="127.0.0.1")
    assert str(refused.value) == ("the master's certificate is not the pinned one "
                                  f"(TITAN_TLS_FINGERPRINT): it has {fingerprint(cert)}")
