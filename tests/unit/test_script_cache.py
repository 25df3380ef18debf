"""The zygote's compiled scripts (titan.worker.script_cache): what it keeps, and what never."""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from titan.worker import script_cache


@pytest.fixture(autouse=True)
def empty() -> Iterator[None]:
    script_cache.clear()
    yield
    script_cache.clear()
    gc.unfreeze()  # remember() froze this process's heap, as it does the zygote's


def _blob(folder: Path, code: bytes) -> Path:
    blob = folder / hashlib.sha256(code).hexdigest()
    blob.write_bytes(code)
    return blob


def _request(blob: Path, script: str) -> dict[str, object]:
    return {"source": str(blob), "script": script}


def test_a_blob_is_compiled_once_under_its_scripts_own_path(tmp_path: Path) -> None:
    blob = _blob(tmp_path, b"x = 41 + 1\n")
    assert script_cache.lookup(_request(blob, "/w/a.py")) is None
    assert script_cache.take(_request(blob, "/w/a.py")) == (None, True)
    assert script_cache.remember(_request(blob, "/w/a.py"))
    held, wanted = script_cache.take(_request(blob, "/w/a.py"))
    assert held is not None and held[0] == b"x = 41 + 1\n" and not wanted  # nothing to queue
    assert script_cache.take(_request(blob, "a.py")) == (None, False)  # never cached
    source, code = script_cache.lookup(_request(blob, "/w/./a.py")) or (None, None)
    assert source == b"x = 41 + 1\n" and code is not None and code.co_filename == "/w/a.py"
    space: dict[str, object] = {}
    exec(code, space)
    assert space["x"] == 42
    # The same blob materialized at another path is another code object (its __file__,
    # its tracebacks), compiled when a job runs it there.
    assert script_cache.lookup(_request(blob, "/w/b.py")) is None
    assert script_cache.remember(_request(blob, "/w/b.py"))
    assert script_cache.lookup(_request(blob, "/w/b.py"))[1].co_filename == "/w/b.py"  # type: ignore[index]


@pytest.mark.parametrize("case", ["renamed", "edited", "not-a-hash", "relative", "no-source",
                                  "syntax", "warns", "missing"])
def test_what_is_never_kept(tmp_path: Path, case: str) -> None:
    code = b'x = "\\d"\n' if case == "warns" else b"def (\n" if case == "syntax" else b"x = 1\n"
    blob = _blob(tmp_path, code)
    script: str = "/w/a.py"
    source: str | None = str(blob)
    if case == "renamed":  # a file named by another content's hash
        source = str(blob.rename(tmp_path / hashlib.sha256(b"other").hexdigest()))
    elif case == "edited":  # the right name, content changed since
        blob.write_bytes(b"x = 2\n")
    elif case == "not-a-hash":
        source = str(blob.rename(tmp_path / "main.py"))
    elif case == "relative":  # it would name another file from another working directory
        script = "a.py"
    elif case == "no-source":
        source = None
    elif case == "missing":
        blob.unlink()
    request = {"source": source, "script": script}
    if case in ("not-a-hash", "relative", "no-source"):  # never queued for the zygote either
        assert script_cache.take(request) == (None, False)
    assert not script_cache.remember(request)
    assert script_cache.lookup(request) is None


def test_the_least_recently_used_go_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(script_cache, "MAX_SCRIPTS", 2)
    blobs = [_blob(tmp_path, f"x = {i}\n".encode()) for i in range(3)]
    first, second, third = (_request(b, f"/w/{i}.py") for i, b in enumerate(blobs))
    assert script_cache.remember(first) and script_cache.remember(second)
    assert script_cache.remember(first)  # used again: the second is now the oldest
    assert script_cache.remember(third)
    assert script_cache.lookup(first) and script_cache.lookup(third)
    assert script_cache.lookup(second) is None
    # A job forked with its script held uses it too (take, in the zygote before the fork).
    assert script_cache.take(first)[0] is not None  # third is the oldest now
    assert script_cache.remember(blobs_request(tmp_path))
    assert script_cache.lookup(first) and script_cache.lookup(third) is None


def blobs_request(folder: Path) -> dict[str, object]:
    return _request(_blob(folder, b"x = 'fourth'\n"), "/w/fourth.py")


def test_source_held_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(script_cache, "MAX_BYTES", 30)
    monkeypatch.setattr(script_cache, "MAX_SCRIPT_BYTES", 20)
    big = _blob(tmp_path, b"x = '" + b"a" * 30 + b"'\n")
    assert not script_cache.remember(_request(big, "/w/big.py"))  # over the per-script cap
    small = [_blob(tmp_path, f"y = '{i:08d}'\n".encode()) for i in range(3)]  # 15 bytes each
    for i, blob in enumerate(small):
        assert script_cache.remember(_request(blob, f"/w/{i}.py"))
    held = [script_cache.lookup(_request(b, f"/w/{i}.py")) is not None
            for i, b in enumerate(small)]
    assert held == [False, True, True]
