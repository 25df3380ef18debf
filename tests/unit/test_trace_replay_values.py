"""What a replay hands back: recorded values as the call returned them (bytes as bytes)."""

from __future__ import annotations

import hashlib
import json

from titan.trace import canonical
from titan.trace.recorded import Recorded
from titan.trace.replay import Session


def _recorded(outputs: str | None, inputs: object = None, **kw: object) -> Recorded:
    return Recorded(1, "agent", "tool", "fetch", 0,
                    canonical.digest(canonical.dumps({} if inputs is None else inputs)),
                    outputs, kw.pop("outcome", "success"), **kw)  # type: ignore[arg-type]


def test_bytes_are_recorded_whole_and_come_back_as_bytes() -> None:
    page = b"<html>" + b"lorem ipsum " * 100 + b"</html>"
    text = canonical.dumps({"page": page, "small": b"\x00\xffabc", "n": [b"", 1]})
    # Small bytes are spelled as they always were: recorded runs keep their hashes.
    assert json.loads(canonical.dumps(b"ab")) == {"$bytes": "YWI="}
    assert len(text) > len(page)  # the content, not a hash of it
    back = canonical.revived(json.loads(text))
    assert back == {"page": page, "small": b"\x00\xffabc", "n": [b"", 1]}
    assert canonical.dumps(back) == text  # served, then recorded again: the same action
    # A dict that only looks like the marker stays a dict.
    assert canonical.revived({"$bytes": "not base64!"}) == {"$bytes": "not base64!"}
    assert canonical.revived({"$bytes": "YWI=", "x": 1}) == {"$bytes": "YWI=", "x": 1}


def test_a_served_call_returns_bytes() -> None:
    page = bytes(range(256)) * 4
    assert _recorded(canonical.dumps(page)).value() == page
    assert _recorded(canonical.dumps({"a": [b"ab"]})).value() == {"a": [b"ab"]}
    assert _recorded('{"x":1}').value() == {"x": 1}


def test_bytes_a_run_recorded_before_they_were_kept_are_told_apart() -> None:
    page = b"x" * 1000
    with canonical.bytes_as_before():
        legacy = canonical.dumps({"page": page})
        assert canonical.dumps(b"ab") == '{"$bytes":"YWI="}'  # small ones were kept
    assert json.loads(legacy) == {"page": {"$bytes_sha256": hashlib.sha256(page).hexdigest(),
                                           "size": 1000}}
    assert canonical.holds_lost_bytes(legacy)
    assert not canonical.holds_lost_bytes(canonical.dumps({"page": page}))
    # The marker's name as text, or as a key of another shape, is not lost bytes.
    assert not canonical.holds_lost_bytes(canonical.dumps({"s": '"$bytes_sha256":'}))
    assert not canonical.holds_lost_bytes('{"$bytes_sha256":"ab"}')
    assert not canonical.holds_lost_bytes(None)


def _session() -> Session:
    return Session({"of": "run-1", "mode": "lenient"})


def test_a_replay_refuses_bytes_it_cannot_give_back_and_says_why() -> None:
    with canonical.bytes_as_before():
        old = _recorded(canonical.dumps(b"y" * 500), {"url": "u"})
    d = _session()._recorded("agent", old, 0, {"url": "u"}, pure=False)
    assert (d.status, d.divergence) == ("refused", "bytes_not_kept")
    exc = _session().refusal(d, "tool", "fetch", "agent")
    assert "tool call 'fetch' #0 of agent" in str(exc)
    assert "recorded before Titan kept bytes" in str(exc)
    # Allowed to, it runs the call live instead.
    live = Session({"of": "run-1", "allow_live": True})._recorded("agent", old, 0,
                                                                  {"url": "u"}, pure=False)
    assert (live.status, live.divergence) == ("live", "bytes_not_kept")


