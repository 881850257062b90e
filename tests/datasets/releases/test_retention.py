"""Releases read their predecessor from storage and fail loudly without it; retention prunes
old releases' files, never a pinned one, and says so on the page and in the API."""

import io

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotate.models import ItemLabel
from datasets.models import ImageSplit, Release, ReleaseStatus
from datasets.releases import services
from datasets.releases.exporters import verify_manifest
from datasets.releases.tasks import prune_releases
from tests.datasets.releases.test_releases import _cut, _dataset


@pytest.fixture
def releases(project, manager):
    """Four ready releases of the same project (v1 … v4)."""
    _dataset(project, count=4)
    built = [_cut(project, manager, formats=["jsonl"]) for _ in range(4)]
    assert all(r.status == ReleaseStatus.READY for r in built), [r.error for r in built]
    return built


def _stored(release) -> list[str]:
    store = storages["releases"]
    try:
        folders, files = store.listdir(
            release.directory or f"{release.project.slug}/{release.name}"
        )
    except FileNotFoundError:
        return []
    return files + folders


@pytest.mark.parametrize("gone", ["pairs.parquet", "manifest.json", "corrupt"])
def test_a_release_whose_predecessor_cannot_be_read_fails_loudly(project, manager, gone):
    _dataset(project, count=4)
    v1 = _cut(project, manager, formats=["jsonl"])
    assert v1.status == ReleaseStatus.READY
    name = f"{v1.directory}/{'pairs.parquet' if gone == 'corrupt' else gone}"
    storages["releases"].delete(name)
    if gone == "corrupt":
        storages["releases"].save(name, ContentFile(b"not the table v1 wrote"))

    v2 = _cut(project, manager, formats=["jsonl"])
    assert v2.status == ReleaseStatus.FAILED
    assert "The previous release v1 cannot be read from storage" in v2.error
    assert f"prune_releases {project.slug} --release v1" in v2.error
    assert v2.directory == "" and _stored(v2) == []
    assert not ImageSplit.objects.filter(release=v2).exists()

    # The way out the message gives: mark v1's files gone; the next build has no predecessor
    # it cannot read, and says it compares with nothing rather than with a lost release.
    call_command("prune_releases", project.slug, "--release", "v1", stdout=io.StringIO())
    v3 = _cut(project, manager, formats=["jsonl"])
    assert v3.status == ReleaseStatus.READY, v3.error
    assert v3.counts["previous_version"] is None
    assert "No earlier release is kept to compare with (v1" in services.release_datasheet(
        release=v3
    )


def test_a_diff_reads_the_predecessor_from_storage(project, manager):
    data = _dataset(project, count=4)
    v1 = _cut(project, manager, formats=["jsonl"])
    # Back to pending: out of the next release.
    ItemLabel.objects.filter(pair=data["positives"][0]).delete()
    v2 = _cut(project, manager, formats=["jsonl"])
    assert v1.status == ReleaseStatus.READY and v2.counts["previous_version"] == "v1"
    assert v2.counts["diff"]["removed"] == 1 and v2.counts["diff"]["added"] == 0
    sheet = services.release_datasheet(release=v2)
    assert "Changes since v1" in sheet and "| removed | 1 |" in sheet


def test_retention_keeps_the_newest_and_every_pinned_release(project, releases, settings):
    settings.CONCORD_RELEASES_KEEP = 2
    v1, v2, v3, v4 = releases
    services.release_pin(release=v1, pinned=True)
    outcomes = services.releases_prune()
    assert [(o.release, o.files > 0) for o in outcomes] == [("v2", True)]
    statuses = dict(Release.objects.filter(project=project).values_list("version", "status"))
    assert statuses == {1: "ready", 2: "pruned", 3: "ready", 4: "ready"}
    v2.refresh_from_db()
    assert v2.pruned_at is not None and "newest 2" in v2.pruned_reason
    assert _stored(v2) == [] and _stored(v1) and _stored(v3)
    assert not ImageSplit.objects.filter(release=v2).exists()
    assert ImageSplit.objects.filter(release=v4).exists()
    assert v2.directory == ""
    # Run again: nothing more. Unpinning lets the next run take v1.
    assert services.releases_prune() == []
    services.release_pin(release=v1, pinned=False)
    assert [o["release"] for o in prune_releases()] == ["v1"]
    assert Release.objects.get(pk=v1.pk).status == ReleaseStatus.PRUNED


def test_keep_zero_keeps_everything(releases, settings):
    settings.CONCORD_RELEASES_KEEP = 0
    assert services.releases_prune() == []
    assert all(_stored(r) for r in releases)


def test_a_pinned_or_unready_release_is_not_pruned_by_hand(releases):
    v1 = services.release_pin(release=releases[0], pinned=True)
    with pytest.raises(ValueError, match="pinned"):
        services.release_prune(release=v1)
    services.release_pin(release=v1, pinned=False)
    services.release_prune(release=v1)
    with pytest.raises(ValueError, match="Only a ready release"):
        services.release_prune(release=Release.objects.get(pk=v1.pk))
    with pytest.raises(ValueError, match="was pruned"):
        services.release_pin(release=Release.objects.get(pk=v1.pk), pinned=True)


