"""An S3 API on loopback for tests: moto's standalone server (``ThreadedMotoServer``), the
endpoint s3fs itself is tested against. One server per session; each test gets a fresh bucket
and the AWS environment that s3fs, boto3 and every child process read
(``AWS_ENDPOINT_URL``, a dummy key and secret)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.prefect_server import free_port


@dataclass(frozen=True)
class S3Bucket:
    """A fresh bucket: ``url`` is ``s3://<bucket>/store``; ``env`` is what a process needs to reach it."""

    name: str
    url: str
    env: dict[str, str]


@contextmanager
def moto_server() -> Iterator[str]:
    """A running moto S3 server on 127.0.0.1; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def new_bucket(endpoint: str) -> S3Bucket:
    """Create a bucket with a fresh name on ``endpoint`` (boto3 in us-east-1: s3fs's ``mkdir``
    sends a location constraint moto refuses)."""
    import boto3

    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "tfrelease-test",
        "AWS_SECRET_ACCESS_KEY": "tfrelease-test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    name = f"tfrelease-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    ).create_bucket(Bucket=name)
    return S3Bucket(name, f"s3://{name}/store", env)
