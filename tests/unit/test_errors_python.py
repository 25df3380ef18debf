"""Titan's errors as a Python user catches and ships them: each is also the builtin exception
its kind of failure is in Python (``except TimeoutError`` catches a wait that ran out), and
each survives pickling with its message and details (multiprocessing and concurrent.futures
send a worker's exception back to the parent pickled)."""

from __future__ import annotations

import copy
import errno
import inspect
import pickle
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from titan import errors

#: One instance of every exception class of titan.errors, with its attributes set: what
#: pickling must give back. A class added to errors.py must be added here (checked below).
SAMPLES: dict[type[BaseException], Callable[[], BaseException]] = {
    errors.TitanError: lambda: errors.TitanError("something went wrong"),
    errors.StageFailed: lambda: errors.StageFailed(
        "stage PLAN#1 FAILED before signalling", {"name": "PLAN", "status": "FAILED"}, "done"),
    errors.ConfigError: lambda: errors.ConfigError("no token"),
    errors.MasterAlreadyRunning: lambda: errors.MasterAlreadyRunning(
        41, "/w/.titan/titan.db", ", at http://127.0.0.1:9090"),
    errors.ConnectionFailed: lambda: errors.ConnectionFailed("master at http://h:1 away"),
    errors.ScriptNotFound: lambda: errors.ScriptNotFound("script 'a.py' for job 'a' not found"),
    errors.LocalFileError: lambda: errors.LocalFileError("cannot write", path="/x/y"),
    errors.LocalFileNotFound: lambda: errors.LocalFileNotFound(
        "artifact 'r.txt' not found", path="/w/r.txt"),
    errors.LocalPathIsFolder: lambda: errors.LocalPathIsFolder(
        "artifact 'out' is a folder, not a file", path="/w/out"),
    errors.FileChanged: lambda: errors.FileChanged("grew while uploaded", path="/w/f"),
    errors.DownloadCorrupt: lambda: errors.DownloadCorrupt("bad bytes", expected="aa", got="bb"),
    errors.ExecutorGone: lambda: errors.ExecutorGone("ray is gone"),
    errors.ReplayMiss: lambda: errors.ReplayMiss("not recorded", kind="missing"),
    errors.ReplayedError: lambda: errors.ReplayedError("boom", error_type="mylib.Boom"),
    errors.ReplayDiverged: lambda: errors.ReplayDiverged("diverged at 3", kind="input"),
    errors.LLMError: lambda: errors.LLMError("no completion"),
    errors.ModelUnavailable: lambda: errors.ModelUnavailable("not installed"),
    errors.ModelIntegrityError: lambda: errors.ModelIntegrityError("sha differs"),
    errors.ProviderError: lambda: errors.ProviderError(
        "rate limited", provider="gemini", status=429, retryable=True),
    errors.InvalidOutput: lambda: errors.InvalidOutput(
        "not the schema", text="{", problems=["(root): bad"]),
    errors.BudgetExceeded: lambda: errors.BudgetExceeded(
        "over budget", run_id="r1", budget_usd=1.0, cost_usd=1.5),
    errors.ToolCallFailed: lambda: errors.ToolCallFailed("search", "error", "no answer"),
    **{cls: (lambda cls=cls: cls(f"{cls.__name__} said", details={"job_id": 7, "why": ["x"]}))
       for cls in (errors.APIError, errors.ValidationFailed, errors.InvalidDAG,
                   errors.PipelineError, errors.AmbiguousRef, errors.Unauthorized,
                   errors.Forbidden, errors.NotFound, errors.Conflict, errors.StaleAttempt,
                   errors.WorkerNameTaken, errors.WrongKind, errors.PayloadTooLarge,
                   errors.WaitTimeout, errors.DatabaseUnavailable,
                   errors.StatementCancelled, errors.MasterStopping,
                   errors.BlobStoreUnavailable, errors.BlobStoreUnwritable,
                   errors.DatabaseCorrupt)},
    errors.NotLeader: lambda: errors.NotLeader("a standby", details={"leader": "http://m2:1"}),
}


def _classes() -> list[type[BaseException]]:
    return [c for _, c in inspect.getmembers(errors, inspect.isclass)
            if issubclass(c, BaseException) and c.__module__ == errors.__name__]


def _state(exc: BaseException) -> dict[str, Any]:
    """All an exception says: its type, message, args, attributes, and the OSError fields."""
    return {"type": type(exc), "str": str(exc), "args": exc.args, "vars": vars(exc),
            **({"errno": exc.errno, "strerror": exc.strerror, "filename": exc.filename}
               if isinstance(exc, OSError) else {})}


def test_every_error_class_has_a_sample() -> None:
    assert set(_classes()) == set(SAMPLES)


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda c: c.__name__)
def test_each_error_round_trips_through_pickle_and_copy(cls: type[BaseException]) -> None:
    exc = SAMPLES[cls]()
    assert type(exc) is cls
    exc.add_note("raised while testing")  # notes travel too (they live in __dict__)
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(exc, protocol))
        assert _state(back) == _state(exc), protocol
    assert _state(copy.deepcopy(exc)) == _state(exc)
    assert _state(copy.copy(exc)) == _state(exc)


