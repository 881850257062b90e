"""A small project with one pair for every filter value the data browser knows."""

from types import SimpleNamespace

import pytest

from annotate.models import ItemLabel, ItemStatus
from annotate.queue.services.judgments import judgment_submit
from annotate.queue.services.leases import assignment_get
from annotate.queue.services.pool import verify_task_create
from datasets.ingest.services.uploads import caption_create
from datasets.models import (
    ClusterMember,
    DuplicateCluster,
    ImageFlag,
    Pair,
    PairKind,
    Project,
)
from tests import factories
from training.negatives.models import Proposal, ProposalSource


@pytest.fixture
def world(project, annotator):
    Project.objects.filter(pk=project.pk).update(captions_per_image=1)
    project.refresh_from_db()
    images = [factories.image(project=project, seed=seed) for seed in range(4)]
    texts = [
        "A black cat sleeps on a red sofa",
        "A brown dog runs on green grass",
        "Two black dogs play in the snow",
        "A red bus waits at the stop",
    ]
    captions = [
        caption_create(image=i, text=t, source="api") for i, t in zip(images, texts, strict=True)
    ]
    extra = caption_create(image=images[2], text="Snow covers the quiet park", source="api")
    p = [Pair.objects.get(caption=c) for c in captions]
    p2b = Pair.objects.get(caption=extra)
    pn = Pair.objects.create(image=images[3], caption=captions[0], kind=PairKind.RANDOM_NEGATIVE)

    # Judged through the real queue: the annotator answers the two verify tasks there are.
    for pair in (p[0], p[1]):
        verify_task_create(pair=pair)
    while lease := assignment_get(project=project, annotator=annotator, lookahead=0).current:
        judgment_submit(lease=lease, answer="match")

    Pair.objects.filter(pk=p[0].pk).update(label=1, confidence=0.9, split="train")
    Pair.objects.filter(pk=p[1].pk).update(label=0, confidence=0.6, split="test")
    Pair.objects.filter(pk=p[3].pk).update(label=1, confidence=0.8)
    Pair.objects.filter(pk=pn.pk).update(label=0, confidence=0.7)
    ItemLabel.objects.create(
        project=project, pair=p[0], label=1, confidence=0.9, mv_share=1.0, status=ItemStatus.AGREED
    )
    ItemLabel.objects.create(
        project=project,
        pair=p[1],
        mv_share=0.5,
        status=ItemStatus.DISPUTED,
        needs_manager=True,
    )
    ItemLabel.objects.create(project=project, pair=p[2], status=ItemStatus.PENDING)
    ImageFlag.objects.create(image=images[1], code="blank", message="Blank image")
    cluster = DuplicateCluster.objects.create(project=project, canonical=images[2], size=2, doubt=3)
    ClusterMember.objects.bulk_create(
        [
            ClusterMember(cluster=cluster, image=images[2]),
            ClusterMember(cluster=cluster, image=images[3]),
        ]
    )
    images[0].license_name = "CC BY 4.0"
    images[0].save(update_fields=["license_name"])
    images[3].source = "coco"
    images[3].save(update_fields=["source"])
    # The model says "match" to both (score ≥ 0.5): the crowd agrees on p3, not on pn.
    Proposal.objects.create(project=project, pair=pn, source=ProposalSource.RANDOM, score=0.9)
    Proposal.objects.create(project=project, pair=p[3], source=ProposalSource.RANDOM, score=0.8)
    return SimpleNamespace(
        project=project, images=images, p0=p[0], p1=p[1], p2=p[2], p2b=p2b, p3=p[3], pn=pn
    )
