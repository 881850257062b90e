"""Model mining through the registry: a promoted model mines on the worker, with every
exclusion holding on real rows."""

import pytest
import torch

from config.celery import app
from datasets.curation.caption_dedup import caption_similarity
from datasets.ingest.services.uploads import caption_create
from datasets.models import ClusterMember, DuplicateCluster, Source
from tests import factories
from tests.training.core.synthetic import tiny_config
from tests.training.registry.conftest import ready_release
from training.negatives.models import Proposal, ProposalSource
from training.registry import services

TEXTS = [
    "A brown dog runs across a grassy field",
    "Two children play with a red ball on the beach",
    "A man rides a bicycle down a busy street",
    "A woman in a blue dress reads a book",
    "A black cat sleeps on a wooden chair",
    "Three people stand in the snow near a tree",
    "A girl jumps into a swimming pool",
    "A boy throws a frisbee in the park",
]


@pytest.fixture(autouse=True)
def roots(settings, tmp_path):
    settings.CONCORD_TRAIN_CONFIG = tiny_config(tmp_path, epochs=1).to_dict()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def eager_celery():
    """Tasks run inline where they are sent: the promotion's mining happens in the test."""
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_a_promotion_mines_with_the_new_model_and_keeps_the_exclusions(
    project, settings, eager_celery, django_capture_on_commit_callbacks
):
    project.negatives_random_per_image = 1
    project.negatives_text_edit_per_image = 1
    project.negatives_model_per_image = 3
    project.mining_margin = 2.0  # no cap: the tiny model's scores say little
    project.save()
    images = []
    for seed, text in enumerate(TEXTS):
        image = factories.image(project=project, seed=seed)
        caption_create(image=image, text=text, source=Source.API)
        images.append(image)
    # Image 1 nearly repeats image 0's caption; images 2 and 3 are near-duplicates.
    caption_create(image=images[1], text="A brown dog runs across the grassy field", source="api")
    cluster = DuplicateCluster.objects.create(project=project, canonical=images[2], size=2, doubt=3)
    ClusterMember.objects.create(cluster=cluster, image=images[2])
    ClusterMember.objects.create(cluster=cluster, image=images[3])

    ready_release(project, settings)
    with django_capture_on_commit_callbacks(execute=True):
        version = services.model_train(version_id=services.model_request(project=project).pk)
    assert version.is_promoted

    everything = Proposal.objects.filter(project=project).select_related("pair__caption")
    # Random and text-edit proposals are scored by the same model, for the manager's histogram.
    assert {p.source for p in everything} == set(ProposalSource)
    assert all(p.score is not None and p.model_version_id == version.pk for p in everything)
    mined = [p for p in everything if p.source == ProposalSource.MODEL]
    eligible = [image for image in images if image.pk != images[3].pk]
    own = {
        image.pk: list(image.captions.values_list("text", flat=True))
        + (list(images[3].captions.values_list("text", flat=True)) if image == images[2] else [])
        for image in eligible
    }
    per_image = {}
    for proposal in mined:
        pair = proposal.pair
        per_image[pair.image_id] = per_image.get(pair.image_id, 0) + 1
        assert proposal.model_version_id == version.pk and proposal.score is not None
        assert pair.image_id != images[3].pk  # a held-back duplicate gets no proposals
        assert pair.caption.image_id != pair.image_id
        assert pair.caption.image_id != images[3].pk  # its captions are not candidates
        assert not {pair.image_id, pair.caption.image_id} <= {images[2].pk, images[3].pk}
        assert all(caption_similarity(a=pair.caption.text, b=o) < 0.8 for o in own[pair.image_id])
    assert per_image == {image.pk: 3 for image in eligible}
    ranks = sorted(p.rank for p in mined if p.pair.image_id == images[0].pk)
    assert all(p.rank is None for p in everything if p.source != ProposalSource.MODEL)
    assert ranks[0] >= 0 and len(set(ranks)) == 3
    # Mining again with the same model adds nothing: the quota counts pending proposals.
    from training.negatives.services.proposals import model_propose

    assert model_propose(project=project) == 0
