"""Cleaning through the database: hashes, clusters, decisions, quality flags, held-back items."""

import io
import random

import pytest
from django.core.management import call_command
from PIL import Image as PILImage

from annotate.models import Task, TaskKind
from annotate.queue.services.pool import tasks_open
from datasets.curation import quality
from datasets.curation.caption_dedup import CAPTION_SIMILARITY_DEFAULT
from datasets.curation.dedup import PHASH_THRESHOLD_DEFAULT, hash_from_signed
from datasets.curation.services.cleaning import (
    CAPTION_DUPLICATE,
    caption_flag_override,
    captions_check,
    image_flag_override,
    images_clean,
    project_clean,
)
from datasets.curation.services.clusters import (
    cluster_confirm,
    cluster_member_split,
    clusters_recompute,
)
from datasets.ingest.services.uploads import caption_create
from datasets.models import (
    CaptionFlag,
    ClusterMember,
    DecisionKind,
    DuplicateCluster,
    DuplicateDecision,
    ImageFlag,
    Project,
)
from tests import factories
from tests.datasets.curation.dedup_images import ingest, jpeg, picture, variant

pytestmark = pytest.mark.django_db


def clusters_of(project) -> set[tuple[int, frozenset[int], int, bool]]:
    return {
        (c.canonical_id, frozenset(m.image_id for m in c.members.all()), c.doubt, c.confirmed)
        for c in DuplicateCluster.objects.filter(project=project).prefetch_related("members")
    }


def test_defaults_match_the_measured_ones():
    project = Project()
    assert project.near_duplicate_threshold == PHASH_THRESHOLD_DEFAULT
    assert project.caption_similarity_threshold == CAPTION_SIMILARITY_DEFAULT
    defaults = quality.QualityThresholds()
    assert project.quality_image_min_width == defaults.image_min_width
    assert project.quality_image_min_height == defaults.image_min_height
    assert project.quality_image_max_aspect_ratio == defaults.image_max_aspect_ratio
    assert project.quality_image_min_std == defaults.image_min_std
    assert project.quality_caption_min_words == defaults.caption_min_words
    assert project.quality_caption_max_words == defaults.caption_max_words
    assert project.quality_caption_min_letter_ratio == defaults.caption_min_letter_ratio
    assert project.quality_caption_max_token_share == defaults.caption_max_token_share
    assert project.quality_caption_repeat_min_count == defaults.caption_repeat_min_count


def test_near_copies_join_one_cluster_and_distinct_pictures_stay_apart(project):
    original = variant(project=project, seed=1)
    copies = [variant(project=project, seed=1, kind=k) for k in ("resized", "recompressed")]
    other = variant(project=project, seed=2)
    other_bright = variant(project=project, seed=2, kind="brighter")
    alone = variant(project=project, seed=3)
    ids = [original.pk, *(c.pk for c in copies), other.pk, other_bright.pk, alone.pk]

    assert images_clean(image_ids=ids) == 6
    assert images_clean(image_ids=ids) == 0  # safe to run twice: nothing left to do

    original.refresh_from_db()
    assert original.hashed_at is not None
    assert 0 <= hash_from_signed(value=original.phash) < 2**64
    found = clusters_of(project)
    assert {(canonical, members) for canonical, members, _, _ in found} == {
        (original.pk, frozenset([original.pk, *(c.pk for c in copies)])),
        (other.pk, frozenset([other.pk, other_bright.pk])),
    }
    assert all(0 <= doubt <= PHASH_THRESHOLD_DEFAULT for _, _, doubt, _ in found)
    assert not ClusterMember.objects.filter(image=alone).exists()


def test_joining_images_one_at_a_time_equals_recomputing_the_project(project):
    images = [
        variant(project=project, seed=seed, kind=kind)
        for seed in range(4)
        for kind in ("original", "resized", "recompressed", "brighter")
        if not (seed == 3 and kind != "original")
    ]
    order = [image.pk for image in images]
    random.Random(7).shuffle(order)
    for image_id in order:  # as the workers would, each image on its own
        images_clean(image_ids=[image_id])
    incremental = clusters_of(project)
    assert len(incremental) == 3

    clusters_recompute(project=project)
    assert clusters_of(project) == incremental


