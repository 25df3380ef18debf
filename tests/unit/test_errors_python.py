"""Titan's errors as a Python user ships them: each survives pickling with its message and
details (multiprocessing and concurrent.futures send a worker's exception back to the parent
pickled)."""

from __future__ import annotations

import copy
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
    errors.ConnectionFailed: lambda: errors.ConnectionFailed("master at http://h:1 away"),
    errors.ScriptNotFound: lambda: errors.ScriptNotFound("script 'a.py' for job 'a' not found"),
    errors.LocalFileError: lambda: errors.LocalFileError("cannot write", path="/x/y"),
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
    kinds = ["StageFailed", "ToolCallFailed", "WaitTimeout", "NotFound"]
    with ProcessPoolExecutor(max_workers=1) as pool:
        futures = {kind: pool.submit(_fail, kind) for kind in kinds}
        for kind, future in futures.items():
            exc = future.exception(timeout=60)
            assert exc is not None
            assert _state(exc) == _state(SAMPLES[getattr(errors, kind)]()), kind
