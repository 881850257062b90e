"""Taking answers back: submit (idempotent, late answers kept when a slot is free), and undo."""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from annotate.models import Answer, ChallengeOption, Judgment, Lease, LeaseState, Task, TaskKind
from annotate.queue.caption_rules import CaptionCheck, CaptionRules, caption_check
from annotate.queue.services import challenges
from annotate.queue.services.leases import refresh_open, retry_transient, take_slot
from annotate.queue.services.pool import verify_task_create
from config.jobs import job_request
from datasets.ingest.services.uploads import caption_create
from datasets.models import Caption, Project, Source

LEASE_SKIPPED = "You skipped this item, so this answer was not recorded."
SLOT_TAKEN = (
    "Your time on this item ran out and other annotators have since completed it, so this answer "
    "was not recorded. Nothing else was lost."
)
WRONG_ANSWER_KIND = "That answer does not fit this kind of task."
UNDO_NOTHING = "There is no recent answer to undo."
UNDO_TOO_LATE = "Answers can be undone for {seconds} seconds after submitting."
UNDO_UNDER_REVIEW = "Someone is already reviewing that caption, so it can no longer be undone."
ANSWERED_DIFFERENTLY = (
    "This task was already answered ({first}); a different answer to the same lease is not "
    "recorded. Undo the first answer to change it."
)


class SubmitRefused(Exception):
    """The answer was not recorded; the message says why, and any text written is handed back."""

    def __init__(self, message: str, *, problems: list[str] | None = None, text: str = ""):
        super().__init__(message)
        self.problems = problems or []
        self.text = text


class AnsweredDifferently(SubmitRefused):
    """The lease was answered before with something else; ``first`` is the recorded judgment."""

    def __init__(self, message: str, *, first: Judgment, text: str = ""):
        super().__init__(message, text=text)
        self.first = first


@dataclass(frozen=True)
class SubmitResult:
    judgment: Judgment
    created: bool  # False when the same submission arrived before


