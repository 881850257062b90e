"""The invariant over the odd-input corpus: every row read has exactly one outcome, in input
order; the counters add up; nothing is half-written; running it again adds nothing. On whichever
database the suite runs against (CI runs it on PostgreSQL and SQLite)."""

import logging
from collections import Counter

import pytest
from django.core.files.storage import default_storage

from datasets.ingest.services.jobs import ROW_INTERNAL_ERROR
from datasets.models import Caption, Image, ImportStatus, Pair, RowOutcome
from tests import factories
from tests.datasets.ingest import corpus

pytestmark = pytest.mark.django_db

CASES = corpus.build()
RUNS = [
    pytest.param(case, runner, id=f"{runner}: {case.name}")
    for case in CASES
    for runner in (("storage",) if case.kind == "upload" else ("storage", "terminal"))
]


@pytest.fixture
def limits(settings):
    settings.CONCORD_MAX_IMAGE_BYTES = corpus.MAX_IMAGE_BYTES
    settings.CONCORD_ZIP_MAX_FILES = corpus.ZIP_MAX_FILES
    settings.CONCORD_UPLOAD_INLINE_FILES = 0  # every upload goes the worker's way


def _stored_images(media) -> set[str]:
    root = media / "images"
    return (
        {str(p.relative_to(media)) for p in root.rglob("*") if p.is_file()}
        if root.exists()
        else set()
    )


@pytest.mark.parametrize(("case", "runner"), RUNS)
def test_every_row_read_has_exactly_one_outcome(
    case, runner, project, manager, tmp_path, limits, caplog, media_storage
):
    caplog.set_level(logging.WARNING)
    job = corpus.run_case(
        case, runner=runner, project=project, user=manager, folder=tmp_path / "images"
    )
    if case.file_error:
        assert job.status == ImportStatus.FAILED
        assert case.file_error in job.error
        assert job.rows.count() == 0 and job.rows_done == 0
        return
    assert job.status == ImportStatus.DONE, job.error
    rows = list(job.rows.order_by("position"))
    assert [row.position for row in rows] == list(range(case.rows))
    assert job.rows_total == job.rows_done == case.rows
    counts = Counter(row.outcome for row in rows)
    assert (job.added, job.present, job.merged, job.refused) == tuple(
        counts[outcome] for outcome in RowOutcome.values
    )
    if case.wheres is not None:
        assert [row.where for row in rows] == case.wheres
    for row in rows:
        if row.outcome == RowOutcome.REFUSED:
            assert row.reason and row.image_id is None, row
            assert row.reason != ROW_INTERNAL_ERROR and "database refused" not in row.reason, row
        else:
            assert row.image_id is not None, row
    # Not one traceback, nor a row the database refused.
    assert [r.getMessage() for r in caplog.records if r.name.startswith("datasets")] == []

    # Nothing half-written: each image has its file and each caption its pair; no stray file.
    images = Image.objects.filter(project=project)
    assert _stored_images(media_storage) == {image.file.name for image in images}
    for image in images:
        assert default_storage.exists(image.file.name)
    captions = Caption.objects.filter(image__project=project)
    assert Pair.objects.filter(caption__in=captions, kind="positive").count() == captions.count()
    assert job.images_added == images.count()
    assert job.captions_added == captions.count()

    # Running the same input again adds nothing: every row is present or refused as before.
    again = corpus.run_case(
        case, runner=runner, project=project, user=manager, folder=tmp_path / "images-again"
    )
    assert again.status == ImportStatus.DONE
    second = list(again.rows.order_by("position"))
    assert [row.outcome for row in second] == [
        RowOutcome.REFUSED if row.outcome == RowOutcome.REFUSED else RowOutcome.PRESENT
        for row in rows
    ]
    assert [row.reason for row in second if row.outcome == RowOutcome.REFUSED] == [
        row.reason for row in rows if row.outcome == RowOutcome.REFUSED
    ]
    assert (again.images_added, again.captions_added) == (0, 0)
    assert Image.objects.filter(project=project).count() == images.count()


def test_the_corpus_covers_every_kind_in_the_issue():
    names = " / ".join(case.name for case in CASES)
    for kind in (
        "identical bytes",
        "stray quote",
        "NUL",
        "semicolon",
        "BOM",
        "Windows-1252",
        "latin-1",
        "NFC name, NFD file",
        "nested 100,000 deep",
        "JSONL",
        "COCO",
        "zip",
        "cp437",
        "too many files",
    ):
        assert kind in names, kind
    assert sum(case.rows for case in CASES) > 200
    assert factories  # the corpus draws its images with the test factories
