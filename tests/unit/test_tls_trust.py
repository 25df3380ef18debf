"""What a client trusts of an https master (client/tls.py), and what a master says when its
certificate is not the one its database's clients were told to trust (master/tls_pin.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from titan import errors
from titan.client.tls import PinnedContext, fingerprint, parse_pins, self_signed
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
