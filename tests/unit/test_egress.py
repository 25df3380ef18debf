"""The egress policy's rules (master/egress.py): what the master may connect to."""

from __future__ import annotations

import ipaddress

import pytest

from titan.errors import ConfigError
from titan.master.egress import EgressPolicy, Rule, literal_address, parse_rule

ip = ipaddress.ip_address


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1",
    "169.254.169.254", "fe80::1", "fd00::1", "0.0.0.0", "224.0.0.1", "240.0.0.1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "192.0.2.1"])
def test_addresses_that_are_not_public_are_refused_by_default(address: str) -> None:
    assert EgressPolicy().refusal("h", ip(address), 80) is not None, address


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert EgressPolicy().refusal("example.com", ip(address), 443) is None


def test_allow_and_deny_entries() -> None:
    policy = EgressPolicy([parse_rule("127.0.0.1:8080", "A"), parse_rule("10.0.0.0/8", "A"),
                           parse_rule("agent.internal", "A")],
                          [parse_rule("10.9.0.0/16", "D"), parse_rule("8.8.8.8", "D")])
    assert policy.refusal("x", ip("127.0.0.1"), 8080) is None
    assert "loopback" in (policy.refusal("x", ip("127.0.0.1"), 8081) or "")
    assert policy.refusal("x", ip("10.1.1.1"), 5432) is None
    assert policy.refusal("x", ip("10.9.1.1"), 80) == "denied by TITAN_EGRESS_DENY"
    assert policy.refusal("x", ip("8.8.8.8"), 53) == "denied by TITAN_EGRESS_DENY"
    # A name allows whatever it resolves to (the operator vouches for it), under that name only.
    assert policy.refusal("Agent.Internal", ip("192.168.5.5"), 443) is None
    assert policy.refusal("other.internal", ip("192.168.5.5"), 443) is not None
    assert EgressPolicy(allow_all=True).refusal("x", ip("127.0.0.1"), 1) is None


def test_the_masters_own_port_needs_an_allow_entry_naming_it() -> None:
    broad = EgressPolicy([parse_rule("127.0.0.0/8", "A")], own_ports=[9090])
    assert "own port" in (broad.refusal("x", ip("127.0.0.1"), 9090) or "")
    assert broad.refusal("x", ip("127.0.0.1"), 9091) is None
    exact = EgressPolicy([parse_rule("127.0.0.1:9090", "A")], own_ports=[9090])
    assert exact.refusal("x", ip("127.0.0.1"), 9090) is None
    everything = EgressPolicy(allow_all=True, own_ports=[9090])
    assert everything.refusal("x", ip("127.0.0.1"), 9090) is not None


def test_entries_parse_or_say_what_is_wrong() -> None:
    assert parse_rule(" [::1]:8443 ", "S") == Rule(network=ipaddress.ip_network("::1/128"),
                                                   port=8443)
    assert parse_rule("::1", "S").network == ipaddress.ip_network("::1/128")
    assert parse_rule("agent.internal:443", "S") == Rule(host="agent.internal", port=443)
    for bad in ("10.0.0.0/33", "host:99999", "a b", "user@host", "h:x"):
        with pytest.raises(ConfigError, match="S"):
            parse_rule(bad, "S")
    # A URL pasted whole (docs/configuration.md: host names "as written in URLs").
    for url in ("http://agent.internal", "https://10.0.0.5:8443/x"):
        with pytest.raises(ConfigError, match=r"^S: '.*' is a URL; an entry is a host or "
                                              r"address, with a port"):
            parse_rule(url, "S")


@pytest.mark.parametrize("host, expected", [
    ("2130706433", "127.0.0.1"), ("0x7f.1", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"), ("[::1]", "::1"), ("example.com", None), ("localhost", None)])
def test_every_spelling_of_an_address_is_seen(host: str, expected: str | None) -> None:
    found = literal_address(host)
    assert (str(found) if found else None) == expected


def test_urls_with_literal_addresses_are_checked_at_registration() -> None:
    policy = EgressPolicy()
    for url in ("http://2130706433:18888/", "http://[::1]/x", "https://169.254.169.254/",
                "http://0x7f.0.0.1:5432/"):
        assert "TITAN_EGRESS_ALLOW" in (policy.check_url(url) or ""), url
    assert policy.check_url("http://localhost:8080/") is None  # a name: checked when called
    assert policy.check_url("https://93.184.216.34/") is None


def test_nat64_addresses_are_judged_by_the_ipv4_address_they_carry() -> None:
    policy = EgressPolicy()
    assert policy.refusal("h", ip("64:ff9b::7f00:1"), 80) is not None  # 127.0.0.1
    assert policy.refusal("h", ip("64:ff9b::808:808"), 80) is None  # 8.8.8.8


def test_a_url_urlsplit_cannot_take_is_refused_not_raised() -> None:
    assert "not a valid URL" in (EgressPolicy().check_url("http://127.0.0.1:99999/") or "")
