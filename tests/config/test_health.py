"""``/healthz``: no login, any host, plain HTTP; 200 when the database, broker and storage answer,
503 with the failed check named when one does not."""

import pytest

from config.celery import app
from tests.s3 import new_bucket, s3_storages


@pytest.fixture
def broker_url(monkeypatch):
    """Point the Celery app at another broker for one test (Celery reads CELERY_BROKER_URL
    from the environment before its own setting)."""
    before = app.conf.broker_url

    def point(url: str) -> None:
        monkeypatch.setenv("CELERY_BROKER_URL", url)
        app.conf.broker_url = url

    yield point
    app.conf.broker_url = before


def _probe(client, **extra):
    # A load balancer probes by address, over HTTP, without a session.
    return client.get("/healthz", HTTP_HOST="10.1.2.3", **extra)


@pytest.mark.django_db
def test_healthy_is_200_without_login_from_any_host(client, settings):
    settings.DEBUG = False
    settings.SECURE_SSL_REDIRECT = True
    response = _probe(client)
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "ok", "storage": "ok"},
    }
    assert response["Cache-Control"] == "no-store"
    assert client.head("/healthz/", HTTP_HOST="10.1.2.3").status_code == 200
    assert client.post("/healthz", HTTP_HOST="10.1.2.3").status_code == 405
    # Everything else still needs its host and its login.
    assert client.get("/", HTTP_HOST="10.1.2.3").status_code == 400


@pytest.mark.django_db
def test_healthy_on_s3_storage(client, settings):
    settings.STORAGES = s3_storages(new_bucket())
    assert _probe(client).json()["checks"]["storage"] == "ok"


@pytest.mark.django_db
def test_a_missing_bucket_is_503_naming_storage(client, settings):
    settings.STORAGES = s3_storages("concord-missing-" + new_bucket()[-8:])
    response = _probe(client)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failed"
    assert body["checks"]["database"] == body["checks"]["broker"] == "ok"
    assert body["checks"]["storage"].startswith("failed: default: ClientError")


@pytest.mark.django_db
def test_an_unreachable_broker_is_503_naming_the_broker(client, broker_url):
    broker_url("redis://127.0.0.1:1/0")  # nothing listens on port 1
    response = _probe(client)
    assert response.status_code == 503
    assert response.json()["checks"] == {
        "database": "ok",
        "broker": "failed: OperationalError",
        "storage": "ok",
    }


def test_an_unreachable_database_is_503_naming_the_database(client, settings):
    # pytest-django blocks database access in this test: the check's query fails as it
    # does when the database is down.
    response = _probe(client)
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("failed: ")
