"""One-time sign-in codes (``titan dashboard --open``): once each, for a minute, bounded."""

from __future__ import annotations

from titan.master.auth import sign_in_codes
from titan.master.auth.sign_in_codes import CODE_SECONDS, SignInCodes


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_code_signs_in_once_as_its_token() -> None:
    codes = SignInCodes()
    code = codes.issue("tok-a")
    other = codes.issue("tok-b")
    assert code.startswith("sc_") and len(code) > 30 and code != other
    assert codes.redeem(code) == "tok-a"
    assert codes.redeem(code) is None  # used
    assert codes.redeem(other) == "tok-b"
    assert codes.redeem("sc_made-up") is None and codes.redeem("") is None
    assert codes.redeem("\udcff") is None  # what a query string may decode to: no error


def test_a_code_past_its_minute_is_worth_nothing() -> None:
    clock = Clock()
    codes = SignInCodes(clock)
    late = codes.issue("tok-a")
    on_time = codes.issue("tok-a")
    clock.now += CODE_SECONDS - 1
    assert codes.redeem(on_time) == "tok-a"
    clock.now += 2
    assert codes.redeem(late) is None


def test_making_many_keeps_the_newest_and_drops_the_expired(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sign_in_codes, "MAX_CODES", 3)
    clock = Clock()
    codes = SignInCodes(clock)
    made = [codes.issue(f"tok-{i}") for i in range(5)]
    assert [codes.redeem(c) for c in made] == [None, None, "tok-2", "tok-3", "tok-4"]
    stale = codes.issue("tok-old")
    clock.now += CODE_SECONDS + 1
    codes.issue("tok-new")  # the expired ones go as new ones come
    assert len(codes._codes) == 1 and codes.redeem(stale) is None
