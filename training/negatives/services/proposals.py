"""Proposing negatives for a project's images from three sources, within per-source quotas.

* random: captions of other images, outside the image's duplicate cluster;
* model: the captions of other images the promoted model scores highest (training.core.mining);
* text edits: word edits of the image's own captions (training.negatives.text_edits).

Quotas are per image and source and count *pending* proposals: each run tops an image up to
the project's quota, so judged proposals make room for new ones and a rerun with nothing
judged adds nothing. Only canonical, unflagged images get proposals, and only their unflagged
captions are candidates. A candidate is never a caption of the image's own cluster, nor one
whose text equals or nearly equals one of the cluster's own captions (the project's caption
similarity threshold; text edits, near by design, only have to differ).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from django.db import transaction

from config.storage import MEDIA, StorageDataStore, scratch_dir
from datasets.curation.caption_dedup import caption_key, caption_similarity
from datasets.curation.services.cleaning import captions_held_back, images_held_back
from datasets.ingest.captions import normalize_caption
from datasets.models import Caption, ClusterMember, Image, Pair, PairKind, Project, Source
from training.negatives.models import Outcome, Proposal, ProposalSource
from training.negatives.services.outcomes import NEGATIVE_KIND
from training.negatives.text_edits import text_edits, text_edits_available
from training.registry.models import ModelVersion
from training.registry.services import checkpoint_local

logger = logging.getLogger(__name__)

NO_PROMOTED_MODEL = "Project {slug} has no promoted model to mine with; train one first."
_BATCH = 1000
# Random draws tried per wanted proposal before giving up on an image.
_RANDOM_TRIES = 20
# Extra candidates the model search keeps per image, for those the text checks then drop.
_MINING_SLACK = 8


@dataclass(frozen=True)
class CaptionRow:
    id: int
    image_id: int
    text: str


@dataclass
class Corpus:
    """What the sources draw from: eligible images, candidate captions, each cluster's texts."""

    image_ids: list[int]
    group: dict[int, int]
    candidates: list[CaptionRow]
    own_texts: dict[int, list[str]] = field(default_factory=dict)
    own_keys: dict[int, set[str]] = field(default_factory=dict)
    paired: set[tuple[int, int]] = field(default_factory=set)

    def near_own(self, image_id: int, text: str, threshold: float) -> bool:
        if caption_key(text=text) in self.own_keys.get(image_id, ()):
            return True
        return any(
            caption_similarity(a=text, b=own) >= threshold
            for own in self.own_texts.get(image_id, ())
        )


@dataclass(frozen=True)
class ProposalCounts:
    random: int = 0
    model: int = 0
    text_edit: int = 0

    @property
    def total(self) -> int:
        return self.random + self.model + self.text_edit


def corpus_load(*, project: Project) -> Corpus:
    images = Image.objects.filter(project=project).exclude(images_held_back())
    image_ids = list(images.order_by("pk").values_list("pk", flat=True))
    members = ClusterMember.objects.filter(cluster__project=project).values_list(
        "image_id", "cluster_id"
    )
    # Images outside any cluster are a group of their own (negative ids cannot clash).
    group = {image_id: -image_id for image_id in image_ids}
    cluster_of = dict(members)
    group.update(
        {image_id: cluster_of[image_id] for image_id in image_ids if image_id in cluster_of}
    )
    by_group: dict[int, list[str]] = {}
    all_captions = (
        Caption.objects.filter(image__project=project)
        .exclude(source=Source.TEXT_EDIT)
        .values_list("image_id", "text")
    )
    for image_id, text in all_captions.iterator(chunk_size=5000):
        key = cluster_of.get(image_id, -image_id)
        by_group.setdefault(key, []).append(text)
    own_texts = {image_id: by_group.get(group[image_id], []) for image_id in image_ids}
    candidates = [
        CaptionRow(*row)
        for row in Caption.objects.filter(image_id__in=images.values("pk"))
        .exclude(source=Source.TEXT_EDIT)
        .exclude(captions_held_back())
        .order_by("pk")
        .values_list("pk", "image_id", "text")
        .iterator(chunk_size=5000)
    ]
    paired = set(Pair.objects.filter(image__project=project).values_list("image_id", "caption_id"))
    return Corpus(
        image_ids=image_ids,
        group=group,
        candidates=candidates,
        own_texts=own_texts,
        own_keys={i: {caption_key(text=t) for t in texts} for i, texts in own_texts.items()},
        paired=paired,
    )


