"""Titan's one exception hierarchy.

Every error Titan raises on purpose derives from :class:`TitanError`. API-facing errors carry
the HTTP status and a stable machine-readable ``code``; the master renders them as
``{"error": {"code", "message", "details"}}`` and the SDK turns such a body back into the same
class, so user code catches the same exception whether it runs next to the master or across
the network::

    TitanError
    ├── ConfigError              bad settings, missing token, unreadable data dir
    ├── ConnectionFailed         the master could not be reached
    ├── ScriptNotFound           a job's script is not on the submitter's disk
    ├── LocalFileError           a file on this machine could not be read or written as asked
    │   ├── LocalFileNotFound    a file to upload or publish is not there (a ScriptNotFound too)
    │   ├── LocalPathIsFolder    a folder was given where a file is read (an IsADirectoryError)
    │   └── FileChanged          a file changed while it was being uploaded: nothing was stored
    ├── DownloadCorrupt          the bytes downloaded are not those the master stored (sha256)
    ├── ExecutorGone             a worker's executor can run no more jobs (its Ray cluster died)
    ├── ReplayMiss               a replayed call is not in the recording and may not run live
    ├── ReplayedError            a recorded call failed; its replay fails the same way
    ├── LLMError                 titan.llm could not produce a usable completion
    │   ├── ModelUnavailable     the model is not installed or not known (says how to get it)
    │   ├── ModelIntegrityError  the local model's bytes are not the pinned ones: refused
    │   ├── ProviderError        a hosted provider failed (auth, rate limit, outage ...)
    │   └── InvalidOutput        the output did not match json_schema, even after one repair
    └── APIError                 anything the master answered with a 4xx
        ├── ValidationFailed     400/422: a request that can never succeed as sent
        │   ├── InvalidDAG       cycle, unknown parent, duplicate job id ...
        │   └── PipelineError    bad YAML, unknown field (names the line)
        ├── Unauthorized         401: no token or an unknown one
        ├── Forbidden            403: the token's role may not do this
        ├── NotFound             404: no such job, DAG, file, worker ...
        ├── Conflict             409: the state changed under you
        │   ├── StaleAttempt     a result or write from an attempt that no longer owns the job
        │   ├── WorkerNameTaken  a worker's --name is a live worker's: the second is refused
        │   └── WrongKind        a store key holds a set where a value was meant, or the reverse
        ├── PayloadTooLarge      413: a value or upload over the documented limit
        ├── WaitTimeout          408: wait()/store_wait() gave up before the thing happened
        ├── NotLeader            503: a standby; the leader answers
        ├── DatabaseUnavailable  503: the database is away for now; ask again shortly
        ├── StatementCancelled   503: the database cancelled the statement (its
        │                        statement_timeout or lock_timeout): nothing was applied
        ├── MasterStopping       503: the master is stopping; the next one answers
        ├── BlobStoreUnavailable 503: the blob store cannot be reached (an object store down,
        │                        throttling or refusing the credentials, a mount gone): ask
        │                        again shortly
        ├── BlobStoreUnwritable  507: the blob store's disk is full, read-only or not the
        │                        master's to write: nothing was stored; an operator must act
        └── DatabaseCorrupt      500: the database's file is damaged; restore it from a backup

A few are also the builtin exception Python raises for the same kind of failure, second to
Titan's base, so the ``except`` a Python user writes catches them (docs/sdk.md, Errors):
``WaitTimeout`` is a ``TimeoutError`` (as asyncio's, a socket's and a future's are),
``NotFound`` a ``LookupError`` (no ``KeyError``: its ``str()`` quotes the message),
``ValidationFailed`` a ``ValueError``, ``ConnectionFailed`` a ``ConnectionError``,
``ScriptNotFound`` (and ``LocalFileNotFound``) a ``FileNotFoundError``, ``LocalPathIsFolder``
an ``IsADirectoryError`` too. ``TimeoutError``, ``ConnectionError`` and
``FileNotFoundError`` are ``OSError`` subclasses: none of Titan's own ``except OSError`` (or
``TimeoutError``, ``ValueError``) clauses may enclose a call that raises these, or it takes
a wait that ran out for a socket's timeout (the wire's clauses turn a socket's
``OSError`` into a network failure, which is retried).

A docstring is the default message. Every error pickles and copies whole, message and
attributes (:meth:`TitanError.__reduce__`). Besides the 5xx above, said on purpose and named
by their code, a 5xx (``internal_error``) is a bug.

Outside the tree, on purpose: :class:`ReplayDiverged` (a ``BaseException``) stops a strict
replay at its first divergence, and agent code's ``except Exception`` must not swallow it.
"""

