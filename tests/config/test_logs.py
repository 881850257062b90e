"""Log noise (QA finding 13): a guesser's refused attempts log nothing at WARNING or above but
one line when the username becomes locked; no traceback, no ERROR."""

import logging

import pytest
from django.contrib.auth import authenticate
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def logged():
    """What reaches the root logger's handlers (after each logger's filters)."""
    capture = Capture()
    root = logging.getLogger()
    root.addHandler(capture)
    yield capture.records
    root.removeHandler(capture)


def test_refused_logins_log_one_warning_at_the_lockout(annotator, settings, logged):
    client = Client()
    for attempt in range(3 * settings.AXES_FAILURE_LIMIT):
        client.post(reverse("login"), {"username": "annotator", "password": f"wrong-{attempt}"})
        client.post(
            reverse("api-token"),
            {"username": "annotator", "password": "wrong"},
            content_type="application/json",
        )
    loud = [r for r in logged if r.levelno >= logging.WARNING]
    assert [r.name for r in loud] == ["datasets.accounts.services"], [
        (r.name, r.getMessage()) for r in loud
    ]
    assert "locked out after 5 failed attempts" in loud[0].getMessage()
    assert "annotator" not in loud[0].getMessage()
    assert not any(r.exc_info for r in logged)


def test_authenticate_without_a_request_logs_no_error(annotator, logged):
    assert authenticate(username="annotator", password="wrong") is None
    assert not [r for r in logged if r.levelno >= logging.ERROR]


def test_other_client_errors_are_still_logged(client, manager, logged):
    client.force_login(manager)
    client.get("/api/v1/projects/no-such-project/")
    assert any(r.name == "django.request" and r.levelno == logging.WARNING for r in logged)