def pending_counts(*, project: Project, source: ProposalSource) -> Counter[int]:
    rows = Proposal.objects.filter(
        project=project, source=source, outcome=Outcome.PENDING
    ).values_list("pair__image_id", flat=True)
    return Counter(rows.iterator(chunk_size=5000))


def random_propose(
    *, project: Project, seed: int | None = None, corpus: Corpus | None = None
) -> int:
    """Captions of other images, drawn uniformly, up to the random quota per image."""
    quota = project.negatives_random_per_image
    if quota == 0:
        return 0
    corpus = corpus or corpus_load(project=project)
    if not corpus.candidates:
        return 0
    rng = random.Random(seed)
    pending = pending_counts(project=project, source=ProposalSource.RANDOM)
    threshold = project.caption_similarity_threshold
    made: list[tuple[int, CaptionRow, dict]] = []
    for image_id in corpus.image_ids:
        need = quota - pending[image_id]
        for _ in range(_RANDOM_TRIES * max(0, need)):
            if need <= 0:
                break
            row = corpus.candidates[rng.randrange(len(corpus.candidates))]
            if (
                corpus.group.get(row.image_id) == corpus.group[image_id]
                or (image_id, row.id) in corpus.paired
                or corpus.near_own(image_id, row.text, threshold)
            ):
                continue
            corpus.paired.add((image_id, row.id))
            made.append((image_id, row, {}))
            need -= 1
    return _create(project=project, source=ProposalSource.RANDOM, made=made)


def text_edit_propose(
    *, project: Project, seed: int | None = None, corpus: Corpus | None = None
) -> int:
    """Word edits of each image's own captions, up to the text-edit quota per image."""
    quota = project.negatives_text_edit_per_image
    if quota == 0 or not text_edits_available(project.language):
        return 0
    corpus = corpus or corpus_load(project=project)
    rng = random.Random(seed)
    pending = pending_counts(project=project, source=ProposalSource.TEXT_EDIT)
    existing: dict[int, set[str]] = {}
    for image_id, text in Caption.objects.filter(
        image__project=project, source=Source.TEXT_EDIT
    ).values_list("image_id", "text"):
        existing.setdefault(image_id, set()).add(caption_key(text=text))
    own_rows: dict[int, list[CaptionRow]] = {}
    for row in corpus.candidates:
        own_rows.setdefault(row.image_id, []).append(row)
    made: list[tuple[int, str, str]] = []
    for image_id in corpus.image_ids:
        need = quota - pending[image_id]
        rows = list(own_rows.get(image_id, []))
        rng.shuffle(rows)
        taken = existing.setdefault(image_id, set())
        for row in rows:
            if need <= 0:
                break
            edits = text_edits(row.text, rng=rng, language=project.language)
            # Any family may come first: shuffled, so that one kind of edit does not dominate.
            rng.shuffle(edits)
            for edit in edits:
                key = caption_key(text=edit.text)
                if key in corpus.own_keys.get(image_id, ()) or key in taken:
                    continue
                taken.add(key)
                made.append((image_id, edit.text, str(edit.edit_type)))
                need -= 1
                break
    return _create_text_edits(project=project, made=made)


