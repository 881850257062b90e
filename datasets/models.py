"""The data Concord collects: projects and their members, images, captions and image–caption pairs.

Invariants that matter to everyone downstream (one image per content hash per project, one pair per
image and caption, rates within [0, 1]) are database constraints, not only Python checks.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class Role(models.TextChoices):
    ANNOTATOR = "annotator", "Annotator"
    MANAGER = "manager", "Manager"


class Project(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    guidelines = models.TextField(blank=True, help_text="Markdown, shown to annotators.")
    captions_per_image = models.PositiveSmallIntegerField(
        default=5, help_text="Captions each image should get, from distinct annotators."
    )
    judgments_per_item = models.PositiveSmallIntegerField(
        default=3, help_text="Judgments each pair needs, from distinct annotators."
    )
    gold_rate = models.FloatField(default=0.1, help_text="Share of gold items in each stream.")
    challenge_rate = models.FloatField(
        default=0.1, help_text="Share of challenge items in each stream."
    )
    agreement_threshold = models.FloatField(
        default=0.7, help_text="Below this agreement an item counts as disputed."
    )
    caption_min_words = models.PositiveSmallIntegerField(
        default=4, help_text="Shortest caption an annotator may write, in words."
    )
    caption_max_words = models.PositiveSmallIntegerField(
        default=40, help_text="Longest caption an annotator may write, in words."
    )
    caption_banned_openings = models.TextField(
        blank=True,
        default="There is\nThere are\nThis is\nThis image\nAn image of\nA picture of",
        help_text="One per line; captions may not start with these (case-insensitive).",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(gold_rate__gte=0, gold_rate__lte=1),
                name="datasets_project_gold_rate_unit",
            ),
            models.CheckConstraint(
                condition=Q(challenge_rate__gte=0, challenge_rate__lte=1),
                name="datasets_project_challenge_rate_unit",
            ),
            models.CheckConstraint(
                condition=Q(agreement_threshold__gte=0, agreement_threshold__lte=1),
                name="datasets_project_agreement_threshold_unit",
            ),
            models.CheckConstraint(
                condition=Q(captions_per_image__gte=1, judgments_per_item__gte=1),
                name="datasets_project_targets_positive",
            ),
            models.CheckConstraint(
                condition=Q(
                    caption_min_words__gte=1, caption_max_words__gte=F("caption_min_words")
                ),
                name="datasets_project_caption_words_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def banned_openings(self) -> list[str]:
        return [line.strip() for line in self.caption_banned_openings.splitlines() if line.strip()]


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.ANNOTATOR)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "user__username"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "user"], name="datasets_membership_one_per_user"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} as {self.role}"


class Source(models.TextChoices):
    """Where a row came from; kept with every image and caption as provenance."""

    UPLOAD = "upload", "Browser upload"
    API = "api", "API"
    ZIP = "zip", "Zip archive"
    COCO = "coco", "COCO import"
    MANIFEST = "manifest", "Manifest import"
    DEMO = "demo", "Demo generator"
    ANNOTATOR = "annotator", "Written by an annotator"


class ImageFormat(models.TextChoices):
    JPEG = "JPEG", "JPEG"
    PNG = "PNG", "PNG"
    WEBP = "WEBP", "WebP"


class Image(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="images")
    file = models.FileField(max_length=255)
    thumbnail = models.FileField(max_length=255, blank=True)
    # SHA-256 of the bytes as received, so the same file uploaded again is recognised even though
    # the stored copy may have been re-encoded to drop metadata.
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=8, choices=ImageFormat.choices)
    size_bytes = models.PositiveBigIntegerField()
    source = models.CharField(max_length=20, choices=Source.choices)
    original_name = models.CharField(max_length=255, blank=True)
    source_url = models.URLField(max_length=1000, blank=True)
    license_name = models.CharField(max_length=200, blank=True)
    license_url = models.URLField(max_length=500, blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "sha256"], name="datasets_image_unique_content"
            ),
            models.CheckConstraint(
                condition=Q(width__gt=0, height__gt=0), name="datasets_image_has_pixels"
            ),
        ]
        indexes = [models.Index(fields=["project", "id"], name="datasets_image_project_id")]

    def __str__(self) -> str:
        return self.original_name or self.sha256[:12]

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1_000_000


class Caption(models.Model):
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="captions")
    text_raw = models.TextField()
    text = models.TextField(help_text="Normalised form: NFC, no control characters, one space.")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="captions",
    )
    source = models.CharField(max_length=20, choices=Source.choices)
    # Imports identify a caption by its text and its occurrence on the image, which makes a
    # re-import add nothing even when a source repeats a caption on purpose.
    import_key = models.CharField(max_length=80, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["image", "import_key"],
                condition=~Q(import_key=""),
                name="datasets_caption_import_once",
            ),
            models.CheckConstraint(condition=~Q(text=""), name="datasets_caption_not_empty"),
        ]

    def __str__(self) -> str:
        return self.text


class PairKind(models.TextChoices):
    POSITIVE = "positive", "Positive"
    RANDOM_NEGATIVE = "random_negative", "Random negative"
    HARD_NEGATIVE = "hard_negative", "Hard negative"
    TEXT_EDIT_NEGATIVE = "text_edit_negative", "Text-edit negative"


class PairLabel(models.IntegerChoices):
    NO_MATCH = 0, "No match"
    MATCH = 1, "Match"


class Split(models.TextChoices):
    TRAIN = "train", "Train"
    VAL = "val", "Validation"
    TEST = "test", "Test"


class Pair(models.Model):
    """An image and a caption, positive by construction or proposed as a negative.

    label, confidence and split stay empty until aggregation and release cutting fill them.
    """

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="pairs")
    caption = models.ForeignKey(Caption, on_delete=models.CASCADE, related_name="pairs")
    kind = models.CharField(max_length=24, choices=PairKind.choices)
    label = models.PositiveSmallIntegerField(choices=PairLabel.choices, null=True, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    split = models.CharField(max_length=8, choices=Split.choices, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["image", "caption"], name="datasets_pair_once"),
            models.CheckConstraint(
                condition=Q(confidence__isnull=True) | Q(confidence__gte=0, confidence__lte=1),
                name="datasets_pair_confidence_unit",
            ),
            models.CheckConstraint(
                condition=Q(label__isnull=True) | Q(label__in=[0, 1]),
                name="datasets_pair_label_binary",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}: image {self.image_id} / caption {self.caption_id}"


__all__ = [
    "Caption",
    "Image",
    "ImageFormat",
    "Membership",
    "Pair",
    "PairKind",
    "PairLabel",
    "Project",
    "Role",
    "Source",
    "Split",
]
