"""A recorded exception rebuilt for a replay: its own class (by module, not just by name),
its arguments and its attributes."""

from __future__ import annotations

import errno
import http.client
import io
import sys
import types
import urllib.error
from dataclasses import dataclass
from pathlib import Path

import pytest

from titan import errors
from titan.trace import canonical
from titan.trace.replayed_errors import payload, replayed_error


@dataclass(frozen=True)
class _Rec:
    error_type: str | None
    error_message: str | None
    outputs: str | None


def _round_trip(exc: BaseException) -> BaseException:
    """Recorded as emit records it (canonical JSON), then raised again."""
    return replayed_error(_Rec(type(exc).__name__, str(exc), canonical.dumps(payload(exc))))


class RateLimited(Exception):
    def __init__(self, retry_after: float, msg: str = "rate limited") -> None:
        super().__init__(msg)
        self.retry_after = retry_after


class NeedsTwo(Exception):
    def __init__(self, status: int, body: dict) -> None:
        super().__init__(f"{status}")
        self.status, self.body = status, body


def test_an_exception_keeps_the_data_its_constructor_set() -> None:
    back = _round_trip(RateLimited(2.5))
    assert type(back) is RateLimited and back.retry_after == 2.5  # was "rate limited"
    assert str(back) == "rate limited"
    two = _round_trip(NeedsTwo(503, {"why": "busy"}))
    assert type(two) is NeedsTwo and (two.status, two.body, str(two)) == (503, {"why": "busy"},
                                                                         "503")
    key = _round_trip(KeyError("x"))
    assert type(key) is KeyError and key.args == ("x",)
    os_error = _round_trip(ConnectionRefusedError(111, "refused"))
    assert type(os_error) is ConnectionRefusedError and os_error.errno == 111


def test_an_os_error_comes_back_with_its_file_and_errno(tmp_path: Path) -> None:
    # Its filename is in neither its args nor its __dict__: a replayed open() of a missing
    # file said "[Errno 2] No such file or directory", without the file's name.
    missing = tmp_path / "missing.txt"
    try:
        open(missing)  # noqa: SIM115 - the error is what is tested
    except FileNotFoundError as exc:
        original = exc
    back = _round_trip(original)
    assert type(back) is FileNotFoundError and str(back) == str(original)
    assert (back.errno, back.strerror, back.filename) == (errno.ENOENT, original.strerror,
                                                          str(missing))
    moved = _round_trip(OSError(errno.EXDEV, "Invalid cross-device link", "a", None, "b"))
    assert (moved.filename, moved.filename2) == ("a", "b")
    titan = _round_trip(errors.LocalFileNotFound("artifact 'r' not found", path="/w/r"))
    assert type(titan) is errors.LocalFileNotFound
    assert (titan.filename, titan.path, titan.errno) == ("/w/r", "/w/r", errno.ENOENT)
    folder = _round_trip(errors.LocalPathIsFolder("'out' is a folder", path="/w/out"))
    assert isinstance(folder, IsADirectoryError) and folder.filename == "/w/out"


def test_http_error_is_caught_as_itself_with_its_code_and_headers() -> None:
    headers = http.client.parse_headers(io.BytesIO(b"Retry-After: 3\r\nX-Id: 7\r\n\r\n"))
    original = urllib.error.HTTPError("http://x/y", 429, "Too Many Requests", headers,
                                      io.BytesIO(b"body"))
    saved = payload(original)["$error"]
    assert (saved["module"], saved["class"]) == ("urllib.error", "HTTPError")
    assert saved["attrs"]["code"] == 429 and "Retry-After: 3" in saved["attrs"]["hdrs"]
    assert "fp" not in saved["attrs"]  # a file: not data JSON holds
    back = _round_trip(original)
    assert type(back) is urllib.error.HTTPError
    assert (back.code, back.reason, back.url, str(back)) == (
        429, "Too Many Requests", "http://x/y", "HTTP Error 429: Too Many Requests")
    assert back.headers.get("Retry-After") == "3"
    assert back.read() == b""  # a response still, its body not recorded
    plain = _round_trip(urllib.error.HTTPError("http://x/y", 404, "Not Found", None, None))
    assert type(plain) is urllib.error.HTTPError and plain.code == 404


def test_the_class_is_found_by_its_module_when_several_share_its_name(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx.HTTPError beside urllib.error.HTTPError: by name alone the replay gave up.
    other = types.ModuleType("other_http")
    other.HTTPError = type("HTTPError", (Exception,), {"__module__": "other_http"})  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "other_http", other)
    back = _round_trip(urllib.error.HTTPError("u", 500, "Oops", None, None))
    assert type(back) is urllib.error.HTTPError
    theirs = _round_trip(other.HTTPError("boom"))  # type: ignore[attr-defined]
    assert type(theirs) is other.HTTPError  # type: ignore[attr-defined]


def test_a_run_recorded_before_classes_were_qualified_is_found_by_name() -> None:
    old = replayed_error(_Rec("RateLimited", "rate limited", None))
    assert type(old) is RateLimited or isinstance(old, errors.ReplayedError)
    assert type(replayed_error(_Rec("ValueError", "bad", None))) is ValueError
    unknown = replayed_error(_Rec("NoSuchError", "x", None))
    assert isinstance(unknown, errors.ReplayedError) and "NoSuchError: x" in str(unknown)
    # A class defined inside a function cannot be found again: the name is all there is.
    local = type("Local", (Exception,), {})
    assert isinstance(_round_trip(local("y")), errors.ReplayedError)


def test_what_is_recorded_is_plain_json_and_never_fails() -> None:
    class Odd(Exception):
        def __init__(self) -> None:
            super().__init__(object())
            self.stream = io.BytesIO()
            self.ok = True
            self._private = 1

    saved = payload(Odd())["$error"]
    assert "args" not in saved and saved["attrs"] == {"ok": True}


class ApiError(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status, body)
        self.status, self.body = status, body


def test_bytes_an_exception_carries_come_back_as_bytes() -> None:
    # A failed command's stderr, an HTTP error's body: dropped, the replay's
    # `e.stderr.decode()` raised AttributeError in the agent's except clause (QA r07).
    import subprocess

    code = "import sys; sys.stdout.write('out'); sys.stderr.write('E   assert 1 == 2\\n'); sys.exit(3)"
    with pytest.raises(subprocess.CalledProcessError) as caught:
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    saved = payload(caught.value)["$error"]
    assert saved["attrs"]["stderr"] == {"$bytes": "RSAgIGFzc2VydCAxID09IDIK"}
    back = _round_trip(caught.value)
    assert type(back) is subprocess.CalledProcessError
    assert (back.returncode, back.cmd, back.stdout, back.stderr.decode()) == (
        3, [sys.executable, "-c", code], b"out", "E   assert 1 == 2\n")
    assert str(back) == str(caught.value)
    api = _round_trip(ApiError(502, b"\x00<html>bad gateway"))
    assert type(api) is ApiError and api.args == (502, b"\x00<html>bad gateway")
    assert (api.status, api.body) == (502, b"\x00<html>bad gateway")
    assert _round_trip(ValueError(b"raw")).args == (b"raw",)
    # Past the bound, the attribute is left out (as long text is), the rest kept.
    big = _round_trip(ApiError(500, b"x" * 100_001))
    assert type(big) is ApiError and big.status == 500
