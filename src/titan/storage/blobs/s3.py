"""Blobs in an S3-compatible object store (``TITAN_BLOB_STORE=s3://bucket/prefix``).

A blob is the object ``<prefix>/<aa>/<sha256>``. An object appears only once its upload is
complete — one PUT, or for a blob over ``part_size`` a multipart upload whose parts stay
invisible until ``CompleteMultipartUpload`` (boto3 aborts one that fails) — so a reader never
sees half a blob. Two masters uploading the same content upload the same bytes under the
same key; whichever completes last replaces an identical object.
The object ``<prefix>/owner`` names the database whose garbage collection claimed the
store first (base.py).

Credentials and region come from the standard AWS chain (environment, ``~/.aws``, an
instance or pod role); ``TITAN_S3_ENDPOINT_URL`` points the client at MinIO, Ceph, moto or any
other S3-compatible server. boto3 is the optional extra ``titan-agents[s3]``: the factory imports
this module only for an ``s3://`` store, so a master without boto3 runs every other store.

A store that cannot be reached, throttles, fails with a 5xx, or refuses the master's
credentials is :class:`~titan.errors.BlobStoreUnavailable` (503, outage.py), saying which:
every upload, download and submission was a 500 "a bug in the master" with a botocore
traceback while the endpoint was down. Any other error S3 answers stays what it is.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore import exceptions as boto
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from titan.errors import ConfigError
from titan.storage.blobs.base import (
    CHUNK,
    NamedFirstStore,
    check_database_id,
    check_sha256,
    missing,
)

#: Blobs larger than this go up as a multipart upload of parts this size (S3's smallest part
#: is 5 MiB; 10,000 parts of 8 MiB cover 78 GiB, far past TITAN_MAX_UPLOAD_BYTES).
PART_SIZE = 8 * CHUNK

#: No connection within this many seconds is an outage: botocore's default (60 s, each of its
#: three attempts) held a request, and a thread of the master's small pool, for minutes.
CONNECT_TIMEOUT = 10

#: boto's own "there are no usable credentials here".
_NO_CREDENTIALS = (boto.NoCredentialsError, boto.PartialCredentialsError,
                   boto.CredentialRetrievalError, boto.NoAuthTokenError,
                   boto.TokenRetrievalError, boto.UnknownCredentialError)
#: The connection failed or broke (refused, timed out, reset, cut mid-body).
_UNREACHABLE = (boto.HTTPClientError, boto.ConnectionError, boto.IncompleteReadError)
#: S3's (and its clones') error codes for "slow down" and "failing for now".
_BUSY = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
         "RequestThrottled", "TooManyRequests", "RequestTimeout", "ServiceUnavailable",
         "InternalError"}
#: Credentials refused (a 403 whatever its code: a HEAD's carries none).
_REFUSED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
            "TokenRefreshRequired", "AccessDenied", "AllAccessDisabled"}


class S3BlobStore(NamedFirstStore):
    def __init__(self, bucket: str, prefix: str, spool_dir: Path, *,
                 endpoint_url: str | None = None, part_size: int = PART_SIZE) -> None:
        super().__init__(spool_dir)
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        # One client for every thread (boto3 clients are thread-safe, sessions are not); its
        # pool is sized for concurrent downloads, each of which holds a connection while the
        # client on the other end reads.
        self.client: Any = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url,
            config=Config(max_pool_connections=32, retries={"mode": "standard"},
                          connect_timeout=CONNECT_TIMEOUT))
        self.transfer = TransferConfig(multipart_threshold=part_size,
                                       multipart_chunksize=part_size, max_concurrency=4)
        where = f"s3://{bucket}/{self.prefix}"
        self.description = f"{where} at {endpoint_url}" if endpoint_url else where
        # Checked now, so a master with a wrong bucket or no credentials does not start, rather
        # than failing its first upload.
        try:
            self.client.head_bucket(Bucket=bucket)
        except (BotoCoreError, ClientError) as exc:
            raise ConfigError(f"the blob store {self.description} cannot be used: {exc}") from exc

    def key(self, sha256: str) -> str:
        name = f"{check_sha256(sha256)[:2]}/{sha256}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def size(self, sha256: str) -> int | None:
        key = self.key(sha256)
        try:
            with self._reaching():
                head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _not_found(exc):
                return None
            raise
        return int(head["ContentLength"])

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Generator[bytes, None, None]:
        return self._chunks(sha256, self.key(sha256), start, end)

    def _chunks(self, sha256: str, key: str, start: int, end: int | None) -> Generator[bytes, None, None]:
        if end is not None and end <= start:
            return
        extra = {}
        if start or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            with self._reaching():
                body = self.client.get_object(Bucket=self.bucket, Key=key, **extra)["Body"]
        except ClientError as exc:
            if _not_found(exc):
                raise missing(sha256) from None
            raise
        try:
            with self._reaching():  # the connection may break mid-body
                yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def _delete(self, sha256: str) -> None:
        with self._reaching():
            self.client.delete_object(Bucket=self.bucket, Key=self.key(sha256))

    def owner(self, claim: str) -> str:
        key = f"{self.prefix}/owner" if self.prefix else "owner"
        try:
            with self._reaching():
                return str(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                           .decode().strip())
        except ClientError as exc:
            if not _not_found(exc):
                raise
        # Written only if absent (If-None-Match: *): of two first claims at once, one is
        # refused and reads the other's. (A server that ignores the condition keeps the
        # last; each reads back the one that stayed.)
        try:
            with self._reaching():
                self.client.put_object(Bucket=self.bucket, Key=key,
                                       Body=(claim + "\n").encode(), IfNoneMatch="*")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in (
                    "PreconditionFailed", "ConditionalRequestConflict"):
                raise
        with self._reaching():
            return str(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                       .decode().strip())

    def users(self, database: str) -> set[str]:
        folder = f"{self.prefix}/users/" if self.prefix else "users/"
        found: set[str] = set()
        with self._reaching():
            self.client.put_object(Bucket=self.bucket, Key=folder + check_database_id(database),
                                   Body=b"")
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=folder):
                found.update(item["Key"][len(folder):] for item in page.get("Contents", []))
        return found

    def _store(self, sha256: str, size: int, body: IO[bytes]) -> None:
        if self.size(sha256) is not None:
            return  # content-addressed: what is there is these bytes, whole
        with self._reaching():
            self.client.upload_fileobj(body, self.bucket, self.key(sha256),
                                       Config=self.transfer)

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        """boto's errors raised inside that say the store is out of reach (module docstring)
        as BlobStoreUnavailable; any other stays what it is."""
        try:
            yield
        except (BotoCoreError, ClientError) as exc:
            said = _unavailable(exc, self.bucket)
            if said is None:
                if isinstance(exc, ClientError):
                    self.outage.ok()  # it answered (a 404, a precondition): it is there
                raise
            reason, what = said
            todo = ("an operator must fix them; then try again" if reason == "credentials"
                    else "nothing was stored or read: try again shortly")
            raise self.outage.failed(f"the blob store {self.description} {what}; {todo}",
                                     reason=reason, store=self.description) from None
        else:
            self.outage.ok()


def _unavailable(exc: Exception, bucket: str) -> tuple[str, str] | None:
    """(reason, what happened) when ``exc`` says the store cannot serve anyone now; None when
    it is about this request (a key not there, a bad argument: a bug)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        said = f"{code}: {error.get('Message')}" if error.get("Message") else code
        if status in (401, 403) or code in _REFUSED:
            return ("credentials", f"refused this master's credentials ({said}): check the AWS "
                    "credentials the master runs with (environment, ~/.aws, its instance or "
                    "pod role) and the bucket's policy")
        if code == "NoSuchBucket":
            return "unreachable", f"has no bucket {bucket!r} (any more)"
        if status >= 500 or code in _BUSY:
            return "failing", f"is failing or throttling for now ({said or status})"
        return None
    if isinstance(exc, _NO_CREDENTIALS):
        return ("credentials", f"cannot be used: this master has no usable AWS credentials "
                f"({exc}): set them (environment, ~/.aws, an instance or pod role)")
    if isinstance(exc, _UNREACHABLE):
        return "unreachable", f"cannot be reached ({exc})"
    return None


def _not_found(exc: ClientError) -> bool:
    # HEAD answers a bare 404 (no body to name an error code in), GET says NoSuchKey.
    return bool(exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"))