from __future__ import annotations

import errno
import os
from typing import Any


class TitanError(Exception):
    """Something went wrong in Titan."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    # The message, for the errors that are also OSErrors (ConnectionFailed, ScriptNotFound,
    # WaitTimeout) as for the others: OSError's own str() is "[Errno 2] No such file or
    # directory: 'x'" once errno and filename are set (LocalFileNotFound sets them).
    __str__ = Exception.__str__

    # Pickled as what it is, not as a call of its class: BaseException's own way calls
    # ``cls(*args)``, which fails for an __init__ taking more than the message (StageFailed,
    # ToolCallFailed: multiprocessing and concurrent.futures, which send a worker's exception
    # back pickled, broke the pool instead) and loses what OSError keeps outside __dict__.
    def __reduce__(self) -> tuple[Any, ...]:
        fields = (self.errno, self.strerror, self.filename) if isinstance(self, OSError) \
            else None
        return _rebuilt, (type(self), self.args, dict(self.__dict__), fields)


def _rebuilt(cls: type[TitanError], args: tuple[Any, ...], state: dict[str, Any],
             fields: tuple[Any, Any, Any] | None) -> TitanError:
    """A Titan error as :meth:`TitanError.__reduce__` pickled it (its __init__ not called)."""
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    if fields is not None and isinstance(exc, OSError):
        exc.errno, exc.strerror, exc.filename = fields
    return exc


class StageFailed(TitanError):
    """A stage this client submitted ended without completing while a signal it was to write
    was awaited (``wait_for_signal``): the signal will not come. ``dag`` is the stage's DAG
    object, ``key`` the signal waited for."""

    def __init__(self, message: str, dag: dict[str, Any], key: str) -> None:
        super().__init__(message)
        self.dag, self.key = dag, key


class ConfigError(TitanError):
    """Titan is not configured correctly."""


class MasterAlreadyRunning(ConfigError):
    """Another Titan master holds the database (SQLite's lock file): ``pid`` is that master's
    process (None when the lock file does not say), ``database`` the file, ``address`` where
    that master answers, when known (", at http://..."), ``data_dir`` the data dir as the
    user gave it, when known (the way to stop it is then ``titan down``)."""

    def __init__(self, pid: int | None, database: str, address: str = "",
                 data_dir: str | None = None) -> None:
        self.pid, self.database, self.address = pid, database, address
        if data_dir is not None:
            down = "titan down" + ("" if data_dir in (".titan", "./.titan")
                                   else f" --data-dir {data_dir}")
            stop = f"Ctrl-C where it runs, or `{down}`"
        else:
            stop = "Ctrl-C where it runs" + (f", or `kill {pid}`" if pid is not None else "")
        super().__init__(
            f"another Titan master is already running (pid {pid or 'unknown'}) on "
            f"{database}{address}: {'use that one, or ' if address else ''}stop it first "
            f"({stop}), or give this one another --data-dir")


class ConnectionFailed(TitanError, ConnectionError):
    """Could not reach the Titan master."""


class ScriptNotFound(TitanError, FileNotFoundError):
    """A job's script could not be found on this machine."""


class LocalFileError(TitanError):
    """A file on this machine could not be read or written as asked. ``path`` names it."""

    def __init__(self, message: str | None = None, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class LocalFileNotFound(LocalFileError, ScriptNotFound):
    """A file this machine was to read (to upload, to publish as an artifact) is not there.
    A ``FileNotFoundError`` as Python's own: ``filename`` (and ``path``) names it, ``errno``
    is ``ENOENT``. Also a :class:`ScriptNotFound`, which it was raised as before."""

    def __init__(self, message: str | None = None, *, path: str | None = None) -> None:
        super().__init__(message, path=path)
        self.errno, self.strerror = errno.ENOENT, os.strerror(errno.ENOENT)
        self.filename = path


class LocalPathIsFolder(LocalFileError, ScriptNotFound, IsADirectoryError):
    """A folder was given where a file is read (to upload, to publish as an artifact). An
    ``IsADirectoryError`` as Python's own ``open`` raises (``filename``, ``errno``
    ``EISDIR``); also a :class:`ScriptNotFound`, which it was raised as before."""

    def __init__(self, message: str | None = None, *, path: str | None = None) -> None:
        super().__init__(message, path=path)
        self.errno, self.strerror = errno.EISDIR, os.strerror(errno.EISDIR)
        self.filename = path


class FileChanged(LocalFileError):
    """A file changed while it was being uploaded (written to, grown, shrunk): the upload was
    broken off before its end, so the master stored and published nothing. Upload it again
    once it is complete."""


class DownloadCorrupt(TitanError):
    """The bytes downloaded are not those the master stored: their sha256 differs from the
    one the master sent with them. Nothing was written. ``expected`` and ``got`` are the two
    digests."""

    def __init__(self, message: str | None = None, *, expected: str = "",
                 got: str = "") -> None:
        super().__init__(message)
        self.expected, self.got = expected, got


class ExecutorGone(TitanError):
    """The worker's executor can run no more jobs: the Ray cluster it drives is gone. The
    worker hands its jobs back (they spend no retry) and stops."""


class ReplayMiss(TitanError):
    """A replayed call is not in the recording, and live calls are not allowed (--allow-live)."""

    def __init__(self, message: str | None = None, *, kind: str = "extra") -> None:
        super().__init__(message)
        self.kind = kind


class ReplayedError(TitanError):
    """The recorded call failed; replaying it fails the same way (the original exception's
    type is not one Titan can rebuild: ``error_type`` names it)."""

    def __init__(self, message: str | None = None, *, error_type: str | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type


# A BaseException, like KeyboardInterrupt: a strict replay must stop at its first divergence
# even in agent code that catches every Exception to retry or carry on.
class ReplayDiverged(BaseException):
    """A strict replay departed from the recording; it stops here."""

    def __init__(self, message: str | None = None, *, kind: str = "extra") -> None:
        super().__init__(message or (self.__doc__ or "").strip())
        self.kind = kind


class LLMError(TitanError):
    """The language model call failed."""


class ModelUnavailable(LLMError):
    """The requested model is not available on this machine."""


class ModelIntegrityError(LLMError):
    """The local model file does not have the expected SHA-256; it was not loaded."""


class ProviderError(LLMError):
    """The hosted LLM provider refused or failed the request."""

    def __init__(self, message: str | None = None, *, provider: str = "",
                 status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.retryable = retryable


class InvalidOutput(LLMError):
    """The model's output did not match the requested JSON schema."""

    def __init__(self, message: str | None = None, *, text: str = "",
                 problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.text = text
        self.problems = problems or []


class BudgetExceeded(LLMError):
    """The agent run is over its USD budget: further LLM calls are blocked until an operator
    raises it (``titan runs budget RUN USD``). Catch it to wind the agent down cleanly."""

    def __init__(self, message: str | None = None, *, run_id: str = "",
                 budget_usd: float | None = None, cost_usd: float | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.budget_usd = budget_usd
        self.cost_usd = cost_usd


class ToolCallFailed(TitanError):
    """A tool called through Titan's tool proxy failed: the simulator could not answer
    (``source == "error"``) or the passthrough hop to the real endpoint failed
    (``"transport_error"``)."""

    def __init__(self, tool: str, source: str, message: str) -> None:
        super().__init__(f"tool {tool!r} failed ({source}): {message}")
        self.tool = tool
        self.source = source


class APIError(TitanError):
    """The Titan master refused the request."""

    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = str(self)
        self.details: dict[str, Any] = details or {}
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class ValidationFailed(APIError, ValueError):
    """The request is not valid."""

    status = 400
    code = "invalid_request"


class InvalidDAG(ValidationFailed):
    """The DAG is not valid; nothing was stored."""

    code = "invalid_dag"


class PipelineError(ValidationFailed):
    """The pipeline file is not valid."""

    code = "invalid_pipeline"


class AmbiguousRef(ValidationFailed):
    """A reference of digits is one job's (or DAG's) numeric id and another's name; the
    message gives the reference of each, which names it alone."""

    code = "ambiguous_ref"


class Unauthorized(APIError):
    """A valid token is required (Authorization: Bearer <token>). ``no_token_for``: the
    master's URL when the request carried no token at all (none was given or found), and
    ``refused`` the master's own words, for a caller to say how to give one in its terms
    (the CLI names ``--token``, not ``token=``)."""

    status = 401
    code = "unauthorized"
    no_token_for: str | None = None
    refused: str = ""


class Forbidden(APIError):
    """This token's role is not allowed to do that."""

    status = 403
    code = "forbidden"


class NotFound(APIError, LookupError):
    """No such object."""

    status = 404
    code = "not_found"


class Conflict(APIError):
    """The object is not in a state that allows this."""

    status = 409
    code = "conflict"


class StaleAttempt(Conflict):
    """This attempt no longer owns the job (its lease expired or it was cancelled)."""

    code = "stale_attempt"


class WorkerNameTaken(Conflict):
    """A live worker already goes by this name: stop it, or pick another --name."""

    code = "worker_name_taken"


class WrongKind(Conflict):
    """A store key holds the other kind of thing: a set where a value (a string, a counter,
    an artifact's file name) was read or written, or a value where a set was. Nothing was
    changed. ``details``: ``key``, and ``holds`` (``"value"`` or ``"set"``); delete the key
    (``store_delete``) to store the other kind under it."""

    code = "wrong_kind"


class PayloadTooLarge(APIError):
    """The payload is larger than the configured limit."""

    status = 413
    code = "payload_too_large"


class WaitTimeout(APIError, TimeoutError):
    """Timed out waiting."""

    status = 408
    code = "wait_timeout"


class NotLeader(APIError):
    """This master is a standby: another master leads (``details["leader"]`` says which, when
    known). Nothing was applied, so any request may be sent again to the leader."""

    status = 503
    code = "not_leader"

    @property
    def leader(self) -> str | None:
        leader = self.details.get("leader")
        return leader if isinstance(leader, str) and leader else None


def unstorable(said: str, field: str | None = None) -> ValidationFailed:
    """The database's refusal of a value in a request (a NUL byte in a text, a string past
    its column: PostgreSQL refuses what SQLite stores), as the request's 400; ``field``: the
    request's field, when a check made before the write knows it."""
    return ValidationFailed(f"a value in the request cannot be stored: {said}",
                            code="unstorable_value",
                            details={"field": field} if field is not None else None)


class DatabaseUnavailable(APIError):
    """The master's database is away for now (restarting, unreachable): ask again shortly."""

    status = 503
    code = "database_unavailable"


class StatementCancelled(APIError):
    """The database cancelled the master's statement (PostgreSQL's ``statement_timeout`` or
    ``lock_timeout``, set on Titan's role or database, or an operator's
    ``pg_cancel_backend``) again after a few tries: nothing of the request was applied."""

    status = 503
    code = "statement_cancelled"


#: Where the operator reads what to do about a cancelled statement.
CANCELLED_DOCS = "docs/troubleshooting.md#a-statement-cancelled-by-the-database"


def statement_cancelled(said: str) -> StatementCancelled:
    """The request's answer when the database cancelled its statement; ``said``: the
    database's words (``canceling statement due to statement timeout``), which name the
    setting to change."""
    if "statement timeout" in said:
        why = ("PostgreSQL's statement_timeout, set on Titan's role or database, is shorter "
               "than this statement needs: raise it, or reset it for Titan's role "
               "(ALTER ROLE ... RESET statement_timeout)")
    elif "lock timeout" in said:
        why = ("another session held a lock this statement needed past PostgreSQL's "
               "lock_timeout, set on Titan's role or database: find the session holding it "
               "(pg_locks), or raise lock_timeout for Titan's role")
    else:
        why = "an operator or another program cancelled it (pg_cancel_backend)"
    return StatementCancelled(
        f"the database cancelled this request's statement ({said}); nothing was applied. "
        f"{why} ({CANCELLED_DOCS})", details={"database": said})


class MasterStopping(APIError):
    """This master is stopping (a restart, an upgrade): a long-poll it held ends with this
    instead of being cut. Nothing was applied: ask again, the next master answers."""

    status = 503
    code = "master_stopping"


class BlobStoreUnavailable(APIError):
    """The master's blob store cannot be reached for now (an object store down, throttling,
    failing or refusing the master's credentials; a directory's mount gone): nothing was
    stored or read. Ask again shortly; ``details["reason"]`` says which (``unreachable``,
    ``failing``, ``credentials``: the last waits for an operator)."""

    status = 503
    code = "blob_store_unavailable"


# 507, not 503: in Titan a 503 means "ask again shortly" (clients and workers retry it, a
# PUT for the client's whole restart grace), and a full disk or a read-only mount stays so
# until an operator acts. 507 Insufficient Storage is HTTP's "the server cannot store the
# representation", which is what each of these is.
class BlobStoreUnwritable(APIError):
    """The master's blob store cannot take a write (its disk is full, over quota, read-only,
    or not the master's to write): nothing was stored."""

    status = 507
    code = "blob_store_unwritable"


class DatabaseCorrupt(APIError):
    """The master's database is damaged (SQLite: "database disk image is malformed"): no
    retry helps; an operator restores it from a backup."""

    status = 500
    code = "database_corrupt"


_BY_CODE: dict[str, type[APIError]] = {
    cls.code: cls
    for cls in (
        APIError,
        ValidationFailed,
        InvalidDAG,
        PipelineError,
        AmbiguousRef,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        StaleAttempt,
        WorkerNameTaken,
        WrongKind,
        PayloadTooLarge,
        WaitTimeout,
        NotLeader,
        MasterStopping,
        DatabaseUnavailable,
        StatementCancelled,
        BlobStoreUnavailable,
        BlobStoreUnwritable,
        DatabaseCorrupt,
    )
}
_BY_STATUS: dict[int, type[APIError]] = {
    400: ValidationFailed,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    408: WaitTimeout,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationFailed,
}


def for_status(status: int) -> type[APIError]:
    """The error class for an HTTP status (``NotFound`` for 404, ...)."""
    return _BY_STATUS.get(status, APIError)


def from_response(status: int, body: Any) -> APIError:
    """Rebuild the exception the master raised from its error body (used by the SDK)."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        code = str(err.get("code") or "")
        cls = _BY_CODE.get(code) or _BY_STATUS.get(status, APIError)
        return cls(
            str(err.get("message") or ""), details=err.get("details") or {}, code=code or None,
            status=status,
        )
    cls = _BY_STATUS.get(status, APIError)
    return cls(f"HTTP {status}: {str(body)[:500]}", status=status)
