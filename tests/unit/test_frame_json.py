"""The worker channel's JSON: orjson's speed, and the stdlib's reach where orjson refuses."""

from __future__ import annotations

import json

import pytest

from titan import frame_json


def test_plain_frames_are_compact_utf8_and_round_trip() -> None:
    frame = {"t": "report", "id": 1, "lines": ["héllo 🎉"], "n": 2.5, "ok": True, "x": None}
    text = frame_json.dumps(frame)
    assert text == json.dumps(frame, separators=(",", ":"), ensure_ascii=False)
    assert frame_json.loads(text) == frame
    assert frame_json.loads(text.encode()) == frame


def test_a_lone_surrogate_is_escaped_and_comes_back() -> None:
    frame = {"line": "bad name \udcff.txt"}
    text = frame_json.dumps(frame)
    assert "\\udcff" in text and text.isascii()
    text.encode()  # a text frame must be UTF-8
    assert frame_json.loads(text) == frame


def test_integers_past_64_bits_go_through_the_stdlib() -> None:
    frame = {"big": 2**70, "small": -(2**70)}
    assert frame_json.loads(frame_json.dumps(frame)) == frame


def test_bad_frames_raise_what_json_raises() -> None:
    with pytest.raises(ValueError):
        frame_json.loads("{not json")
    with pytest.raises(RecursionError):
        frame_json.loads("[" * 100_000 + "]" * 100_000)
