"""PII redaction (titan.redaction): what each built-in pattern takes and leaves, the checks
that keep false positives out (Luhn, IBAN mod 97), the placeholders and counts, the gates
that skip the walk (never skipping a value a pattern matches), and the custom patterns a
master refuses to start with."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from titan.errors import ConfigError
from titan.redaction import (
    BUILTIN,
    DEFAULT,
    Redactor,
    builtin_names,
    from_settings,
    iban_valid,
    literal_prefix,
    luhn,
    read_custom,
)
from titan.trace.canonical import dumps

ALL = Redactor(BUILTIN)


def redact(text: str, r: Redactor = ALL) -> tuple[str, dict[str, int]]:
    counts: dict[str, int] = {}
    return r.text(text, counts), counts


@pytest.mark.parametrize(("text", "pattern"), [
    ("mail jane.doe+x@mail.example.co.uk now", "email"),
    ("call +1 415 555 0100", "phone"), ("(415) 555-0100", "phone"), ("415.555.0100", "phone"),
    ("+44 20 7946 0958", "phone"), ("+33 1 23 45 67 89", "phone"),
    ("4111 1111 1111 1111", "credit_card"), ("4111-1111-1111-1111", "credit_card"),
    ("378282246310005", "credit_card"), ("5555555555554444", "credit_card"),
    ("DE89 3704 0044 0532 0130 00", "iban"), ("GB82WEST12345698765432", "iban"),
    ("ssn 123-45-6789", "us_ssn"),
    ("sk-proj-" + "a1" * 12, "api_key"), ("AKIAIOSFODNN7EXAMPLE", "api_key"),
    ("ghp_" + "x" * 36, "api_key"), ("xoxb-1234567890-abcdef", "api_key"),
    ("tt_" + "Z" * 43, "api_key"), ("tj.12.1." + "ab" * 16, "api_key"),
    # A dashboard session's cookie, bound to its master process (p...) or not.
    ("Cookie: titan_session=tok-3f9a0b1c2d4e.p" + "ab" * 12 + ".1767225600." + "c" * 40,
     "api_key"),
    ("tok-3f9a0b1c2d4e." + "12" * 12 + ".1767225600." + "d" * 40, "api_key"),
    ("eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.SflKxwRJSMeKKF2Q", "api_key"),
    ("-----BEGIN RSA PRIVATE KEY-----", "api_key"),
    ("host 10.20.30.40.", "ipv4"),
])
def test_each_builtin_pattern_takes_its_kind(text: str, pattern: str) -> None:
    out, counts = redact(text)
    assert counts == {pattern: 1}, (out, counts)
    assert f"[REDACTED:{pattern}]" in out


@pytest.mark.parametrize("text", [
    "4111 1111 1111 1112",  # fails Luhn
    "1735000000123456789",  # time_ns: no issuer prefix
    "DE89 3704 0044 0532 0130 01",  # fails mod 97
    "2024-12-28T14:30:00Z", "v1.2.3", "3.14159", "550e8400-e29b-41d4-a716-446655440000",
    "000-12-3456", "page 12 of 345", "lora fine-tuning 123", "https://example.org/paper/1/2",
    "task-sk-1", "256.1.1.1",
])
def test_lookalikes_are_left_alone(text: str) -> None:
    assert redact(text) == (text, {})


def test_checks() -> None:
    assert luhn("4111111111111111") and not luhn("4111111111111112")
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid("DE00 3704 0044 05")


def test_values_are_walked_keys_included_numbers_never() -> None:
    counts: dict[str, int] = {}
    value: Any = {"to": ["a@b.io", {"cc": "c@d.io"}], "x@y.io": 1, "z@w.io": 2, "n": 4111111111111111,
                  "ok": True, "none": None}
    out = ALL.value(value, counts)
    assert out == {"to": ["[REDACTED:email]", {"cc": "[REDACTED:email]"}],
                   "[REDACTED:email]": 1, "[REDACTED:email]#": 2, "n": 4111111111111111,
                   "ok": True, "none": None}
    assert counts == {"email": 4}
    assert value["to"][0] == "a@b.io"  # the caller's value is not changed


def test_the_default_set_leaves_addresses() -> None:
    r = Redactor()
    assert r.names == DEFAULT and redact("10.0.0.1", r) == ("10.0.0.1", {})


def test_the_gates_never_skip_a_value_a_pattern_matches() -> None:
    """The gates look at canonical JSON text, where quotes, backslashes and control
    characters are escaped: a match in the value must still show in the text."""
    pieces = ["jane@example.com", "+1 415 555 0100", "(415) 555-0100", "4111 1111 1111 1111",
              "378282246310005", "DE89 3704 0044 0532 0130 00", "NL91ABNA0417164300",
              "123-45-6789", "sk-" + "a" * 24, "AKIAIOSFODNN7EXAMPLE", "1.1.1.1",
              "+33 1 23 45 67 89", "\n", '"', "\\", "\t", "x", " ", "é", "2024-12-28", "-", ".",
              "\u0001", "("]
    rng = random.Random(7)
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 5)))
        counts: dict[str, int] = {}
        ALL.text(text, counts)
        if counts:
            assert ALL.might_match(dumps({"k": [text]})), repr(text)
    assert not ALL.might_match(dumps({"query": "lora fine-tuning 12", "k": 3}))


def test_custom_patterns_join_and_come_first() -> None:
    r = Redactor(DEFAULT, {"employee_id": r"EMP-\d{6}", "ticket": r"(?i)tkt#\d+"})
    assert redact("EMP-123456 and TKT#42 and jo@x.io", r) == (
        "[REDACTED:employee_id] and [REDACTED:ticket] and [REDACTED:email]",
        {"employee_id": 1, "ticket": 1, "email": 1})
    # A literal prefix is a custom pattern's gate; one without (here case-insensitive) has
    # none, so every string is walked.
    assert r.might_match("anything")
    gated = Redactor(DEFAULT, {"employee_id": r"^EMP-\d{6}$"})
    assert gated.might_match('{"id":"EMP-123456"}') and not gated.might_match('{"id":"E-1"}')
    assert redact("EMP-123456", gated) == ("[REDACTED:employee_id]", {"employee_id": 1})
    assert Redactor.from_config(r.config()).names == r.names


@pytest.mark.parametrize(("name", "pattern", "says"), [
    ("bad", "(unclosed", "not a valid regular expression"),
    ("empty", "a*", "matches the empty string"),
    ("nested", "(a+)+b", "nests unbounded repeats"),
    ("nested2", "(?:x|(?:ab*)*)*c", "nests unbounded repeats"),
    ("named", "(?P<x>a)", "named group"),
    ("backref", r"(a)\1", "back-reference"),
    ("Bad-Name", "a", "must be 1-40 characters"),
    ("email", "a", "built-in's name"),
])
def test_hostile_custom_patterns_are_refused_by_name(name: str, pattern: str,
                                                     says: str) -> None:
    with pytest.raises(ConfigError, match=says) as info:
        Redactor(DEFAULT, {name: pattern})
    assert repr(name) in str(info.value)


@pytest.mark.parametrize(("pattern", "prefix"), [
    (r"EMP-\d{6}", "EMP-"), (r"^EMP-\d+$", "EMP-"), (r"\AXY\d", "XY"), (r"(?i)emp-\d", None),
    (r"[A-Z]+-\d+", None), (r"E\d", None), ('a"b', None)])
def test_literal_prefixes(pattern: str, prefix: str | None) -> None:
    assert literal_prefix(pattern) == prefix


def test_bounded_repeats_are_fine() -> None:
    Redactor((), {"ok": r"(ab{1,3}){2,4}c", "ok2": r"[A-Z]+-\d+"})


def test_settings(tmp_path: Path) -> None:
    assert from_settings("off", None, None) is None
    r = from_settings(None, "default,ipv4", None)
    assert r is not None and r.names == (*DEFAULT, "ipv4")
    assert builtin_names("all") == tuple(BUILTIN) and builtin_names("email") == ("email",)
    with pytest.raises(ConfigError, match="TITAN_PII_REDACTION must be on or off"):
        from_settings("maybe", None, None)
    with pytest.raises(ConfigError, match="unknown PII pattern 'mail'"):
        from_settings("on", "mail", None)
    path = tmp_path / "pii.txt"
    path.write_text("# ours\n\nemployee_id = EMP-\\d{6}\n  badge=B\\d{4}  \n")
    assert read_custom(str(path)) == {"employee_id": r"EMP-\d{6}", "badge": r"B\d{4}"}
    path.write_text("just a regex\n")
    with pytest.raises(ConfigError, match=r"pii.txt:1: expected 'name = regex'"):
        read_custom(str(path))
    with pytest.raises(ConfigError, match="cannot read"):
        read_custom(str(tmp_path / "missing.txt"))


@pytest.mark.parametrize("blank", ["", " ", ",", " , "])
def test_a_blank_pattern_list_is_the_default_not_nothing(blank: str) -> None:
    # " " named no pattern and turned redaction off without a word (QA).
    from titan.redaction import DEFAULT, builtin_names

    assert builtin_names(blank) == tuple(DEFAULT)


@pytest.mark.parametrize("text", [
    "key -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\nAQEFAASC+/==\n"
    "-----END PRIVATE KEY----- after",
    'key {"k": "-----BEGIN RSA PRIVATE KEY-----\\nMIIEvQIBADAN\\nabc==\\n'
    '-----END RSA PRIVATE KEY-----"} after',
])
def test_a_pem_private_key_is_redacted_whole_not_its_first_line(text: str) -> None:
    # Only the BEGIN line went: the key itself, its body, was stored and served.
    out, counts = redact(text)
    assert counts == {"api_key": 1} and "MIIEv" not in out and "END" not in out, out
    assert out.startswith("key ") and out.endswith(" after"), out