def test_the_command_prunes_lists_and_refuses(project, releases):
    out = io.StringIO()
    call_command("prune_releases", "--keep", "3", "--dry-run", stdout=out)
    assert "Would prune 1 releases: street-scenes v1" in out.getvalue()
    assert Release.objects.filter(status=ReleaseStatus.PRUNED).count() == 0
    out = io.StringIO()
    call_command("prune_releases", project.slug, "--keep", "3", stdout=out)
    assert "Pruned street-scenes v1:" in out.getvalue()
    assert "1 releases pruned (kept the newest 3" in out.getvalue()
    with pytest.raises(CommandError, match="no release v9"):
        call_command("prune_releases", project.slug, "--release", "v9")
    with pytest.raises(CommandError, match="needs a project"):
        call_command("prune_releases", "--release", "v2")
    with pytest.raises(CommandError, match="Only a ready release"):
        call_command("prune_releases", project.slug, "--release", "1")


def test_pin_and_prune_show_on_the_page_and_in_the_api(
    client, project, manager, releases, settings
):
    settings.CONCORD_RELEASES_KEEP = 3
    client.force_login(manager)
    page = client.get(reverse("release-detail", args=[project.slug, 1]))
    assert b"newest 3 ready releases" in page.content and b"data-pin" in page.content

    response = client.post(reverse("release-pin", args=[project.slug, 1]), {"pinned": "1"})
    assert response.status_code == 302
    page = client.get(response["Location"])
    assert b"data-pinned" in page.content and b"kept forever" in page.content
    assert b"data-unpin" in page.content

    api = client.post(
        reverse("api-release-pin", args=[project.slug, 1]),
        {"pinned": False},
        content_type="application/json",
    )
    assert api.status_code == 200 and api.json()["pinned"] is False
    assert (
        client.post(
            reverse("api-release-pin", args=[project.slug, 1]), {}, content_type="application/json"
        ).status_code
        == 400
    )

    services.releases_prune()
    page = client.get(reverse("release-detail", args=[project.slug, 1]))
    assert b"data-pruned" in page.content and b"stored files were deleted" in page.content
    assert b"pairs.jsonl" not in page.content  # no file links for what is gone
    listing = client.get(reverse("releases", args=[project.slug]))
    assert b"files deleted" in listing.content
    detail = client.get(reverse("api-release", args=[project.slug, 1])).json()
    assert detail["status"] == "pruned" and detail["files"] == [] and detail["pruned_at"]
    assert (
        client.get(reverse("release-file", args=[project.slug, 1, "pairs.jsonl"])).status_code
        == 404
    )
    refused = client.post(
        reverse("api-release-pin", args=[project.slug, 1]),
        {"pinned": True},
        content_type="application/json",
    )
    assert refused.status_code == 400 and "was pruned" in refused.json()["detail"]


def test_files_that_went_missing_are_a_message_not_a_500(client, project, manager, releases):
    v4 = releases[-1]
    storages["releases"].delete(f"{v4.directory}/manifest.json")
    client.force_login(manager)
    page = client.get(reverse("release-detail", args=[project.slug, 4]))
    assert page.status_code == 200 and b"data-files-error" in page.content
    assert b"cannot be read from storage" in page.content
    api = client.get(reverse("api-release", args=[project.slug, 4])).json()
    assert api["files"] == [] and "cannot be read" in api["files_error"]
    assert (
        client.get(reverse("release-file", args=[project.slug, 4, "pairs.jsonl"])).status_code
        == 404
    )
    storages["releases"].delete(f"{releases[-2].directory}/pairs.jsonl")
    assert (
        client.get(reverse("release-file", args=[project.slug, 3, "pairs.jsonl"])).status_code
        == 404
    )


def test_download_release_copies_every_file_checked(project, releases, tmp_path):
    out = io.StringIO()
    call_command("download_release", project.slug, "v2", str(tmp_path / "v2"), stdout=out)
    assert "checked against the manifest" in out.getvalue()
    assert verify_manifest(directory=tmp_path / "v2") == []
    storages["releases"].delete(f"{releases[2].directory}/pairs.jsonl")
    with pytest.raises(CommandError, match="cannot be read from storage"):
        call_command("download_release", project.slug, "v3", str(tmp_path / "v3"))
    with pytest.raises(CommandError, match="no release v7"):
        call_command("download_release", project.slug, "v7", str(tmp_path / "v7"))


def test_a_prune_cut_short_is_finished_by_the_next_run(project, releases, settings):
    settings.CONCORD_RELEASES_KEEP = 3
    v1 = releases[0]
    # As a worker stopped between marking v1 pruned and deleting its files leaves it.
    Release.objects.filter(pk=v1.pk).update(
        status=ReleaseStatus.PRUNED, pruned_at=v1.finished_at, pruned_reason="retention"
    )
    assert _stored(v1)
    outcomes = services.releases_prune()
    assert [(o.release, o.files > 0) for o in outcomes] == [("v1", True)]
    assert _stored(v1) == [] and Release.objects.get(pk=v1.pk).directory == ""
    assert services.releases_prune() == []
