"""Human work on the data: tasks handed out as leases, and the judgments that come back.

A Task keeps counters of its judgments and of the leases currently holding a slot, updated only
while the task row is locked; the database refuses any state where they exceed the target, so
over-assignment is impossible even if a code path were wrong.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from datasets.models import Caption, Image, Pair, Project

# Task.random_key is drawn uniformly from [0, RANDOM_KEY_MAX): a fixed random order of the pool.
RANDOM_KEY_MAX = 2**31 - 1


class TaskKind(models.TextChoices):
    CAPTION = "caption", "Write a caption"
    VERIFY = "verify", "Verify a pair"
    # One image and several captions (a known positive and proposed negatives); the annotator
    # marks every caption that matches. Options and marks: ChallengeOption, ChallengeMark.
    CHALLENGE = "challenge", "Challenge"


class Answer(models.TextChoices):
    MATCH = "match", "Match"
    NO_MATCH = "no_match", "No match"
    UNSURE = "unsure", "Unsure"
    CAPTION = "caption", "Caption written"
    CHALLENGE = "challenge", "Challenge answered"


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
                condition=Q(is_open=True, is_gold=False) & ~Q(kind=TaskKind.CHALLENGE),
                name="annotate_task_queue",
            ),
            # Challenge items are drawn at the project's challenge rate, from their own walk.
            models.Index(
                fields=["project", "-priority", "random_key"],
                condition=Q(is_open=True, is_gold=False, kind=TaskKind.CHALLENGE),
                name="annotate_task_challenge",
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


class ChallengeOption(models.Model):
    """One caption of a challenge item, as a pair with the task's image.

    Exactly one option is the check: a verified positive whose answer is known (an attention
    check that counts toward the annotator's quality, like gold). The others are proposed
    negatives; each belongs to one challenge only, so its judgments have one redundancy count.
    """

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="options")
    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="challenge_options")
    position = models.PositiveSmallIntegerField()
    is_check = models.BooleanField(default=False)

    class Meta:
        ordering = ["task", "position"]
        constraints = [
            models.UniqueConstraint(fields=["task", "pair"], name="annotate_option_pair_once"),
            models.UniqueConstraint(
                fields=["task", "position"], name="annotate_option_position_once"
            ),
            models.UniqueConstraint(
                fields=["task"], condition=Q(is_check=True), name="annotate_option_one_check"
            ),
            models.UniqueConstraint(
                fields=["pair"],
                condition=Q(is_check=False),
                name="annotate_option_proposal_in_one_challenge",
            ),
        ]

    def __str__(self) -> str:
        return f"option {self.position} of task {self.task_id}"


class ChallengeMark(models.Model):
    """Whether one annotator marked one caption of a challenge as matching: a judgment on its pair."""

    judgment = models.ForeignKey(Judgment, on_delete=models.CASCADE, related_name="marks")
    option = models.ForeignKey(ChallengeOption, on_delete=models.CASCADE, related_name="marks")
    marked = models.BooleanField()

    class Meta:
        ordering = ["judgment", "option"]
        constraints = [
            models.UniqueConstraint(fields=["judgment", "option"], name="annotate_mark_once"),
        ]

    def __str__(self) -> str:
        return f"{'marked' if self.marked else 'unmarked'} option {self.option_id}"


class ItemStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    AGREED = "agreed", "Agreed"
    DISPUTED = "disputed", "Disputed"


class ItemLabel(models.Model):
    """The aggregated label of one pair under verification, rewritten by every recompute.

    ``label``/``confidence`` come from Dawid–Skene (the posterior of the winning label),
    ``mv_label``/``mv_share`` from majority vote beside it. ``needs_manager`` marks an item
    waiting for a manager: unsettled at the project's maximum of judgments, unsettled with nobody
    left to judge it, or ``sent_to_manager`` by a manager from the data browser (a request that
    recomputes keep, whatever the votes say). A manager's adjudication is final: recomputes keep
    it and the pair's label follows it.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="item_labels")
    pair = models.OneToOneField(Pair, on_delete=models.CASCADE, related_name="item_label")
    label = models.PositiveSmallIntegerField(null=True, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    mv_label = models.PositiveSmallIntegerField(null=True, blank=True)
    mv_share = models.FloatField(null=True, blank=True)
    judgments = models.PositiveIntegerField(default=0, help_text="Votes counted (no unsure)")
    status = models.CharField(max_length=10, choices=ItemStatus.choices, default=ItemStatus.PENDING)
    needs_manager = models.BooleanField(default=False)
    sent_to_manager = models.BooleanField(
        default=False, help_text="A manager asked for adjudication; kept by every recompute"
    )
    adjudicated_label = models.PositiveSmallIntegerField(null=True, blank=True)
    adjudicated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    adjudicated_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(confidence__isnull=True) | Q(confidence__gte=0, confidence__lte=1),
                name="annotate_itemlabel_confidence_unit",
            ),
            models.CheckConstraint(
                condition=Q(adjudicated_label__isnull=True) | Q(adjudicated_label__in=[0, 1]),
                name="annotate_itemlabel_adjudicated_binary",
            ),
            models.CheckConstraint(
                condition=Q(adjudicated_label__isnull=True) | Q(adjudicated_at__isnull=False),
                name="annotate_itemlabel_adjudication_dated",
            ),
        ]
        indexes = [
            models.Index(
                fields=["project", "status"],
                condition=Q(adjudicated_label__isnull=True),
                name="annotate_itemlabel_open",
            ),
            # The data browser's sort by agreement walks this (datasets/browse/selectors.py).
            models.Index(fields=["mv_share", "pair"], name="annotate_itemlabel_agreement"),
        ]

    def __str__(self) -> str:
        return f"{self.status} label of pair {self.pair_id}"

    @property
    def is_adjudicated(self) -> bool:
        return self.adjudicated_label is not None