def test_manager_decisions_survive_recomputation_and_new_images(project, manager):
    a = [variant(project=project, seed=5, kind=k) for k in ("original", "resized", "brighter")]
    b = [variant(project=project, seed=6, kind=k) for k in ("original", "recompressed")]
    images_clean(image_ids=[i.pk for i in a + b])
    cluster_a = DuplicateCluster.objects.get(canonical=a[0])
    cluster_b = DuplicateCluster.objects.get(canonical=b[0])

    cluster_member_split(cluster=cluster_a, image_id=a[2].pk, user=manager)
    cluster_confirm(cluster=cluster_b, user=manager)
    after = clusters_of(project)
    assert {(c, m) for c, m, _, _ in after} == {
        (a[0].pk, frozenset([a[0].pk, a[1].pk])),
        (b[0].pk, frozenset([b[0].pk, b[1].pk])),
    }
    assert {(c, confirmed) for c, _, _, confirmed in after} == {
        (a[0].pk, False),
        (b[0].pk, True),
    }
    assert DuplicateDecision.objects.filter(kind=DecisionKind.DIFFERENT).count() == 2
    assert DuplicateDecision.objects.filter(kind=DecisionKind.SAME).count() == 1

    clusters_recompute(project=project)
    assert clusters_of(project) == after

    # A new copy joins its cluster; the split image still stays out of it.
    late = variant(project=project, seed=5, kind="recompressed")
    images_clean(image_ids=[late.pk])
    (members,) = [m for c, m, _, _ in clusters_of(project) if c == a[0].pk]
    assert members == {a[0].pk, a[1].pk, late.pk}
    assert not ClusterMember.objects.filter(image=a[2]).exists()

    # Confirming after a split withdraws it.
    cluster_a = DuplicateCluster.objects.get(canonical=a[0])
    cluster_confirm(cluster=cluster_a, user=manager)
    assert DuplicateCluster.objects.get(canonical=a[0]).confirmed


def _png(size, colour=None, seed=0) -> bytes:
    drawn = PILImage.new("RGB", size, colour) if colour else picture(seed=seed, size=size)
    buffer = io.BytesIO()
    drawn.save(buffer, format="PNG")
    return buffer.getvalue()


def test_each_image_filter_is_stored_with_its_reason(project):
    small = ingest(project=project, data=_png((80, 90), seed=1), name="small.png")
    wide = ingest(project=project, data=_png((800, 120), seed=2), name="wide.png")
    blank = ingest(project=project, data=_png((300, 200), colour=(200, 200, 200)), name="b.png")
    fine = variant(project=project, seed=4)
    images_clean(image_ids=[small.pk, wide.pk, blank.pk, fine.pk])

    def codes(image):
        return {(f.code, f.message) for f in ImageFlag.objects.filter(image=image)}

    assert codes(small) == {(quality.IMAGE_TOO_SMALL.code, quality.IMAGE_TOO_SMALL.message)}
    assert codes(wide) == {
        (quality.IMAGE_EXTREME_ASPECT_RATIO.code, quality.IMAGE_EXTREME_ASPECT_RATIO.message)
    }
    assert codes(blank) == {(quality.IMAGE_BLANK.code, quality.IMAGE_BLANK.message)}
    assert codes(fine) == set()


def test_project_thresholds_apply(project):
    Project.objects.filter(pk=project.pk).update(quality_image_min_width=400)
    image = variant(project=project, seed=4)  # 320 wide
    images_clean(image_ids=[image.pk])
    assert ImageFlag.objects.get(image=image).code == quality.IMAGE_TOO_SMALL.code


