"""Wrong collection settings are named by ``manage.py check`` (concord.E001–E003), and a job
whose fetch task meets them pauses with the reason on its page and in the API, instead of
crashing in a loop while it shows "running"."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.test import Client
from django.urls import reverse

from datasets.ingest.services import collection
from datasets.ingest.services.checks import collection_settings_check
from datasets.models import ImportJob, ImportKind, ImportStatus
from tests.datasets.ingest.test_collection import collect_settings, server  # noqa: F401 (fixtures)
from tests.datasets.ingest.test_collection_edges import _manifest


@pytest.mark.parametrize(
    ("name", "value", "check_id", "words"),
    [
        ("CONCORD_COLLECT_CA_BUNDLE", "/nonexistent.pem", "concord.E001", "no file at"),
        ("CONCORD_COLLECT_ALLOW_CIDRS", ["notacidr"], "concord.E002", "'notacidr' is not"),
        ("CONCORD_COLLECT_ALLOW_CIDRS", ["127.0.0.1/33"], "concord.E002", "'127.0.0.1/33'"),
        ("CONCORD_COLLECT_MAX_REDIRECTS", -1, "concord.E003", "at least 0"),
        ("CONCORD_COLLECT_ATTEMPTS", 0, "concord.E003", "at least 1"),
        ("CONCORD_COLLECT_BATCH", 0, "concord.E003", "at least 1"),
        ("CONCORD_COLLECT_THREADS", -2, "concord.E003", "at least 1"),
        ("CONCORD_COLLECT_TOTAL_TIMEOUT", 0.0, "concord.E003", "more than 0"),
        ("CONCORD_COLLECT_BACKOFF", -1.0, "concord.E003", "at least 0"),
    ],
)
def test_manage_py_check_names_each_wrong_setting(settings, name, value, check_id, words):
    assert collection_settings_check() == []
    setattr(settings, name, value)
    errors = collection_settings_check()
    assert [error.id for error in errors] == [check_id]
    assert name in errors[0].msg and words in errors[0].msg
    with pytest.raises(SystemCheckError, match=check_id):
        call_command("check")


def test_a_file_that_is_not_a_ca_bundle_is_named(settings, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate")
    settings.CONCORD_COLLECT_CA_BUNDLE = str(bundle)
    assert [error.id for error in collection_settings_check()] == ["concord.E001"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CONCORD_COLLECT_CA_BUNDLE", "/nonexistent.pem"),
        ("CONCORD_COLLECT_ALLOW_CIDRS", ["notacidr"]),
        ("CONCORD_COLLECT_MAX_REDIRECTS", -1),
    ],
)
def test_a_job_meeting_wrong_settings_pauses_with_the_reason_and_resumes_once_fixed(
    project,
    manager,
    server,  # noqa: F811
    settings,
    name,
    value,
):
    client = Client()
    client.force_login(manager)
    good = getattr(settings, name)
    setattr(settings, name, value)
    response = client.post(
        reverse("api-collections", kwargs={"slug": project.slug}),
        {"manifest": _uploaded(_manifest(server))},
    )
    job = collection.collection_stage(job_id=response.json()["id"])
    assert job.status == ImportStatus.RUNNING
    # The worker's task, as it runs: no fetcher handed in, it builds its own from the settings.
    assert collection.collection_run(job_id=job.pk, seconds=0) == "paused"
    route = {"slug": project.slug, "job_id": job.pk}
    detail = client.get(reverse("api-collection", kwargs=route)).json()
    assert detail["status"] == "paused"
    assert name in detail["error"] and "no row was fetched" in detail["error"]
    assert detail["progress"]["pending"] == 3
    page = client.get(reverse("import-job", kwargs=route)).content.decode()
    assert name in page
    # Fixed, then resumed: the reason goes, the rows are fetched.
    setattr(settings, name, good)
    resumed = client.post(reverse("api-collection-resume", kwargs=route)).json()
    assert resumed["status"] == "running" and resumed["error"] == ""
    collection.collection_run(job_id=job.pk, seconds=0)
    job = ImportJob.objects.get(pk=job.pk)
    assert job.status == ImportStatus.DONE and job.added == 2


@pytest.mark.django_db
def test_the_command_here_says_which_setting_is_wrong(project, server, settings, tmp_path):  # noqa: F811
    settings.CONCORD_COLLECT_ALLOW_CIDRS = ["127.0.0.1/33"]
    manifest = tmp_path / "urls.csv"
    manifest.write_bytes(_manifest(server))
    with pytest.raises(CommandError, match=r"CONCORD_COLLECT_ALLOW_CIDRS: '127\.0\.0\.1/33'"):
        call_command("collect_urls", project.slug, str(manifest), "--here")
    job = ImportJob.objects.get(project=project, kind=ImportKind.COLLECT)
    assert job.status == ImportStatus.PAUSED


def _uploaded(body: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("urls.csv", body)