class AgreementSnapshot(models.Model):
    """A project's agreement figures as computed at one moment; kept for the charts over time.

    Statistics that are undefined for the data (too few judgments, one label only) are null.
    ``annotators`` holds the annotator table rows and ``kappa_matrix`` the pairwise Cohen's κ
    (``{"annotators": [...], "names": [...], "kappa": [[...]]}``), both as the dashboard shows them.
    """

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="agreement_snapshots"
    )
    computed_at = models.DateTimeField()
    last_judgment_id = models.BigIntegerField(default=0)
    judgments = models.PositiveIntegerField(default=0)
    annotators = models.PositiveIntegerField(default=0)
    alpha = models.FloatField(null=True, blank=True)
    alpha_low = models.FloatField(null=True, blank=True)
    alpha_high = models.FloatField(null=True, blank=True)
    fleiss_kappa = models.FloatField(null=True, blank=True)
    fleiss_items = models.PositiveIntegerField(default=0)
    percent_agreement = models.FloatField(null=True, blank=True)
    items_total = models.PositiveIntegerField(default=0)
    items_pending = models.PositiveIntegerField(default=0)
    items_agreed = models.PositiveIntegerField(default=0)
    items_disputed = models.PositiveIntegerField(default=0)
    items_waiting = models.PositiveIntegerField(default=0, help_text="Disputed, for a manager")
    items_adjudicated = models.PositiveIntegerField(default=0)
    labels_match = models.PositiveIntegerField(default=0)
    labels_no_match = models.PositiveIntegerField(default=0)
    mv_ds_disagreements = models.PositiveIntegerField(default=0)
    kappa_matrix = models.JSONField(default=dict, blank=True)
    annotator_rows = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["project", "computed_at"]
        get_latest_by = "computed_at"
        indexes = [
            models.Index(fields=["project", "-computed_at"], name="annotate_snapshot_latest")
        ]

    def __str__(self) -> str:
        return f"agreement of {self.project_id} at {self.computed_at:%Y-%m-%d %H:%M}"


class Suspension(models.Model):
    """A manager took an annotator's judgments out of a project's figures; nothing is deleted.

    Reinstating sets ``lifted_at``; the row stays as the record of what happened.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="suspensions")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="suspensions"
    )
    reason = models.TextField(blank=True)
    suspended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    suspended_at = models.DateTimeField()
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    lifted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-suspended_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "annotator"],
                condition=Q(lifted_at__isnull=True),
                name="annotate_suspension_one_active",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.annotator_id} suspended from {self.project_id}"


class AnnotatorFlag(models.Model):
    """A reason to look at an annotator, from the last recompute (see annotate.agreement.annotators)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="annotator_flags")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="annotator_flags"
    )
    code = models.CharField(max_length=32)
    reason = models.CharField(max_length=300)
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["project", "annotator", "code"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "annotator", "code"], name="annotate_flag_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} for {self.annotator_id} in {self.project_id}"
