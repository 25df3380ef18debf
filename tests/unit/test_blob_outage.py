"""What an unreachable blob store says (storage/blobs/outage.py, s3.py): S3's answers sorted
into "out of reach for now" (and why) and "this request's own", and an outage said on the log
once at its start, as a count while it lasts, and at its end."""

from __future__ import annotations

import logging

import pytest

from titan.storage.blobs.outage import SAY_EVERY, Outage

boto = pytest.importorskip("botocore.exceptions")


def _client_error(status: int, code: str, message: str = "") -> object:
    return boto.ClientError({"Error": {"Code": code, "Message": message},
                             "ResponseMetadata": {"HTTPStatusCode": status}}, "HeadObject")


def test_s3_answers_that_say_the_store_is_away_and_why() -> None:
    from titan.storage.blobs.s3 import _unavailable

    def reason(exc: object) -> str | None:
        said = _unavailable(exc, "bkt")  # type: ignore[arg-type]
        return None if said is None else said[0]

    assert reason(_client_error(503, "SlowDown", "Please reduce your request rate.")) == "failing"
    assert reason(_client_error(500, "InternalError")) == "failing"
    assert reason(_client_error(400, "RequestTimeout")) == "failing"
    assert reason(_client_error(403, "InvalidAccessKeyId", "no such key id")) == "credentials"
    assert reason(_client_error(403, "403")) == "credentials"  # a HEAD's bare 403
    assert reason(_client_error(404, "NoSuchBucket")) == "unreachable"
    assert reason(boto.EndpointConnectionError(endpoint_url="http://s3:9")) == "unreachable"
    assert reason(boto.ConnectTimeoutError(endpoint_url="http://s3:9")) == "unreachable"
    assert reason(boto.ReadTimeoutError(endpoint_url="http://s3:9")) == "unreachable"
    assert reason(boto.NoCredentialsError()) == "credentials"
    # This request's own: a key not there, an argument S3 refused (a bug), left as they are.
    assert reason(_client_error(404, "NoSuchKey")) is None
    assert reason(_client_error(404, "404")) is None
    assert reason(_client_error(400, "InvalidArgument")) is None
    assert reason(boto.ParamValidationError(report="bad")) is None

    said = _unavailable(_client_error(403, "SignatureDoesNotMatch", "bad signature"), "bkt")
    assert said is not None and said[1].startswith(
        "refused this master's credentials (SignatureDoesNotMatch: bad signature)")


def test_an_outage_is_said_at_its_start_counted_while_it_lasts_and_said_at_its_end(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "titan.master")
    now = [100.0]
    outage = Outage(clock=lambda: now[0])
    outage.ok()  # up: nothing said
    err = outage.failed("the blob store x cannot be reached", reason="unreachable", store="x")
    assert err.status == 503 and err.code == "blob_store_unavailable"
    assert err.details == {"store": "x", "reason": "unreachable"}
    for _ in range(5):
        now[0] += 1
        outage.failed("the blob store x cannot be reached", reason="unreachable", store="x")
    now[0] += SAY_EVERY
    outage.failed("the blob store x is failing", reason="failing", store="x")
    now[0] += 2
    outage.ok()
    outage.ok()
    assert [r.getMessage() for r in caplog.records] == [
        "blob store unavailable: the blob store x cannot be reached; requests that need it "
        "answer 503 blob_store_unavailable until it is back",
        "blob store still unavailable: 6 more request(s) answered 503 (last: the blob store x "
        "is failing)",
        "blob store back after 37 s (7 request(s) answered 503 meanwhile)"]
    assert not outage.down