def test_a_default_message_survives_pickling() -> None:
    exc = errors.WaitTimeout()
    back = pickle.loads(pickle.dumps(exc))
    assert str(back) == str(exc) == "Timed out waiting."
    assert back.status == 408 and back.code == "wait_timeout" and back.details == {}


def _fail(kind: str) -> None:
    raise SAMPLES[getattr(errors, kind)]()


def test_errors_raised_in_a_process_pool_reach_the_caller_whole() -> None:
    # concurrent.futures pickles the worker's exception; one that could not be rebuilt
    # reached the caller as a TypeError about __init__'s arguments instead.
    kinds = ["StageFailed", "ToolCallFailed", "WaitTimeout", "LocalFileNotFound", "NotFound"]
    with ProcessPoolExecutor(max_workers=1) as pool:
        futures = {kind: pool.submit(_fail, kind) for kind in kinds}
        for kind, future in futures.items():
            exc = future.exception(timeout=60)
            assert exc is not None
            assert _state(exc) == _state(SAMPLES[getattr(errors, kind)]()), kind


# ---------------------------------------------------------------------- the builtin bases

#: What a Python user writes in ``except`` for each kind of Titan error (docs/sdk.md).
BUILTIN: list[tuple[type[BaseException], type[BaseException]]] = [
    (errors.WaitTimeout, TimeoutError),
    (errors.NotFound, LookupError),
    (errors.ValidationFailed, ValueError),
    (errors.InvalidDAG, ValueError),
    (errors.PipelineError, ValueError),
    (errors.AmbiguousRef, ValueError),
    (errors.ConnectionFailed, ConnectionError),
    (errors.ScriptNotFound, FileNotFoundError),
    (errors.LocalFileNotFound, FileNotFoundError),
    (errors.LocalPathIsFolder, IsADirectoryError),
]


@pytest.mark.parametrize(("cls", "builtin"), BUILTIN, ids=lambda c: c.__name__)
def test_each_error_is_also_the_builtin_python_raises_for_its_kind(
        cls: type[BaseException], builtin: type[BaseException]) -> None:
    exc = SAMPLES[cls]()
    assert isinstance(exc, errors.TitanError)  # Titan's hierarchy stays the first base
    assert cls.__mro__.index(errors.TitanError) < cls.__mro__.index(builtin)
    with pytest.raises(builtin):
        raise exc
    # The message is the message, not OSError's "[Errno None] ..." nor KeyError's quoting.
    assert str(exc) == exc.args[0]


def test_no_other_builtin_base_was_added() -> None:
    # NotFound is no KeyError (its str() would be quoted, and `except KeyError` around a
    # dict lookup would swallow a missing job); the rest keep their single base.
    assert not issubclass(errors.NotFound, KeyError)
    plain = [errors.Unauthorized, errors.Forbidden, errors.Conflict, errors.PayloadTooLarge,
             errors.LocalFileError, errors.FileChanged, errors.DownloadCorrupt,
             errors.ConfigError, errors.StageFailed]
    for cls in plain:
        assert not issubclass(cls, OSError | ValueError | LookupError), cls


def test_errors_rebuilt_from_the_masters_answer_keep_their_builtin_base() -> None:
    body = {"error": {"code": "wait_timeout", "message": "store key 'k' was not set within 1s",
                      "details": {"key": "k"}}}
    with pytest.raises(TimeoutError) as info:
        raise errors.from_response(408, body)
    assert isinstance(info.value, errors.WaitTimeout) and info.value.details == {"key": "k"}
    assert str(info.value) == "store key 'k' was not set within 1s"
    assert isinstance(errors.from_response(404, {"error": {"code": "not_found",
                                                             "message": "no job 'x'"}}),
                      LookupError)
    assert isinstance(errors.from_response(400, {"error": {"code": "invalid_dag",
                                                             "message": "a cycle"}}),
                      ValueError)


def test_a_folder_given_for_a_file_is_an_is_a_directory_error_naming_it() -> None:
    exc = errors.LocalPathIsFolder("artifact 'out' is a folder, not a file (/w/out)",
                                   path="/w/out")
    assert isinstance(exc, IsADirectoryError) and exc.errno == errno.EISDIR
    assert exc.filename == exc.path == "/w/out"
    assert str(exc) == "artifact 'out' is a folder, not a file (/w/out)"
    # Raised as a ScriptNotFound (a FileNotFoundError) before: those clauses still catch it.
    assert isinstance(exc, errors.ScriptNotFound) and isinstance(exc, FileNotFoundError)


def test_a_missing_local_file_is_a_file_not_found_error_naming_it() -> None:
    exc = errors.LocalFileNotFound("artifact 'r.txt' not found (looked at /w/r.txt)",
                                   path="/w/r.txt")
    assert exc.errno == errno.ENOENT and exc.filename == exc.path == "/w/r.txt"
    assert str(exc) == "artifact 'r.txt' not found (looked at /w/r.txt)"
    # What code written against the SDK before caught still catches it.
    assert isinstance(exc, errors.ScriptNotFound) and isinstance(exc, errors.LocalFileError)
