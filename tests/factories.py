"""Small builders for test data: real rows through the real services, images drawn in memory."""

import io
import random

from django.contrib.auth import get_user_model
from PIL import Image as PILImage

from datasets.ingest.services.uploads import Provenance, image_ingest
from datasets.models import Membership, Project, Source
from datasets.projects.services import project_create

PASSWORD = "correct horse battery staple"


def user(username: str, **extra):
    return get_user_model().objects.create_user(username=username, password=PASSWORD, **extra)


def project(*, manager, name: str = "Project", **settings) -> Project:
    return project_create(creator=manager, name=name, **settings)


def member(*, project: Project, user, role: str) -> Membership:
    return Membership.objects.create(project=project, user=user, role=role)


def image_bytes(
    *,
    fmt: str = "JPEG",
    size: tuple[int, int] = (64, 48),
    seed: int = 0,
    mode: str = "RGB",
    **save_options,
) -> bytes:
    """A small image whose pixels depend on the seed, so different seeds give different files."""
    rng = random.Random(seed)
    picture = PILImage.new(mode, size, tuple(rng.randrange(256) for _ in range(len(mode))))
    for _ in range(6):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        colour = tuple(rng.randrange(256) for _ in range(len(mode)))
        picture.paste(colour, (x, y, min(size[0], x + 12), min(size[1], y + 12)))
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **save_options)
    return buffer.getvalue()


def image(*, project: Project, seed: int = 0, name: str | None = None, uploaded_by=None):
    result = image_ingest(
        project=project,
        data=image_bytes(seed=seed),
        provenance=Provenance(source=Source.UPLOAD, original_name=name or f"img-{seed}.jpg"),
        uploaded_by=uploaded_by,
    )
    assert result.status == "accepted", result
    return project.images.get(pk=result.image_id)


def verify_tasks(
    *, project: Project, count: int, target: int | None = None, first_seed: int = 10_000
) -> list:
    """count images, each with one caption, and a verification task for each positive pair."""
    from annotate.models import Task
    from annotate.queue.services.pool import tasks_open
    from datasets.ingest.services.uploads import caption_create

    if target is not None:
        Project.objects.filter(pk=project.pk).update(judgments_per_item=target)
        project.refresh_from_db()
    for seed in range(first_seed, first_seed + count):
        caption_create(
            image=image(project=project, seed=seed), text=f"caption {seed}", source="api"
        )
    # Captions per image is high enough that no caption tasks get in the way of these tests.
    Project.objects.filter(pk=project.pk).update(captions_per_image=1)
    project.refresh_from_db()
    tasks_open(project=project)
    return list(
        Task.objects.filter(
            project=project,
            kind="verify",
            pair__caption__text__in=[
                f"caption {seed}" for seed in range(first_seed, first_seed + count)
            ],
        ).order_by("id")
    )
