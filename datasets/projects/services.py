"""Creating and configuring projects and their membership."""

from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils.text import slugify

from datasets.models import Membership, Project, Role, Source
from datasets.projects.signals import member_removed

LAST_MANAGER = "A project needs at least one manager; make someone else a manager first."

# The settings a manager sets on a project, grouped as the settings page shows them; shared by
# the form, the API serializer and the service.
SETTINGS_GROUPS: dict[str, tuple[str, ...]] = {
    "Project": ("name", "description", "language", "guidelines"),
    "Annotation": (
        "captions_per_image",
        "judgments_per_item",
        "max_judgments_per_item",
        "gold_rate",
        "challenge_rate",
        "agreement_threshold",
        "caption_min_words",
        "caption_max_words",
        "caption_banned_openings",
    ),
    "Duplicates and quality": (
        "near_duplicate_threshold",
        "caption_similarity_threshold",
        "quality_image_min_width",
        "quality_image_min_height",
        "quality_image_max_aspect_ratio",
        "quality_image_min_std",
        "quality_caption_min_words",
        "quality_caption_max_words",
        "quality_caption_min_letter_ratio",
        "quality_caption_max_token_share",
        "quality_caption_repeat_min_count",
    ),
    "Hard negatives": (
        "negatives_random_per_image",
        "negatives_model_per_image",
        "negatives_text_edit_per_image",
        "mining_margin",
    ),
    "Releases": (
        "split_train",
        "split_val",
        "split_test",
        "balance_method",
        "balance_ratio",
        "trusted_sources",
    ),
}
PROJECT_SETTINGS = tuple(field for group in SETTINGS_GROUPS.values() for field in group)
SPLITS_NOT_ONE = "Train, validation and test shares must add up to 1."
MAX_BELOW_TARGET = "Must be at least the judgments per item."
NOT_A_SHARE = "Enter a value between 0 and 1."
WORDS_RANGE = "Must be at least the minimum."
MARGIN_RANGE = "Enter a margin between 0 and 2 (scores are cosine similarities)."
RATES_OVER_ONE = "Gold and challenge rates together cannot exceed 1."
UNKNOWN_SOURCES = "Unknown source(s): {sources}."
AT_LEAST = "Must be at least {low}."
AT_MOST = "Must be at most {high}."
ABOVE_ZERO = "Must be greater than 0."
_SHARES = (
    "gold_rate",
    "challenge_rate",
    "agreement_threshold",
    "split_train",
    "split_val",
    "split_test",
    "caption_similarity_threshold",
    "quality_caption_min_letter_ratio",
    "quality_caption_max_token_share",
)
# Bounds the database's check constraints hold (datasets.models.Project), said per field here
# so that a bad value is a message on its field, never a constraint error.
_AT_LEAST = {
    "captions_per_image": 1,
    "judgments_per_item": 1,
    "caption_min_words": 1,
    "quality_image_max_aspect_ratio": 1,
}
_AT_MOST = {
    "near_duplicate_threshold": 64,
    # Sane limits (QA finding 8), not the database's: each is far past any use, and each keeps
    # a mistyped value from turning into work without end (a million judgments per pair, a
    # million proposals per image) or a page no one can read.
    "captions_per_image": 50,
    "judgments_per_item": 50,
    "max_judgments_per_item": 100,
    "caption_min_words": 500,
    "caption_max_words": 500,
    "quality_image_min_width": 20_000,
    "quality_image_min_height": 20_000,
    "quality_image_max_aspect_ratio": 1_000,
    # The spread of grey levels 0–255 is at most 127.5.
    "quality_image_min_std": 128,
    "quality_caption_min_words": 500,
    "quality_caption_max_words": 500,
    "quality_caption_repeat_min_count": 10_000,
    "negatives_random_per_image": 50,
    "negatives_model_per_image": 50,
    "negatives_text_edit_per_image": 50,
    "balance_ratio": 1_000,
}
# Longest text settings, in characters (the guidelines are Markdown shown on every task).
_MAX_CHARS = {"description": 5_000, "guidelines": 50_000, "caption_banned_openings": 10_000}
TOO_LONG = "At most {limit} characters."
# Rules over several settings report on one of them; these are the others each one involves,
# so that an edge can say it on the setting the request changed.
RELATED_SETTINGS: dict[str, tuple[str, ...]] = {
    "caption_max_words": ("caption_min_words",),
    "max_judgments_per_item": ("judgments_per_item",),
    "challenge_rate": ("gold_rate",),
    "split_test": ("split_train", "split_val"),
}
_ABOVE_ZERO = ("balance_ratio",)


