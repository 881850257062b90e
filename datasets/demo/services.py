"""The demo project: two accounts and a project of synthetic scenes, made by `manage.py seed_demo`."""

import random
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction

from annotate.queue.services.pool import tasks_open
from datasets.demo.synthetic import generate
from datasets.ingest.services.imports import caption_import_key
from datasets.ingest.services.uploads import Provenance, image_ingest
from datasets.models import Caption, Membership, Pair, PairKind, Project, Role, Source
from datasets.projects.services import project_create

DEMO_SLUG = "shapes-demo"
# The caption rule the demo project enforces (annotate.queue.caption_rules checks it on every
# caption an annotator writes); its guidelines are written from these values, so the two agree.
DEMO_CAPTION_RULES = {
    "caption_min_words": 4,
    "caption_max_words": 20,
    "caption_banned_openings": "\n".join(
        ("There is", "There are", "This is", "This image", "An image of", "A picture of")
    ),
}


def demo_guidelines(*, min_words: int, max_words: int, banned_openings: list[str]) -> str:
    """The demo project's guidelines (Markdown) stating the caption rule it enforces: the word
    limits and every banned opening, as the project's settings hold them."""
    openings = [f"“{opening}”" for opening in banned_openings]
    if len(openings) > 1:
        said = ", ".join(openings[:-1]) + " or " + openings[-1]
    else:
        said = "".join(openings)
    lines = [
        "Describe **what you see**: the shapes, their colours and where they are relative to "
        "each other.",
        "",
        f"* Write one plain sentence, {min_words} to {max_words} words.",
    ]
    if said:
        lines.append(f"* Do not start with {said}: describe the scene directly.")
    lines.append(
        "* When verifying, answer **match** only if every part of the caption is true of the image."
    )
    return "\n".join(lines) + "\n"


def demo_guidelines_for(project: Project) -> str:
    """:func:`demo_guidelines` for the rule ``project`` enforces now."""
    return demo_guidelines(
        min_words=project.caption_min_words,
        max_words=project.caption_max_words,
        banned_openings=project.banned_openings,
    )


@dataclass(frozen=True)
class DemoAccount:
    username: str
    password: str
    role: str


DEMO_ACCOUNTS = (
    DemoAccount("manager", "concord-manager", Role.MANAGER),
    DemoAccount("annotator", "concord-annotator", Role.ANNOTATOR),
)


def demo_accounts_ensure() -> None:
    """Create the demo accounts if missing; the manager may create projects."""
    user_model = get_user_model()
    add_project = Permission.objects.get(codename="add_project", content_type__app_label="datasets")
    for account in DEMO_ACCOUNTS:
        user, created = user_model.objects.get_or_create(username=account.username)
        if created:
            user.set_password(account.password)
            user.save()
        if account.role == Role.MANAGER:
            user.user_permissions.add(add_project)


def demo_project_seed(*, images: int, seed: int = 0, on_image=None) -> Project:
    """The demo project with `images` synthetic scenes and their true captions, made idempotently."""
    demo_accounts_ensure()
    user_model = get_user_model()
    manager = user_model.objects.get(username=DEMO_ACCOUNTS[0].username)
    project = Project.objects.filter(slug=DEMO_SLUG).first()
    if project is None:
        project = project_create(
            creator=manager,
            name="Shapes demo",
            description="Synthetic scenes of coloured shapes with true captions.",
            **DEMO_CAPTION_RULES,
        )
        project.guidelines = demo_guidelines_for(project)
        # project_create derives the slug from the name; the demo keeps a fixed one. Its
        # captions are true by construction, so they count as positives unjudged (and can be
        # the known positive of challenge items).
        Project.objects.filter(pk=project.pk).update(
            slug=DEMO_SLUG, trusted_sources=[Source.DEMO], guidelines=project.guidelines
        )
        project.refresh_from_db()
    for account in DEMO_ACCOUNTS[1:]:
        Membership.objects.get_or_create(
            project=project,
            user=user_model.objects.get(username=account.username),
            defaults={"role": account.role},
        )
    image_ids: list[int] = []
    for index, (scene, data) in enumerate(generate(images, seed=seed)):
        result = image_ingest(
            project=project,
            data=data,
            provenance=Provenance(
                source=Source.DEMO,
                original_name=f"scene-{seed}-{index:06d}.jpg",
                license_name="CC0 1.0 (generated)",
                license_url="https://creativecommons.org/publicdomain/zero/1.0/",
            ),
        )
        if result.status != "rejected":
            _captions_ensure(image_id=result.image_id, texts=scene.captions())
            image_ids.append(result.image_id)
        if on_image is not None:
            on_image()
    _random_negatives_ensure(image_ids=image_ids, seed=seed)
    tasks_open(project=project)
    # Text-edit and random proposals as challenge items (model mining waits for a model).
    from training.negatives.services.mining import mining_run

    mining_run(project=project, seed=seed, model=False)
    return project


def _random_negatives_ensure(*, image_ids: list[int], seed: int) -> None:
    """Pair each scene with a caption of another scene, so verifiers see true and false pairs."""
    rng = random.Random(seed)
    first_caption: dict[int, tuple[int, str]] = {}
    own_texts: dict[int, set[str]] = {image_id: set() for image_id in image_ids}
    rows = Caption.objects.filter(image_id__in=image_ids).order_by("id")
    for caption_id, image_id, text in rows.values_list("id", "image_id", "text"):
        first_caption.setdefault(image_id, (caption_id, text))
        own_texts[image_id].add(text)
    pairs = []
    for image_id in image_ids:
        other = rng.choice(image_ids)
        if other == image_id or other not in first_caption:
            continue
        caption_id, text = first_caption[other]
        if text not in own_texts[image_id]:  # the same scene twice would make a true pair
            pairs.append(
                Pair(image_id=image_id, caption_id=caption_id, kind=PairKind.RANDOM_NEGATIVE)
            )
    Pair.objects.bulk_create(pairs, ignore_conflicts=True)


@transaction.atomic
def _captions_ensure(*, image_id: int, texts: list[str]) -> None:
    keys = {caption_import_key(text, 0): text for text in texts}
    existing = set(
        Caption.objects.filter(image_id=image_id, import_key__in=keys).values_list(
            "import_key", flat=True
        )
    )
    captions = Caption.objects.bulk_create(
        [
            Caption(image_id=image_id, text_raw=text, text=text, source=Source.DEMO, import_key=key)
            for key, text in keys.items()
            if key not in existing
        ]
    )
    Pair.objects.bulk_create(
        [Pair(image_id=image_id, caption_id=c.pk, kind=PairKind.POSITIVE) for c in captions]
    )


def demo_exists() -> bool:
    return Project.objects.filter(slug=DEMO_SLUG).exists()
