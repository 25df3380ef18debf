"""The ledger's fast content encoding writes exactly json's bytes (titan/ledger.py): a chain
recorded by one must verify under the other, and under any verifier that follows the docs."""

from __future__ import annotations

import json
import math
import random

import pytest

from titan import ledger


def _row(**over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": "a-1", "parent_id": None, "actor": "ITER1/researcher-1", "channel": "tool",
        "name": "web_search", "ordinal": 3, "inputs_hash": "a" * 64, "inputs_size": 40,
        "outputs_hash": "b" * 64, "outputs_size": 120, "error_type": None,
        "error_message": None, "outcome": "success", "model": None, "input_tokens": None,
        "output_tokens": None, "cached_tokens": None, "reasoning_tokens": None,
        "cost_usd": None, "cost_source": None, "started_at": 1.7e9, "duration_ns": 1_500_000,
        "tags": None, "replay_status": None, "pii": None, "recorded_at": 1.7e9 + 0.25}
    row.update(over)
    return row


def _reference(a: dict[str, object]) -> bytes:
    """The documented encoding, spelled out with the standard library alone."""
    tags, pii, cost = a["tags"], a["pii"], a["cost_usd"]
    values = [ledger.VERSION, *(a[f] for f in ledger.CONTENT_FIELDS)]
    values[1 + ledger.CONTENT_FIELDS.index("cost_usd")] = None if cost is None else float(cost)
    for f in ("started_at", "recorded_at"):
        values[1 + ledger.CONTENT_FIELDS.index(f)] = float(a[f])  # type: ignore[arg-type]
    values[1 + ledger.CONTENT_FIELDS.index("tags")] = None if tags is None else json.dumps(
        tags, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    values[1 + ledger.CONTENT_FIELDS.index("pii")] = json.dumps(
        pii, sort_keys=True, separators=(",", ":"), ensure_ascii=False) if pii else None
    return json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize("cost", [
    None, 0, 0.0, -0.0, 1e-4, 9.999e-5, 3e-05, 1.5e-9, 0.0004, 12.5, 9999999999999998.0, 1e16,
    2.5e22, -3e-05, math.nan, math.inf, -math.inf, 5e-324, 1.7976931348623157e308])
def test_every_float_is_written_as_json_writes_it(cost: float | None) -> None:
    row = _row(cost_usd=cost, started_at=cost if cost is not None else 1.0)
    assert ledger.content(row) == _reference(row)


@pytest.mark.parametrize("text", [
    "\x00\x1f\x7f", "é漢字😀", "\u2028\u2029", 'a"b\\c/', "tab\tnew\nline", "", " " * 3])
def test_every_string_is_written_as_json_writes_it(text: str) -> None:
    row = _row(actor=text, error_message=text, tags={text: [text, 1.5e-7], "b": None},
               pii={"inputs": {text: 2}})
    assert ledger.content(row) == _reference(row)


def test_values_the_fast_encoder_refuses_take_json_s_path() -> None:
    big = _row(duration_ns=2 ** 70, ordinal=-(2 ** 65), cost_usd=3e-05)
    assert ledger.content(big) == _reference(big)
    with pytest.raises(UnicodeEncodeError):  # as before: a lone surrogate cannot be stored
        ledger.content(_row(actor="\ud800"))


def test_random_rows_encode_alike() -> None:
    rnd = random.Random(20)
    for _ in range(3000):
        def num() -> float:
            return rnd.choice([rnd.random() * 10 ** rnd.randint(-12, 20),
                               rnd.randint(0, 10 ** 6) / 10 ** rnd.randint(0, 9),
                               float(rnd.randint(0, 2 ** 60)), -rnd.random()])
        row = _row(cost_usd=num(), started_at=num(), recorded_at=num(),
                   input_tokens=rnd.randint(0, 2 ** 40), ordinal=rnd.randint(-5, 5),
                   name="".join(chr(rnd.randint(1, 0x2FFF)) for _ in range(rnd.randint(0, 12))))
        assert ledger.content(row) == _reference(row), row


def test_a_link_hashes_the_previous_hash_the_seq_and_the_content() -> None:
    import hashlib

    body = ledger.content(_row())
    assert ledger.link("ab" * 32, 7, body) == hashlib.sha256(
        ("ab" * 32 + ":7:").encode() + body).hexdigest()


def test_tags_and_pii_counts_encode_as_json_writes_them() -> None:
    """Tags and PII counts go through orjson when they hold no float: sorted keys of any
    script, nesting, booleans, nulls and big integers must come out as json's own text."""
    rnd = random.Random(7)

    def text() -> str:
        return "".join(chr(rnd.choice([rnd.randint(32, 126), rnd.randint(0x80, 0x2FFF),
                                       rnd.randint(0x1F300, 0x1F6FF), rnd.randint(0, 31)]))
                       for _ in range(rnd.randint(0, 8)))

    def value(depth: int) -> object:
        roll = rnd.random()
        if depth > 2 or roll < 0.5:
            return rnd.choice([text(), rnd.randint(-10 ** 6, 10 ** 6), True, False, None,
                               2 ** 63 - 1, -(2 ** 63)])
        if roll < 0.75:
            return [value(depth + 1) for _ in range(rnd.randint(0, 4))]
        return {text(): value(depth + 1) for _ in range(rnd.randint(0, 4))}

    for _ in range(2000):
        tags = rnd.choice([{text(): value(0) for _ in range(rnd.randint(0, 6))},
                           [text() for _ in range(rnd.randint(0, 4))]])
        pii = {"inputs": {text(): rnd.randint(1, 9)}} if rnd.random() < 0.5 else None
        row = _row(tags=tags, pii=pii)
        assert ledger.content(row) == _reference(row), (tags, pii)


@pytest.mark.parametrize("tags", [
    {"cost": 3e-05, "b": "x"},                  # a float: json's path
    {"nested": [{"deep": 1.5e-7}]},             # a float far down: json's path
    {"big": 2 ** 70},                           # past 64 bits: orjson refuses, json writes it
    {"a": {"b": {"c": {"d": [[[[["deep"]]]]]}}}},
])
def test_tags_orjson_would_write_differently_take_json_s_path(tags: object) -> None:
    row = _row(tags=tags)
    assert ledger.content(row) == _reference(row)


def test_a_row_without_its_optional_fields_is_written_as_one_with_them_empty() -> None:
    """Rows read back from older exports lack ``pii`` and ``replay_status``: the content is
    that of the same row holding null there (the one-pass path needs every field)."""
    full = _row(cost_usd=0.25)
    short = {k: v for k, v in full.items() if k not in ("pii", "replay_status")}
    assert ledger.content(short) == ledger.content(full) == _reference(full)


@pytest.mark.parametrize("over", [
    {"started_at": 1_700_000_000}, {"cost_usd": 0}, {"recorded_at": 0.0}, {"pii": {}},
    {"tags": {}}, {"tags": {"k": "v"}}, {"ordinal": 2 ** 64}, {"cost_usd": 3e-05},
])
def test_rows_off_the_one_pass_path_are_written_as_json_writes_them(over: dict[str, object]
                                                                    ) -> None:
    row = _row(**over)
    assert ledger.content(row) == _reference(row)
