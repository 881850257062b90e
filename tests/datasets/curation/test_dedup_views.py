"""The manager's review of duplicates and quality flags: pages, actions and who may use them."""

import io

import pytest
from django.urls import reverse

from datasets.curation.services.cleaning import images_clean
from datasets.ingest.services.uploads import caption_create
from datasets.models import CaptionFlag, DecisionKind, DuplicateCluster, DuplicateDecision
from tests import factories
from tests.datasets.curation.dedup_images import variant

pytestmark = pytest.mark.django_db


@pytest.fixture
def clusters(project):
    """Two clusters: seed 40 (three near-copies) and seed 41 (two), and one image on its own."""
    a = [variant(project=project, seed=40, kind=k) for k in ("original", "resized", "brighter")]
    b = [variant(project=project, seed=41, kind=k) for k in ("original", "recompressed")]
    alone = variant(project=project, seed=42)
    images_clean(image_ids=[i.pk for i in [*a, *b, alone]])
    return a, b


def test_review_page_shows_clusters_side_by_side_most_doubtful_first(
    client, manager, project, clusters
):
    a, b = clusters
    DuplicateCluster.objects.filter(canonical=a[0]).update(doubt=2)
    DuplicateCluster.objects.filter(canonical=b[0]).update(doubt=6)
    client.force_login(manager)
    page = client.get(reverse("duplicates-review", kwargs={"slug": project.slug})).content.decode()
    thumb = reverse("image-thumbnail", kwargs={"slug": project.slug, "image_id": b[0].pk})
    assert thumb in page
    assert "doubt 6" in page and page.index("doubt 6") < page.index("doubt 2")
    assert page.count("Not a duplicate") == 5
    assert 'aria-current="page">Duplicates' in page


def test_review_list_is_keyset_paged(client, manager, project, clusters, monkeypatch):
    monkeypatch.setattr("datasets.curation.views.CLUSTERS_PAGE_SIZE", 1)
    client.force_login(manager)
    url = reverse("duplicates-review", kwargs={"slug": project.slug})
    first = client.get(url)
    cursor = first.context["page"].next_after
    assert cursor and len(first.context["page"].clusters) == 1
    second = client.get(url, {"after": cursor})
    assert second.context["page"].next_after is None
    shown = {c.pk for c in first.context["page"].clusters + second.context["page"].clusters}
    assert shown == set(DuplicateCluster.objects.values_list("pk", flat=True))


def test_confirm_and_split_persist(client, manager, project, clusters):
    a, b = clusters
    client.force_login(manager)
    cluster_a = DuplicateCluster.objects.get(canonical=a[0])
    response = client.post(
        reverse(
            "cluster-split",
            kwargs={"slug": project.slug, "cluster_id": cluster_a.pk, "image_id": a[2].pk},
        )
    )
    assert response.status_code == 302
    assert DuplicateDecision.objects.filter(kind=DecisionKind.DIFFERENT).count() == 2
    cluster_b = DuplicateCluster.objects.get(canonical=b[0])
    client.post(
        reverse("cluster-confirm", kwargs={"slug": project.slug, "cluster_id": cluster_b.pk})
    )
    assert DuplicateCluster.objects.get(canonical=b[0]).confirmed
    assert DuplicateCluster.objects.get(canonical=a[0]).size == 2
    # A stale cluster id (reclustered meanwhile) is said so, not a crash.
    response = client.post(
        reverse("cluster-confirm", kwargs={"slug": project.slug, "cluster_id": cluster_a.pk}),
        follow=True,
    )
    assert "changed meanwhile" in response.content.decode()


def test_quality_page_lists_flags_and_overrides_them(client, manager, project):
    image = variant(project=project, seed=43)
    caption = caption_create(image=image, text="Dog.", source="api")
    images_clean(image_ids=[image.pk])
    flag = CaptionFlag.objects.get(caption=caption)
    client.force_login(manager)
    url = reverse("quality-flags", kwargs={"slug": project.slug})
    page = client.get(url).content.decode()
    assert (
        "Caption too short" in page
        and "caption_too_short" not in page
        and "Dog." in page
        and "held back" in page
    )
    client.post(reverse("caption-flag-override", kwargs={"slug": project.slug, "flag_id": flag.pk}))
    flag.refresh_from_db()
    assert flag.overridden_at is not None and flag.overridden_by == manager
    client.post(
        reverse("caption-flag-override", kwargs={"slug": project.slug, "flag_id": flag.pk}),
        {"keep": "0"},
    )
    flag.refresh_from_db()
    assert flag.overridden_at is None


def test_project_page_links_to_the_review(client, manager, project):
    client.force_login(manager)
    page = client.get(reverse("project-detail", kwargs={"slug": project.slug})).content.decode()
    assert reverse("duplicates-review", kwargs={"slug": project.slug}) in page
    assert reverse("quality-flags", kwargs={"slug": project.slug}) in page


@pytest.mark.parametrize(
    ("method", "name", "args"),
    [
        ("get", "duplicates-review", {}),
        ("post", "cluster-confirm", {"cluster_id": 1}),
        ("post", "cluster-split", {"cluster_id": 1, "image_id": 1}),
        ("get", "quality-flags", {}),
        ("post", "image-flag-override", {"flag_id": 1}),
        ("post", "caption-flag-override", {"flag_id": 1}),
    ],
)
def test_only_managers_review(client, project, annotator, outsider, method, name, args):
    url = reverse(name, kwargs={"slug": project.slug, **args})
    assert getattr(client, method)(url).status_code == 302  # to the login page
    client.force_login(annotator)
    assert getattr(client, method)(url).status_code == 403
    client.force_login(outsider)
    assert getattr(client, method)(url).status_code == 404


def test_managers_of_another_project_cannot_touch_its_clusters(client, project, clusters):
    a, _ = clusters
    other = factories.user("other-manager")
    factories.project(manager=other, name="Elsewhere")
    cluster = DuplicateCluster.objects.get(canonical=a[0])
    client.force_login(other)
    url = reverse("cluster-confirm", kwargs={"slug": project.slug, "cluster_id": cluster.pk})
    assert client.post(url).status_code == 404
    assert not DuplicateCluster.objects.get(pk=cluster.pk).confirmed


def test_blank_images_of_different_sizes_form_no_cluster_and_doubt_is_explained(
    client, manager, project
):
    """Issue 15: uniform images all hash alike; that is no evidence of duplication."""
    from PIL import Image as PILImage

    from datasets.ingest.services.uploads import Provenance, image_ingest
    from datasets.models import ImageFlag, Source

    blanks = []
    for number, (size, colour) in enumerate(
        [((640, 480), (255, 255, 255)), ((300, 900), (250, 250, 250)), ((1024, 1024), (0, 0, 0))]
    ):
        buffer = io.BytesIO()
        PILImage.new("RGB", size, colour).save(buffer, format="PNG")
        result = image_ingest(
            project=project,
            data=buffer.getvalue(),
            provenance=Provenance(source=Source.UPLOAD, original_name=f"blank-{number}.png"),
        )
        blanks.append(result.image_id)
    images_clean(image_ids=blanks)
    assert ImageFlag.objects.filter(image_id__in=blanks, code="image_blank").count() == 3
    assert not DuplicateCluster.objects.filter(project=project).exists()
    client.force_login(manager)
    page = client.get(reverse("duplicates-review", kwargs={"slug": project.slug})).content.decode()
    assert "data-doubt-explained" in page and "largest pHash distance" in page
