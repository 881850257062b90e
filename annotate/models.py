"""Human work on the data: tasks handed out as leases, and the judgments that come back.

A Task keeps counters of its judgments and of the leases currently holding a slot, updated only
while the task row is locked; the database refuses any state where they exceed the target, so
over-assignment is impossible even if a code path were wrong.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from datasets.models import Caption, Image, Pair, Project


class TaskKind(models.TextChoices):
    CAPTION = "caption", "Write a caption"
    VERIFY = "verify", "Verify a pair"
    # Reserved for challenge items (one image, several captions, choose every match).
    CHALLENGE = "challenge", "Challenge"


class Answer(models.TextChoices):
    MATCH = "match", "Match"
    NO_MATCH = "no_match", "No match"
    UNSURE = "unsure", "Unsure"
    CAPTION = "caption", "Caption written"


class Task(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tasks")
    kind = models.CharField(max_length=12, choices=TaskKind.choices)
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="tasks")
    pair = models.ForeignKey(
        Pair, on_delete=models.CASCADE, null=True, blank=True, related_name="tasks"
    )
    # Whoever wrote the content under review never gets to judge it.
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    target = models.PositiveSmallIntegerField()
    judgment_count = models.PositiveSmallIntegerField(default=0)
    lease_count = models.PositiveSmallIntegerField(default=0)
    # Derived from the counters, stored so that the queue's index can skip full tasks.
    is_open = models.BooleanField(default=True)
    priority = models.PositiveSmallIntegerField(default=0, help_text="1 once work has started")
    random_key = models.IntegerField(help_text="Fixed random order among equal priorities")
    is_gold = models.BooleanField(default=False)
    gold_answer = models.CharField(max_length=12, choices=Answer.choices, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(is_gold=True) | Q(judgment_count__lte=F("target") - F("lease_count")),
                name="annotate_task_never_over_assigned",
            ),
            models.CheckConstraint(
                condition=Q(is_gold=False) | ~Q(gold_answer=""),
                name="annotate_task_gold_has_answer",
            ),
            models.CheckConstraint(
                condition=Q(kind=TaskKind.CAPTION, pair__isnull=True)
                | (~Q(kind=TaskKind.CAPTION) & Q(pair__isnull=False)),
                name="annotate_task_pair_matches_kind",
            ),
            models.UniqueConstraint(
                fields=["image"],
                condition=Q(kind=TaskKind.CAPTION),
                name="annotate_task_one_caption_task_per_image",
            ),
            models.UniqueConstraint(
                fields=["pair"],
                condition=Q(kind=TaskKind.VERIFY),
                name="annotate_task_one_verify_task_per_pair",
            ),
        ]
        indexes = [
            # The queue's walk: open, non-gold tasks of a project, started ones first.
            models.Index(
                fields=["project", "-priority", "random_key"],
                condition=Q(is_open=True, is_gold=False),
                name="annotate_task_queue",
            ),
            models.Index(
                fields=["project", "random_key"],
                condition=Q(is_gold=True),
                name="annotate_task_gold",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} task {self.pk}"


class LeaseState(models.TextChoices):
    ACTIVE = "active", "Active"
    SUBMITTED = "submitted", "Submitted"
    SKIPPED = "skipped", "Skipped"
    EXPIRED = "expired", "Expired"


class Lease(models.Model):
    """A task handed to one annotator until expires_at; each annotator gets a task at most once."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="leases")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="leases"
    )
    state = models.CharField(max_length=10, choices=LeaseState.choices, default=LeaseState.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set when the task is first shown (a lease may be taken ahead, for preloading).
    shown_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    # True while this lease occupies one of the task's slots (counted in task.lease_count).
    holds_slot = models.BooleanField(default=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["task", "annotator"], name="annotate_lease_once_per_annotator"
            ),
        ]
        indexes = [
            models.Index(
                fields=["annotator", "project", "id"],
                condition=Q(state="active"),
                name="annotate_lease_active",
            ),
            models.Index(
                fields=["project", "expires_at"],
                condition=Q(holds_slot=True, state="active"),
                name="annotate_lease_expiry",
            ),
        ]

    def __str__(self) -> str:
        return f"lease {self.pk} of task {self.task_id} to {self.annotator_id}"


class Judgment(models.Model):
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="judgments")
    lease = models.OneToOneField(Lease, on_delete=models.CASCADE, related_name="judgment")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="judgments"
    )
    answer = models.CharField(max_length=12, choices=Answer.choices)
    caption = models.ForeignKey(
        Caption, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    image_unusable = models.BooleanField(default=False)
    caption_offensive = models.BooleanField(default=False)
    seconds = models.FloatField(help_text="Time from first showing the task to the answer")
    gold_correct = models.BooleanField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["task", "annotator"], name="annotate_judgment_once_per_annotator"
            ),
            models.CheckConstraint(condition=Q(seconds__gte=0), name="annotate_judgment_seconds"),
        ]
        indexes = [models.Index(fields=["annotator", "created_at"], name="annotate_judgment_by")]

    def __str__(self) -> str:
        return f"{self.answer} on task {self.task_id} by {self.annotator_id}"
