"""An S3-compatible server for tests: moto's server mode in a process of its own, on a free port.

``moto_endpoint()`` starts it once per test session (stopped at exit); ``s3_storages(bucket)``
gives the ``STORAGES`` aliases production uses (``config/settings.py``), pointed at it. Real
HTTP, real boto3 and django-storages: nothing of ours is mocked.
"""

from __future__ import annotations

import atexit
import subprocess
import sys
import uuid

import boto3

REGION = "us-east-1"
ACCESS_KEY = "concord-test"
SECRET_KEY = "concord-test-secret"
_SERVER = """
import logging, sys
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # runs until the test session closes our end
"""
_endpoint: str | None = None


def moto_endpoint() -> str:
    """``http://127.0.0.1:<port>`` of the session's moto server, started on first use."""
    global _endpoint
    if _endpoint is None:
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        port = int(process.stdout.readline())
        atexit.register(_stop, process)
        _endpoint = f"http://127.0.0.1:{port}"
    return _endpoint


def _stop(process: subprocess.Popen) -> None:
    if process.stdin is not None:
        process.stdin.close()
    process.terminate()
    process.wait(timeout=10)


def s3_client():
    return boto3.client(
        "s3",
        endpoint_url=moto_endpoint(),
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def new_bucket() -> str:
    """A fresh, empty bucket on the session's server."""
    name = f"concord-{uuid.uuid4().hex[:12]}"
    s3_client().create_bucket(Bucket=name)
    return name


def s3_options(bucket: str, *, location: str = "", overwrite: bool = False) -> dict:
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "location": location,
            "endpoint_url": moto_endpoint(),
            "region_name": REGION,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "default_acl": None,
            "file_overwrite": overwrite,
            "querystring_auth": True,
            "querystring_expire": 300,
        },
    }


def s3_storages(bucket: str) -> dict:
    """Media, releases and models in one bucket, as production configures them by default."""
    return {
        "default": s3_options(bucket),
        "releases": s3_options(bucket, location="releases", overwrite=True),
        "models": s3_options(bucket, location="models", overwrite=True),
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def s3_environment(bucket: str) -> dict[str, str]:
    """The environment variables that give a Concord process the same storages."""
    return {
        "AWS_STORAGE_BUCKET_NAME": bucket,
        "AWS_S3_ENDPOINT_URL": moto_endpoint(),
        "AWS_S3_REGION_NAME": REGION,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    }