@retry_transient
def judgment_submit(
    *,
    lease: Lease,
    answer: str,
    caption_text: str = "",
    image_unusable: bool = False,
    caption_offensive: bool = False,
    marked: Collection[int] = (),
    now: datetime | None = None,
) -> SubmitResult:
    """Record the annotator's answer on a lease; submitting the same answer again returns the
    first judgment (``created`` False), a different one raises AnsweredDifferently (nothing
    changes: a retried request must never rewrite an answer others may already have counted).

    A lease that expired is still honoured if its task has a free slot; otherwise SubmitRefused
    says so plainly (with the caption text, if any, so the annotator keeps what they wrote).
    ``marked`` are the ids of the options marked as matching, for a challenge item.
    """
    now = now or timezone.now()
    with transaction.atomic():
        # One query locks the task row, then the lease row (the order every path takes).
        lease = (
            Lease.objects.select_for_update(of=("task", "self"))
            .select_related("task")
            .get(pk=lease.pk)
        )
        task = lease.task
        # A lease is SUBMITTED exactly while its judgment exists (this function and undo change
        # both under the lease lock), so the first submission is looked up only for a repeat.
        if lease.state == LeaseState.SUBMITTED:
            first = Judgment.objects.select_related("caption").get(lease=lease)
            again = _Submission(
                answer=answer,
                caption_text=caption_text,
                image_unusable=image_unusable,
                caption_offensive=caption_offensive,
                marked=frozenset(marked),
            )
            if again != _submission_of(first):
                raise AnsweredDifferently(
                    ANSWERED_DIFFERENTLY.format(first=_describe(first)),
                    first=first,
                    text=caption_text,
                )
            return SubmitResult(judgment=first, created=False)
        _check_answer_kind(task=task, answer=answer)
        if lease.state == LeaseState.SKIPPED:
            raise SubmitRefused(LEASE_SKIPPED, text=caption_text)
        # A lease that holds no slot on a task that is not gold: expired, or handed out as gold
        # in the moment the pair left gold (the gold hand-out takes no row lock). Its answer
        # must count like any other, so it takes a slot first, or is refused when none is left;
        # otherwise the task's judgment_count would lag its judgments and over-assign it.
        if lease.state == LeaseState.EXPIRED or (not lease.holds_slot and not task.is_gold):
            if not task.is_gold and task.judgment_count + task.lease_count >= task.target:
                raise SubmitRefused(SLOT_TAKEN, text=caption_text)
            if not task.is_gold:
                take_slot(task=task)
                lease.holds_slot = True
        caption = None
        options: list[ChallengeOption] = []
        if task.kind == TaskKind.CAPTION:
            caption = _caption_write(task=task, text=caption_text, author=lease.annotator)
        elif task.kind == TaskKind.CHALLENGE:
            try:
                options = challenges.marks_check(task=task, marked=marked)
            except challenges.MarksRefused as refused:
                raise SubmitRefused(str(refused)) from None
        judgment = Judgment.objects.create(
            task=task,
            lease=lease,
            annotator_id=lease.annotator_id,
            answer=answer,
            caption=caption,
            image_unusable=image_unusable,
            caption_offensive=caption_offensive,
            seconds=max(0.0, (now - (lease.shown_at or lease.created_at)).total_seconds()),
            gold_correct=_gold_correct(task=task, answer=answer, options=options, marked=marked),
        )
        if options:
            challenges.marks_write(judgment=judgment, options=options, marked=marked)
        if lease.holds_slot:
            task.lease_count -= 1
            task.judgment_count += 1
            refresh_open(task)
            task.save(update_fields=["lease_count", "judgment_count", "is_open"])
        elif task.is_gold:
            task.judgment_count += 1
            task.save(update_fields=["judgment_count"])
        lease.state = LeaseState.SUBMITTED
        lease.holds_slot = False
        lease.save(update_fields=["state", "holds_slot"])
        _agreement_recompute_every(judgment=judgment, project_id=task.project_id)
    return SubmitResult(judgment=judgment, created=True)


@dataclass(frozen=True)
class UndoResult:
    lease: Lease  # active again: the task is shown again
    caption_text: str  # the caption the undone answer wrote, as sent ("" for other answers)


def judgment_undo(
    *, project: Project, annotator: AbstractBaseUser, now: datetime | None = None
) -> UndoResult:
    """Take back the annotator's last answer within the grace window; its task is shown again,
    with the caption it wrote (deleted with the answer) handed back to put in the box."""
    now = now or timezone.now()
    grace = timedelta(seconds=settings.CONCORD_UNDO_SECONDS)
    with transaction.atomic():
        last = (
            Judgment.objects.filter(annotator=annotator, task__project=project)
            .order_by("-id")
            .first()
        )
        if last is None:
            raise SubmitRefused(UNDO_NOTHING)
        if now - last.created_at > grace:
            raise SubmitRefused(UNDO_TOO_LATE.format(seconds=settings.CONCORD_UNDO_SECONDS))
        task = Task.objects.select_for_update().get(pk=last.task_id)
        lease = Lease.objects.select_for_update().get(pk=last.lease_id)
        text = last.caption.text_raw if last.caption_id is not None else ""
        if last.caption_id is not None:
            review = Task.objects.filter(pair__caption_id=last.caption_id)
            if Lease.objects.filter(task__in=review).exists():
                raise SubmitRefused(UNDO_UNDER_REVIEW)
            # The caption, its positive pair and the pair's review task go with the answer.
            last.caption.delete()
        last.delete()
        task.judgment_count -= 1
        if not task.is_gold:
            task.lease_count += 1
            lease.holds_slot = True
        refresh_open(task)
        task.save(update_fields=["judgment_count", "lease_count", "is_open"])
        lease.state = LeaseState.ACTIVE
        lease.shown_at = now
        lease.expires_at = now + timedelta(seconds=settings.CONCORD_LEASE_SECONDS)
        lease.save(update_fields=["state", "holds_slot", "shown_at", "expires_at"])
    return UndoResult(lease=lease, caption_text=text)