def test_each_caption_filter_and_repeats_are_flagged_with_their_reason(project):
    image = variant(project=project, seed=8)
    texts = {
        "ok": "A brown dog runs along the sandy beach.",
        "repeat": "a brown dog runs along the sandy beach",
        "near": "A brown dog runs along the sandy beach today.",
        "short": "Dog.",
        "long": " ".join(["word"] * 30 + ["other"] * 31),
        "letters": "1234 5678 90!! ## 42",
        "token": "dog dog dog dog cat",
    }
    captions = {k: caption_create(image=image, text=t, source="api") for k, t in texts.items()}
    captions_check(image_ids=[image.pk])
    captions_check(image_ids=[image.pk])  # twice: still one flag per reason

    def codes(key):
        return {f.code for f in CaptionFlag.objects.filter(caption=captions[key])}

    assert codes("ok") == set()
    assert codes("repeat") == {CAPTION_DUPLICATE}
    assert codes("near") == {CAPTION_DUPLICATE}
    assert codes("short") == {quality.CAPTION_TOO_SHORT.code}
    assert quality.CAPTION_TOO_LONG.code in codes("long")
    assert codes("letters") == {quality.CAPTION_FEW_LETTERS.code}
    assert codes("token") == {quality.CAPTION_REPEATED_TOKEN.code}
    repeat = CaptionFlag.objects.get(caption=captions["repeat"])
    assert repeat.duplicate_of_id == captions["ok"].pk
    assert repeat.message
    assert CaptionFlag.objects.get(caption=captions["short"]).message == (
        quality.CAPTION_TOO_SHORT.message
    )


def test_duplicates_and_flagged_items_get_no_tasks(project, manager):
    Project.objects.filter(pk=project.pk).update(captions_per_image=2)
    project.refresh_from_db()
    keep = variant(project=project, seed=11)
    copy = variant(project=project, seed=11, kind="resized")
    tiny = ingest(project=project, data=_png((60, 60), seed=3), name="tiny.png")
    plain = variant(project=project, seed=12)
    first = caption_create(image=plain, text="A red bus waits at the corner.", source="api")
    repeat = caption_create(image=plain, text="a red bus waits at the corner", source="api")
    caption_create(image=copy, text="A red car parked by the road.", source="api")
    images_clean(image_ids=[keep.pk, copy.pk, tiny.pk, plain.pk])

    tasks_open(project=project)
    caption_tasks = dict(
        Task.objects.filter(kind=TaskKind.CAPTION).values_list("image_id", "target")
    )
    # The repeated caption does not count: plain still needs one caption.
    assert caption_tasks == {keep.pk: 2, plain.pk: 1}
    verified = set(
        Task.objects.filter(kind=TaskKind.VERIFY).values_list("pair__caption", flat=True)
    )
    assert verified == {first.pk}

    # The manager keeps the tiny image and the repeated caption: they get tasks now.
    image_flag_override(flag=ImageFlag.objects.get(image=tiny), user=manager)
    caption_flag_override(flag=CaptionFlag.objects.get(caption=repeat), user=manager)
    tasks_open(project=project)
    assert Task.objects.filter(kind=TaskKind.CAPTION, image=tiny).exists()
    assert Task.objects.filter(kind=TaskKind.VERIFY, pair__caption=repeat).exists()
    assert not Task.objects.filter(image=copy).exists()

    # Overrides survive rechecking.
    captions_check(image_ids=[plain.pk])
    assert CaptionFlag.objects.get(caption=repeat).overridden_at is not None


def test_dedup_command_does_the_whole_pass_and_reports(project):
    # No worker ran (on_commit never fires in these tests): nothing is hashed yet.
    images = [variant(project=project, seed=20, kind=k) for k in ("original", "resized")]
    lone = variant(project=project, seed=21)
    caption_create(image=lone, text="Dog.", source="api")
    out = io.StringIO()
    call_command("dedup", project.slug, stdout=out, stderr=io.StringIO())
    text = out.getvalue()
    assert "Hashed 3 images" in text and "1 cluster" in text and "1 duplicate" in text
    assert "1 caption flagged" in text
    assert clusters_of(project) and {m for _, m, _, _ in clusters_of(project)} == {
        frozenset(i.pk for i in images)
    }
    summary = project_clean(project=project)  # again: nothing left to hash, same clusters
    assert summary.images_hashed == 0 and summary.images_already_hashed == 3
    assert summary.clusters.clusters == 1


def test_images_in_other_projects_never_cluster_together(manager):
    one = factories.project(manager=manager, name="One")
    two = factories.project(manager=manager, name="Two")
    a = ingest(project=one, data=jpeg(picture(seed=30)), name="a.jpg")
    b = ingest(project=two, data=jpeg(picture(seed=30)), name="b.jpg")
    images_clean(image_ids=[a.pk, b.pk])
    assert not DuplicateCluster.objects.exists()