def model_propose(
    *,
    project: Project,
    version: ModelVersion | None = None,
    corpus: Corpus | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """The captions of other images the model scores highest for each image (training.core.mining),
    up to the model quota per image; each records its score, rank and the model version."""
    from training.core.mining import mine_hard_negatives

    if version is None:
        version = ModelVersion.objects.filter(project=project, is_promoted=True).first()
    if version is None or not version.checkpoint:
        raise ValueError(NO_PROMOTED_MODEL.format(slug=project.slug))
    quota = project.negatives_model_per_image
    if quota == 0:
        return 0
    corpus = corpus or corpus_load(project=project)
    if not corpus.image_ids or not corpus.candidates:
        return 0
    images = {
        image.pk: image
        for image in Image.objects.filter(pk__in=corpus.image_ids).only("pk", "sha256", "file")
    }
    embedded = _embed(
        version=version,
        images=[images[i] for i in corpus.image_ids],
        texts=[row.text for row in corpus.candidates],
    )
    row_of = {image_id: n for n, image_id in enumerate(corpus.image_ids)}
    caption_image = np.array([row_of[row.image_id] for row in corpus.candidates], dtype=np.int64)
    groups = np.array([corpus.group[i] for i in corpus.image_ids], dtype=np.int64)
    key_ids: dict[str, int] = {}
    caption_text_group = np.array(
        [key_ids.setdefault(caption_key(text=row.text), len(key_ids)) for row in corpus.candidates],
        dtype=np.int64,
    )
    own_groups = [
        sorted({key_ids[k] for k in corpus.own_keys.get(i, ()) if k in key_ids})
        for i in corpus.image_ids
    ]
    width = max((len(g) for g in own_groups), default=0) or 1
    image_text_groups = np.full((len(own_groups), width), -1, dtype=np.int64)
    for n, found in enumerate(own_groups):
        image_text_groups[n, : len(found)] = found
    pending = pending_counts(project=project, source=ProposalSource.MODEL)
    mined = mine_hard_negatives(
        image_emb=embedded.images,
        caption_emb=embedded.texts,
        caption_image=caption_image,
        image_group=groups,
        caption_text_group=caption_text_group,
        own_text_groups=image_text_groups,
        margin=project.mining_margin,
        k=quota + _MINING_SLACK,
        progress=progress,
    )
    threshold = project.caption_similarity_threshold
    taken: Counter[int] = Counter()
    made: list[tuple[int, CaptionRow, dict]] = []
    for n, c, score, rank in zip(
        mined.image_index, mined.caption_index, mined.score, mined.rank, strict=True
    ):
        image_id, row = corpus.image_ids[int(n)], corpus.candidates[int(c)]
        if taken[image_id] >= quota - pending[image_id]:
            continue
        if (image_id, row.id) in corpus.paired or corpus.near_own(image_id, row.text, threshold):
            continue
        corpus.paired.add((image_id, row.id))
        taken[image_id] += 1
        made.append(
            (image_id, row, {"score": float(score), "rank": int(rank), "model_version": version})
        )
    return _create(project=project, source=ProposalSource.MODEL, made=made)


def proposals_make(
    *,
    project: Project,
    seed: int | None = None,
    model: bool = True,
    check: Callable[[str], None] | None = None,
) -> ProposalCounts:
    """Every source in turn (the model one when a model is promoted), on one snapshot.

    ``check(stage)`` is called before each source; raising from it stops the run between two
    sources (each source's proposals are written in whole batches, so none is half-written)."""
    check = check or (lambda stage: None)
    corpus = corpus_load(project=project)
    mined = 0
    promoted = ModelVersion.objects.filter(project=project, is_promoted=True).first()
    if model and promoted is not None:
        check("model proposals")
        mined = model_propose(project=project, version=promoted, corpus=corpus)
    check("random proposals")
    random_made = random_propose(project=project, seed=seed, corpus=corpus)
    check("text-edit proposals")
    counts = ProposalCounts(
        random=random_made,
        model=mined,
        text_edit=text_edit_propose(project=project, seed=seed, corpus=corpus),
    )
    if model and promoted is not None and promoted.checkpoint:
        check("scores")
        proposals_score(project=project, version=promoted)
    return counts


def proposals_score(*, project: Project, version: ModelVersion) -> int:
    """Score the proposals that have no model score yet (random and text-edit ones) with
    ``version``, so that the manager compares the model's scores across every source."""

    unscored = list(
        Proposal.objects.filter(project=project, score__isnull=True)
        .select_related("pair__image", "pair__caption")
        .order_by("pk")
    )
    if not unscored:
        return 0
    images = {p.pair.image_id: p.pair.image for p in unscored}
    texts = {p.pair.caption_id: p.pair.caption.text for p in unscored}
    image_ids, caption_ids = list(images), list(texts)
    embedded = _embed(
        version=version,
        images=[images[i] for i in image_ids],
        texts=[texts[c] for c in caption_ids],
    )
    image_row = {image_id: n for n, image_id in enumerate(image_ids)}
    caption_row = {caption_id: n for n, caption_id in enumerate(caption_ids)}
    for proposal in unscored:
        vector = embedded.images[image_row[proposal.pair.image_id]]
        text = embedded.texts[caption_row[proposal.pair.caption_id]]
        proposal.score = float(np.dot(vector, text))
        proposal.model_version = version
    Proposal.objects.bulk_update(unscored, ["score", "model_version"], batch_size=500)
    return len(unscored)


def _embed(*, version: ModelVersion, images: list[Image], texts: list[str]):
    """Embed images and captions with ``version``'s checkpoint, read from storage: the
    checkpoint and the images the embedding cache lacks are fetched into this worker's scratch
    cache, and the cache's shards are shared through the models storage."""
    from training.core.data import text_key
    from training.core.embedding import embed_with_checkpoint

    store = StorageDataStore(images={image.sha256: (MEDIA, image.file.name) for image in images})
    return embed_with_checkpoint(
        checkpoint_local(version=version),
        image_keys=[image.sha256 for image in images],
        image_paths=[image.file.name for image in images],
        text_keys=[text_key(text) for text in texts],
        texts=texts,
        cache_dir=None if _has_cache_dir(version) else scratch_dir("embeddings"),
        store=store,
    )


def _has_cache_dir(version: ModelVersion) -> bool:
    return bool((version.config or {}).get("cache_dir"))


def _create(
    *, project: Project, source: ProposalSource, made: list[tuple[int, CaptionRow, dict]]
) -> int:
    created = 0
    for batch in _batches(made):
        with transaction.atomic():
            pairs = Pair.objects.bulk_create(
                Pair(image_id=image_id, caption_id=row.id, kind=NEGATIVE_KIND[source])
                for image_id, row, _ in batch
            )
            Proposal.objects.bulk_create(
                Proposal(project=project, pair=pair, source=source, **extra)
                for pair, (_, _, extra) in zip(pairs, batch, strict=True)
            )
        created += len(batch)
    return created


def _create_text_edits(*, project: Project, made: list[tuple[int, str, str]]) -> int:
    created = 0
    for batch in _batches(made):
        with transaction.atomic():
            captions = Caption.objects.bulk_create(
                Caption(
                    image_id=image_id,
                    text_raw=text,
                    text=normalize_caption(text),
                    source=Source.TEXT_EDIT,
                )
                for image_id, text, _ in batch
            )
            pairs = Pair.objects.bulk_create(
                Pair(image_id=c.image_id, caption=c, kind=PairKind.TEXT_EDIT_NEGATIVE)
                for c in captions
            )
            Proposal.objects.bulk_create(
                Proposal(
                    project=project, pair=pair, source=ProposalSource.TEXT_EDIT, edit_type=edit
                )
                for pair, (_, _, edit) in zip(pairs, batch, strict=True)
            )
        created += len(batch)
    return created


def _batches(items: list) -> Iterable[list]:
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]
