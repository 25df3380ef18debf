"""A local S3 server (moto's) that a test can stop and start again on the same port, as an
object store goes away and comes back: its buckets and objects live in this process, so they
are there again when it is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.conftest import IN_CI

#: Credentials moto takes, and none of the developer's AWS settings (``env`` for a process).
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


class S3Server:
    def __init__(self) -> None:
        try:
            from moto.server import ThreadedMotoServer
        except ModuleNotFoundError as exc:
            message = f"moto is not installed ({exc}): pip install -e '.[dev]' to run the S3 tests"
            if IN_CI:
                pytest.fail(message + " — mandatory in CI")
            pytest.skip(message)
        self._make = ThreadedMotoServer
        self._server: Any = None
        self.port = 0
        self.start()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server = self._make(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self.port = int(self._server.get_host_and_port()[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def bucket(self) -> str:
        """A new bucket's name."""
        import boto3

        name = f"titan-{os.urandom(4).hex()}"
        boto3.client("s3", endpoint_url=self.url, aws_access_key_id="testing",
                     aws_secret_access_key="testing", region_name="us-east-1"
                     ).create_bucket(Bucket=name)
        return name


@contextmanager
def s3_server() -> Iterator[S3Server]:
    server = S3Server()
    try:
        yield server
    finally:
        server.stop()
