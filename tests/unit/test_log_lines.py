"""Reading a log back as the job printed it (titan/log_lines.py)."""

from __future__ import annotations

from titan import log_lines


def entry(seq: int, stream: str, line: str, continues: bool = False) -> dict[str, object]:
    e: dict[str, object] = {"seq": seq, "stream": stream, "line": line}
    if continues:
        e["continues"] = True
    return e


def test_pieces_join_within_their_stream_at_the_place_of_their_last() -> None:
    # stdout and stderr come from separate pipes: a stderr line stored between two pieces of
    # a stdout line is not part of it.
    log = [entry(1, "stdout", "before"), entry(2, "stdout", "{\"a\": ", True),
           entry(3, "stderr", "warn", True), entry(4, "stdout", "[1, ", True),
           entry(5, "stderr", "ing"), entry(6, "stdout", "2]}"), entry(7, "stdout", "after")]
    assert [(e["seq"], e["stream"], e["line"]) for e in log_lines.whole(log)] == [
        (1, "stdout", "before"), (5, "stderr", "warning"), (6, "stdout", '{"a": [1, 2]}'),
        (7, "stdout", "after")]
    assert all("continues" not in e for e in log_lines.whole(log))
    assert log_lines.text(log) == 'before\nwarning\n{"a": [1, 2]}\nafter'


def test_a_line_whose_end_never_came_is_given_as_far_as_it_goes() -> None:
    rejoin = log_lines.Rejoin()
    assert rejoin.feed(entry(1, "stdout", "half", True)) is None
    assert rejoin.feed(entry(2, "stdout", " more", True)) is None
    assert rejoin.rest() == [{"stream": "stdout", "line": "half more"}]
    assert rejoin.rest() == []
    assert log_lines.text([entry(1, "stdout", "ok"), entry(2, "stderr", "cut", True)]) == \
        "ok\ncut"