def test_inputs_of_bytes_match_a_recording_that_hashed_them() -> None:
    data = b"z" * 300
    with canonical.bytes_as_before():
        old = _recorded('{"ok":true}', {"data": data})
    d = _session()._recorded("agent", old, 0, {"data": data}, pure=False)
    assert (d.status, d.divergence, d.outputs, d.legacy_bytes) == ("served", None,
                                                                   {"ok": True}, True)
    new = _recorded('{"ok":true}', {"data": data})
    d = _session()._recorded("agent", new, 0, {"data": data}, pure=False)
    assert (d.status, d.divergence, d.legacy_bytes) == ("served", None, False)
    other = _session()._recorded("agent", old, 0, {"data": b"q" * 300}, pure=False)
    assert other.divergence == "input_mismatch"


def test_iterables_that_list_their_items_are_recorded_as_lists() -> None:
    # By repr a replay handed back "dict_keys(['a.py', ...])": the agent iterated characters
    # and the replay reported a match (QA r08).
    import collections
    import types

    index = {"a.py": 10, "b.py": 20}
    value = {"keys": index.keys(), "values": index.values(), "items": index.items(),
             "deque": collections.deque(["hi", "there"], maxlen=5), "range": range(3),
             "view": types.MappingProxyType({"k": 1})}
    expected = {"keys": ["a.py", "b.py"], "values": [10, 20], "items": [["a.py", 10], ["b.py", 20]],
                "deque": ["hi", "there"], "range": [0, 1, 2], "view": {"k": 1}}
    for dump in (canonical.dumps, canonical.outputs):
        assert json.loads(dump(value)) == expected
    assert not canonical.holds_stand_in(canonical.outputs(value))
    assert _recorded(canonical.outputs(value)).value() == expected


def test_what_only_a_repr_stands_for_is_marked_in_outputs_and_never_consumed() -> None:
    def gen():  # noqa: ANN202
        yield from (1, 2)

    class Obj:
        pass

    g, m = gen(), map(str, [1, 2])
    text = canonical.outputs({"g": g, "m": m, "f": filter(None, [1]), "o": Obj(),
                              "huge": range(10**12)})
    found = json.loads(text)
    assert found["g"] == {"$repr": "<generator object test_what_only_a_repr_stands_for_is_"
                                   "marked_in_outputs_and_never_consumed.<locals>.gen>"}
    assert set(found["m"]) == {"$repr"} and found["m"]["$repr"].startswith("<map object")
    assert found["o"]["$repr"].endswith("Obj object>") and "0x" not in text
    assert found["huge"] == {"$repr": "range(0, 1000000000000)"}
    assert canonical.holds_stand_in(text)
    # What the caller holds is untouched: recording consumed nothing.
    assert list(g) == [1, 2] and list(m) == ["1", "2"]
    # Inputs are hashed, never served: spelled as they always were (recorded runs match).
    assert json.loads(canonical.dumps({"o": Obj()}))["o"].endswith("Obj object>")
    # The marker's name in text, or a dict of another shape, is no stand-in.
    assert not canonical.holds_stand_in(canonical.outputs({"s": '"$repr":"x"'}))
    assert not canonical.holds_stand_in('{"$repr":"x","y":1}')
    assert not canonical.holds_stand_in(None)


def test_a_replay_refuses_what_was_recorded_only_as_its_repr_and_says_why() -> None:
    rec = _recorded(canonical.outputs(map(str, [1])), {"url": "u"})
    d = _session()._recorded("agent", rec, 0, {"url": "u"}, pure=False)
    assert (d.status, d.divergence) == ("refused", "not_replayable")
    said = str(_session().refusal(d, "tool", "fetch", "agent"))
    assert "tool call 'fetch' #0 of agent" in said and "(<map object>)" in said
    assert canonical.NOT_REPLAYABLE_SAYS in said
    strict = Session({"of": "run-1"})._recorded("agent", rec, 0, {"url": "u"}, pure=False)
    assert (strict.status, strict.divergence) == ("stopped", "not_replayable")
    live = Session({"of": "run-1", "allow_live": True})._recorded("agent", rec, 0,
                                                                  {"url": "u"}, pure=False)
    assert (live.status, live.divergence) == ("live", "not_replayable")
    # A failed call's outputs rebuild its exception: raised again as recorded.
    failed = _recorded('{"$error":{"args":[{"$repr":"x"}]}}', {"url": "u"}, outcome="error")
    assert _session()._recorded("agent", failed, 0, {"url": "u"}, pure=False).status == "served"