@dataclass(frozen=True)
class _Submission:
    """What an answer says, to tell a repeated request from a different answer."""

    answer: str
    caption_text: str
    image_unusable: bool
    caption_offensive: bool
    marked: frozenset[int]


def _submission_of(judgment: Judgment) -> _Submission:
    marked = frozenset(judgment.marks.filter(marked=True).values_list("option_id", flat=True))
    return _Submission(
        answer=judgment.answer,
        # The caption as it was sent (raw), which is what a retry sends again.
        caption_text=judgment.caption.text_raw if judgment.caption else "",
        image_unusable=judgment.image_unusable,
        caption_offensive=judgment.caption_offensive,
        marked=marked,
    )


def _describe(judgment: Judgment) -> str:
    if judgment.caption is not None:
        return f"caption “{judgment.caption.text}”"
    if judgment.answer == Answer.CHALLENGE:
        marked = judgment.marks.filter(marked=True).count()
        return f"{marked} caption{'s' if marked != 1 else ''} marked"
    return Answer(judgment.answer).label.lower()


def _agreement_recompute_every(*, judgment: Judgment, project_id: int) -> None:
    """Every CONCORD_AGREEMENT_EVERY-th judgment (by id, so no query) asks for fresh figures.

    Requests coalesce (config.jobs; annotate.agreement.services.recomputes does the same): while
    a recompute of the project waits, asking costs one indexed read after the commit, so every
    judgment can ask and a label is fresh within the delay plus one recompute.
    """
    if judgment.pk % settings.CONCORD_AGREEMENT_EVERY == 0:
        job_request(
            "agreement.recompute",
            str(project_id),
            project_id,
            what=f"agreement recompute of project {project_id}",
            countdown=settings.CONCORD_AGREEMENT_DELAY,
        )


def _gold_correct(
    *, task: Task, answer: str, options: list[ChallengeOption], marked: Collection[int]
) -> bool | None:
    if task.is_gold:
        return answer == task.gold_answer
    if task.kind == TaskKind.CHALLENGE:
        return challenges.check_passed(options=options, marked=marked)
    return None


def caption_rules_for(project: Project) -> CaptionRules:
    return CaptionRules(
        min_words=project.caption_min_words,
        max_words=project.caption_max_words,
        banned_openings=tuple(project.banned_openings),
        max_chars=settings.CONCORD_MAX_CAPTION_CHARS,
    )


def _check_answer_kind(*, task: Task, answer: str) -> None:
    expected = {
        TaskKind.CAPTION: {Answer.CAPTION},
        TaskKind.CHALLENGE: {Answer.CHALLENGE},
    }.get(task.kind, {Answer.MATCH, Answer.NO_MATCH, Answer.UNSURE})
    if answer not in expected:
        raise SubmitRefused(WRONG_ANSWER_KIND)


def caption_check_for(*, task: Task, text: str) -> CaptionCheck:
    """The verdict on ``text`` as a caption of ``task``'s image: the one check that both the
    page's live feedback (``annotate-check``) and submitting a caption use."""
    existing = list(task.image.captions.values_list("text", flat=True))
    return caption_check(text, rules=caption_rules_for(task.project), existing=existing)


def _caption_write(*, task: Task, text: str, author: AbstractBaseUser) -> Caption:
    problems = caption_check_for(task=task, text=text).problems
    if problems:
        raise SubmitRefused(problems[0], problems=problems, text=text)
    caption = caption_create(image=task.image, text=text, source=Source.ANNOTATOR, author=author)
    # Every caption written is itself judged: its positive pair becomes a verification task.
    verify_task_create(pair=caption.pairs.get(), author=author)
    return caption