def settings_problems(*, values: Mapping[str, Any]) -> dict[str, str]:
    """What is wrong with a complete set of project settings, by field; empty when all is well.

    The form and the API both call this with the project's current values overlaid by the new
    ones, so the rules that span several settings live in one place.
    """
    problems = {name: NOT_A_SHARE for name in _SHARES if not 0 <= values[name] <= 1}
    problems.update(
        {name: AT_LEAST.format(low=low) for name, low in _AT_LEAST.items() if values[name] < low}
    )
    problems.update(
        {name: AT_MOST.format(high=high) for name, high in _AT_MOST.items() if values[name] > high}
    )
    problems.update({name: ABOVE_ZERO for name in _ABOVE_ZERO if not values[name] > 0})
    problems.update(
        {
            name: TOO_LONG.format(limit=limit)
            for name, limit in _MAX_CHARS.items()
            if len(values[name] or "") > limit
        }
    )
    if (
        "caption_min_words" not in problems
        and values["caption_min_words"] > values["caption_max_words"]
    ):
        problems["caption_max_words"] = WORDS_RANGE
    if values["max_judgments_per_item"] < values["judgments_per_item"]:
        problems["max_judgments_per_item"] = MAX_BELOW_TARGET
    if values["gold_rate"] + values["challenge_rate"] > 1:
        problems.setdefault("challenge_rate", RATES_OVER_ONE)
    if not 0 <= values["mining_margin"] <= 2:
        problems["mining_margin"] = MARGIN_RANGE
    if abs(values["split_train"] + values["split_val"] + values["split_test"] - 1) > 1e-6:
        problems.setdefault("split_test", SPLITS_NOT_ONE)
    unknown = sorted(set(map(str, values["trusted_sources"] or [])) - set(Source.values))
    if unknown:
        problems["trusted_sources"] = UNKNOWN_SOURCES.format(sources=", ".join(map(str, unknown)))
    return problems


class MembershipError(ValueError):
    pass


@transaction.atomic
def project_create(*, creator: AbstractBaseUser, name: str, **settings: object) -> Project:
    """Create a project with a unique slug; its creator becomes its first manager."""
    project = Project.objects.create(
        name=name, slug=_unique_slug(name), created_by=creator, **settings
    )
    Membership.objects.create(project=project, user=creator, role=Role.MANAGER)
    return project


def project_update(*, project: Project, **changes: object) -> Project:
    for field, value in changes.items():
        if field not in PROJECT_SETTINGS:
            raise TypeError(f"{field} is not a project setting")
        setattr(project, field, value)
    project.save(update_fields=[*changes, "updated_at"])
    return project


@transaction.atomic
def membership_set(*, project: Project, user: AbstractBaseUser, role: str) -> Membership:
    """Add the user to the project with this role, or change their role."""
    membership = Membership.objects.select_for_update().filter(project=project, user=user).first()
    if membership is None:
        return Membership.objects.create(project=project, user=user, role=role)
    if membership.role == Role.MANAGER and role != Role.MANAGER:
        _ensure_another_manager(project=project, user=user)
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, project: Project, user: AbstractBaseUser) -> None:
    """Remove the user from the project (never its last manager: MembershipError). Every path of
    the project closes to them at once; ``member_removed`` is sent once this commits."""
    membership = Membership.objects.select_for_update().filter(project=project, user=user).first()
    if membership is None:
        return
    if membership.role == Role.MANAGER:
        _ensure_another_manager(project=project, user=user)
    membership.delete()
    # Their access ends with the membership (datasets.access); what they held goes back after.
    transaction.on_commit(
        lambda: member_removed.send(sender=Membership, project=project, user=user)
    )


def _ensure_another_manager(*, project: Project, user: AbstractBaseUser) -> None:
    others = Membership.objects.filter(project=project, role=Role.MANAGER).exclude(user=user)
    if not others.exists():
        raise MembershipError(LAST_MANAGER)


def _unique_slug(name: str) -> str:
    base = slugify(name)[:70] or "project"
    slug, counter = base, 2
    while Project.objects.filter(slug=slug).exists():
        slug, counter = f"{base}-{counter}", counter + 1
    return slug
