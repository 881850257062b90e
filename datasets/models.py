"""The data Concord collects: projects and their members, images, captions and image–caption pairs.

Invariants that matter to everyone downstream (one image per content hash per project, one pair per
image and caption, rates within [0, 1]) are database constraints, not only Python checks.
"""

import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from knox.models import AbstractAuthToken


class Role(models.TextChoices):
    ANNOTATOR = "annotator", "Annotator"
    MANAGER = "manager", "Manager"


def _split_salt_new() -> str:
    return secrets.token_hex(16)


class BalanceMethod(models.TextChoices):
    NONE = "none", "None"
    UNDERSAMPLE = "undersample", "Under-sample the larger class"
    OVERSAMPLE = "oversample", "Over-sample the smaller class (by weight)"


class Language(models.TextChoices):
    """The language a project's captions are written in (BCP 47 primary tags).

    It picks the text encoder of the matching model (English: all-MiniLM-L6-v2; the 16 languages
    of USE multilingual v3; any other: a character n-gram encoder trained from scratch), the
    lexicon of text-edit negatives, and the ``lang`` of captions on pages. Caption rules need
    no language: they detect scripts per caption (datasets/ingest/segmentation.py).
    """

    ENGLISH = "en", "English"
    ARABIC = "ar", "Arabic"
    BENGALI = "bn", "Bengali"
    CHINESE = "zh", "Chinese"
    CZECH = "cs", "Czech"
    DUTCH = "nl", "Dutch"
    FRENCH = "fr", "French"
    GERMAN = "de", "German"
    GREEK = "el", "Greek"
    HEBREW = "he", "Hebrew"
    HINDI = "hi", "Hindi"
    INDONESIAN = "id", "Indonesian"
    ITALIAN = "it", "Italian"
    JAPANESE = "ja", "Japanese"
    KHMER = "km", "Khmer"
    KOREAN = "ko", "Korean"
    LAO = "lo", "Lao"
    PERSIAN = "fa", "Persian"
    POLISH = "pl", "Polish"
    PORTUGUESE = "pt", "Portuguese"
    RUSSIAN = "ru", "Russian"
    SPANISH = "es", "Spanish"
    SWAHILI = "sw", "Swahili"
    THAI = "th", "Thai"
    TURKISH = "tr", "Turkish"
    UKRAINIAN = "uk", "Ukrainian"
    URDU = "ur", "Urdu"
    VIETNAMESE = "vi", "Vietnamese"
    MULTIPLE = "mul", "Several languages"


class Project(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    guidelines = models.TextField(blank=True, help_text="Markdown, shown to annotators.")
    language = models.CharField(
        max_length=8,
        choices=Language.choices,
        default=Language.ENGLISH,
        help_text=(
            "The language captions are written in: it chooses the matching model's text "
            "encoder and the text-edit negatives."
        ),
    )
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
    max_judgments_per_item = models.PositiveSmallIntegerField(
        default=7,
        help_text=(
            "Most judgments a disputed pair gets, one at a time, before a manager decides "
            "(never fewer than judgments per item)."
        ),
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
    # Cleaning (issue 4). Defaults come from bench/dedup.py and datasets/curation/quality.py; a test keeps
    # them equal to PHASH_THRESHOLD_DEFAULT, CAPTION_SIMILARITY_DEFAULT and QualityThresholds().
    near_duplicate_threshold = models.PositiveSmallIntegerField(
        default=8,
        help_text="Images whose pHashes differ in at most this many of 64 bits are near-duplicates.",
    )
    caption_similarity_threshold = models.FloatField(
        default=0.8, help_text="Word overlap (Jaccard) at which a caption repeats another."
    )
    quality_image_min_width = models.PositiveIntegerField(default=112)
    quality_image_min_height = models.PositiveIntegerField(default=112)
    quality_image_max_aspect_ratio = models.FloatField(default=3.0)
    quality_image_min_std = models.FloatField(
        default=5.0, help_text="Below this grey-level spread (0–255) an image counts as blank."
    )
    quality_caption_min_words = models.PositiveSmallIntegerField(default=3)
    quality_caption_max_words = models.PositiveSmallIntegerField(default=60)
    quality_caption_min_letter_ratio = models.FloatField(default=0.6)
    quality_caption_max_token_share = models.FloatField(default=0.5)
    quality_caption_repeat_min_count = models.PositiveSmallIntegerField(default=3)
    # Hard negatives (issue 8): proposals per image and source, shown as challenge items.
    negatives_random_per_image = models.PositiveSmallIntegerField(
        default=1, help_text="Random captions of other images proposed per image."
    )
    negatives_model_per_image = models.PositiveSmallIntegerField(
        default=2, help_text="Captions the promoted model scores highest proposed per image."
    )
    negatives_text_edit_per_image = models.PositiveSmallIntegerField(
        default=1, help_text="Word edits of the image's own captions proposed per image."
    )
    mining_margin = models.FloatField(
        default=0.1,
        help_text=(
            "Model-mined captions scoring above the image's best own caption by more than "
            "this are left out as likely false negatives."
        ),
    )
    # Releases (issue 6): split ratios, the salt that places new clusters, the training
    # split's balance, and the caption sources whose captions count as positives unjudged.
    split_train = models.FloatField(default=0.7, help_text="Share of clusters in train.")
    split_val = models.FloatField(default=0.1, help_text="Share of clusters in validation.")
    split_test = models.FloatField(default=0.2, help_text="Share of clusters in test.")
    split_salt = models.CharField(max_length=64, default=_split_salt_new, editable=False)
    balance_method = models.CharField(
        max_length=12, choices=BalanceMethod.choices, default=BalanceMethod.NONE
    )
    balance_ratio = models.FloatField(
        default=1.0, help_text="Target negatives per positive in the training split."
    )
    trusted_sources = models.JSONField(
        default=list,
        blank=True,
        help_text="Caption sources whose captions count as positives without judgments.",
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
                violation_error_message="The gold rate must be between 0 and 1.",
            ),
            models.CheckConstraint(
                condition=Q(challenge_rate__gte=0, challenge_rate__lte=1),
                name="datasets_project_challenge_rate_unit",
                violation_error_message="The challenge rate must be between 0 and 1.",
            ),
            models.CheckConstraint(
                condition=Q(agreement_threshold__gte=0, agreement_threshold__lte=1),
                name="datasets_project_agreement_threshold_unit",
                violation_error_message="The agreement threshold must be between 0 and 1.",
            ),
            models.CheckConstraint(
                condition=Q(captions_per_image__gte=1, judgments_per_item__gte=1),
                name="datasets_project_targets_positive",
                violation_error_message="Captions per image and judgments per item must be at least 1.",
            ),
            models.CheckConstraint(
                condition=Q(
                    caption_min_words__gte=1, caption_max_words__gte=F("caption_min_words")
                ),
                name="datasets_project_caption_words_range",
                violation_error_message="Caption words: the minimum must be at least 1 and the maximum at least the minimum.",
            ),
            models.CheckConstraint(
                condition=Q(near_duplicate_threshold__lte=64)
                & Q(caption_similarity_threshold__gte=0, caption_similarity_threshold__lte=1)
                & Q(
                    quality_caption_min_letter_ratio__gte=0, quality_caption_min_letter_ratio__lte=1
                )
                & Q(quality_caption_max_token_share__gte=0, quality_caption_max_token_share__lte=1)
                & Q(quality_image_max_aspect_ratio__gte=1),
                name="datasets_project_cleaning_ranges",
                violation_error_message="Duplicate and quality thresholds are out of range (pHash distance at most 64, shares between 0 and 1, aspect ratio at least 1).",
            ),
            models.CheckConstraint(
                condition=Q(language__in=Language.values), name="datasets_project_language_known"
            ),
            models.CheckConstraint(
                condition=Q(split_train__gte=0, split_val__gte=0, split_test__gte=0)
                & Q(balance_ratio__gt=0),
                name="datasets_project_release_settings",
                violation_error_message="Split shares cannot be negative and the balance ratio must be greater than 0.",
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
    URL = "url", "Fetched from a URL"
    BUCKET = "bucket", "Object storage prefix"
    DEMO = "demo", "Demo generator"
    ANNOTATOR = "annotator", "Written by an annotator"
    # A caption made from one of the image's own captions by a word edit, as a proposed
    # negative for that image: it never counts as describing it (see training.negatives.text_edits).
    TEXT_EDIT = "text_edit", "Edited into a negative"


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
    # Perceptual hashes (datasets/curation/dedup.py), 64-bit unsigned stored as signed (hash_to_signed).
    # hashed_at is set in the same transaction that stores the hashes and quality flags and
    # joins the image to its duplicate cluster: null means that work is still to do.
    phash = models.BigIntegerField(null=True, blank=True)
    dhash = models.BigIntegerField(null=True, blank=True)
    hashed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "sha256"], name="datasets_image_unique_content"
            ),
            models.CheckConstraint(
                condition=Q(hashed_at__isnull=True) | Q(phash__isnull=False, dhash__isnull=False),
                name="datasets_image_hashed_has_hashes",
            ),
            models.CheckConstraint(
                condition=Q(width__gt=0, height__gt=0), name="datasets_image_has_pixels"
            ),
        ]
        indexes = [
            models.Index(fields=["project", "id"], name="datasets_image_project_id"),
            # Finding what is still to hash, and loading a project's hashes for the search.
            models.Index(fields=["project", "hashed_at"], name="datasets_image_hashed"),
        ]

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
    # A manager's word from the data browser: no release cut from now on includes this pair.
    excluded_from_releases = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        # The data browser's filters walk these in id order (datasets/browse/selectors.py);
        # bench/browse.py measures them on a million pairs.
        indexes = [
            models.Index(fields=["label", "id"], name="datasets_pair_label"),
            models.Index(fields=["split", "id"], name="datasets_pair_split"),
            models.Index(fields=["kind", "id"], name="datasets_pair_kind"),
            models.Index(fields=["confidence", "id"], name="datasets_pair_confidence"),
            # Label and split together, in confidence order (the manager reviewing a split's
            # low-confidence labels): without it a page walked the confidence (or split) index
            # and read 20,000–130,000 rows of other labels and splits for 50.
            models.Index(
                fields=["label", "split", "confidence", "id"],
                condition=Q(confidence__isnull=False),
                name="datasets_pair_label_split_conf",
            ),
            models.Index(
                fields=["id"],
                condition=Q(excluded_from_releases=True),
                name="datasets_pair_excluded",
            ),
        ]
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


class DuplicateCluster(models.Model):
    """Near-duplicate images of one project grouped together, with one canonical image.

    Rebuilt by datasets/curation/services/clusters.py from the hashes and the manager's decisions; never edited
    by hand. Non-canonical members are duplicates: kept, but given no new tasks.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="clusters")
    canonical = models.OneToOneField(Image, on_delete=models.CASCADE, related_name="canonical_of")
    size = models.PositiveIntegerField()
    # Largest pHash distance between two members; the review page shows the largest first.
    doubt = models.PositiveSmallIntegerField()
    # Manager must-links alone connect every member.
    confirmed = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["confirmed", "-doubt", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(size__gte=2, doubt__lte=64), name="datasets_cluster_size_doubt"
            ),
        ]
        indexes = [
            models.Index(
                fields=["project", "confirmed", "-doubt", "id"], name="datasets_cluster_review"
            ),
        ]

    def __str__(self) -> str:
        return f"cluster of {self.size} around image {self.canonical_id}"


class ClusterMember(models.Model):
    """An image's place in a duplicate cluster; an image belongs to at most one."""

    cluster = models.ForeignKey(DuplicateCluster, on_delete=models.CASCADE, related_name="members")
    image = models.OneToOneField(Image, on_delete=models.CASCADE, related_name="cluster_membership")

    class Meta:
        ordering = ["cluster", "image"]

    def __str__(self) -> str:
        return f"image {self.image_id} in cluster {self.cluster_id}"


class DecisionKind(models.TextChoices):
    SAME = "same", "Confirmed duplicates"
    DIFFERENT = "different", "Not duplicates"


class DuplicateDecision(models.Model):
    """A manager's word on two images (must-link or cannot-link); every reclustering obeys it."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    image_a = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="+")
    image_b = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=10, choices=DecisionKind.choices)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    decided_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["image_a", "image_b"], name="datasets_decision_once"),
            models.CheckConstraint(
                condition=Q(image_a__lt=F("image_b")), name="datasets_decision_ordered"
            ),
        ]
        indexes = [models.Index(fields=["project", "kind"], name="datasets_decision_project")]

    def __str__(self) -> str:
        return f"{self.kind}: images {self.image_a_id} and {self.image_b_id}"


class ImageFlag(models.Model):
    """A quality problem found in an image (datasets/curation/quality.py); the image gets no tasks and
    stays out of releases while a flag stands that no manager has overridden."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="flags")
    code = models.CharField(max_length=40)
    message = models.CharField(max_length=255)
    overridden_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    overridden_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["image", "code"], name="datasets_image_flag_once"),
        ]

    def __str__(self) -> str:
        return f"{self.code} on image {self.image_id}"


class CaptionFlag(models.Model):
    """A quality problem in a caption, or its repeating an earlier caption of the same image
    (``duplicate_of``); flagged captions do not count toward the image's caption target."""

    caption = models.ForeignKey(Caption, on_delete=models.CASCADE, related_name="flags")
    code = models.CharField(max_length=40)
    message = models.CharField(max_length=255)
    duplicate_of = models.ForeignKey(
        Caption, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    overridden_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    overridden_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["caption", "code"], name="datasets_caption_flag_once"),
            models.CheckConstraint(
                condition=~Q(duplicate_of=F("caption")), name="datasets_caption_flag_not_self"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} on caption {self.caption_id}"


class ReleaseStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    BUILDING = "building", "Building"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"
    # Ready once; its files were deleted by retention (the row, counts and diff stay).
    PRUNED = "pruned", "Pruned"


class Release(models.Model):
    """One immutable, numbered snapshot of a project's labelled pairs, written as files.

    ``options`` holds what the manager asked for (formats, copy_images, balance method and
    ratio, shard size); ``counts`` what the build found (pairs per split and label source,
    split moves, diff totals). ``directory`` is the release's folder in the ``releases``
    storage (``<slug>/v<n>``), set once every file is stored. ``pinned`` releases are kept
    forever; others beyond the newest ``CONCORD_RELEASES_KEEP`` are pruned: their files
    deleted, ``pruned_at`` set and the status ``pruned``.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="releases")
    version = models.PositiveIntegerField()
    status = models.CharField(
        max_length=10, choices=ReleaseStatus.choices, default=ReleaseStatus.QUEUED
    )
    progress_done = models.PositiveBigIntegerField(default=0)
    progress_total = models.PositiveBigIntegerField(default=0)
    stage = models.CharField(max_length=80, blank=True)
    options = models.JSONField(default=dict)
    snapshot_at = models.DateTimeField()
    counts = models.JSONField(default=dict, blank=True)
    directory = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    pinned = models.BooleanField(default=False)
    pruned_at = models.DateTimeField(null=True, blank=True)
    # Why the files went: retention, or a manager's explicit prune (files already lost).
    pruned_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["project", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "version"], name="datasets_release_version_once"
            ),
            models.CheckConstraint(condition=Q(version__gte=1), name="datasets_release_version"),
            models.CheckConstraint(
                condition=Q(progress_done__lte=F("progress_total")),
                name="datasets_release_progress",
            ),
            models.CheckConstraint(
                condition=~Q(status="ready") | ~Q(directory=""),
                name="datasets_release_ready_has_files",
            ),
            models.CheckConstraint(
                condition=~Q(status="pruned") | Q(pruned_at__isnull=False, pinned=False),
                name="datasets_release_pruned_when_unpinned",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project} v{self.version}"

    @property
    def name(self) -> str:
        return f"v{self.version}"

    @property
    def percent(self) -> int:
        if not self.progress_total:
            return 100 if self.status == ReleaseStatus.READY else 0
        return min(100, self.progress_done * 100 // self.progress_total)


class ImageSplit(models.Model):
    """The split an image had in one release: the memory that keeps splits stable.

    Written for every image of the project (held-back duplicates too, so a cluster that later
    merges still knows where its members were), in the same transaction that marks the release
    ready; a failed build leaves none.
    """

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="image_splits")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="release_splits")
    split = models.CharField(max_length=8, choices=Split.choices)

    class Meta:
        ordering = ["release", "image"]
        constraints = [
            models.UniqueConstraint(fields=["release", "image"], name="datasets_imagesplit_once"),
        ]

    def __str__(self) -> str:
        return f"image {self.image_id} in {self.split} of release {self.release_id}"


class ApiToken(AbstractAuthToken):
    """A named API token (django-rest-knox: only a SHA-512 digest of it is stored).

    Its owner names it, sees when it was last used and revokes it on the Tokens page; it
    expires (``expiry``), and every token of a user is deleted when their password changes.
    ``last_used_at`` is written at most once a minute per token (datasets.access).
    """

    # What pages and the API name a token by (the digest, its key, stays on the server).
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.CheckConstraint(
                condition=Q(expiry__isnull=True) | Q(expiry__gt=F("created")),
                name="datasets_apitoken_expiry_after_creation",
            ),
        ]

    def __str__(self) -> str:
        return f"token “{self.name}” of {self.user_id}"


class Invitation(models.Model):
    """A single-use, expiring invitation to join a project with a role.

    The link carries a signature of the invitation's id (django.core.signing, keyed by
    SECRET_KEY), so nothing secret is stored. It is *pending* until accepted, revoked or past
    ``expires_at``; accepting creates the account (or uses the signed-in one) and the membership.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="invitations")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.ANNOTATOR)
    email = models.EmailField(blank=True)
    note = models.CharField(max_length=200, blank=True, help_text="Who it is for, for the list.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(accepted_at__isnull=True) | Q(revoked_at__isnull=True),
                name="datasets_invitation_accepted_or_revoked",
            ),
            models.CheckConstraint(
                condition=Q(accepted_at__isnull=True) | Q(accepted_by__isnull=False),
                name="datasets_invitation_accepted_by_someone",
            ),
            # One open invitation per address and project: inviting again replaces it.
            models.UniqueConstraint(
                fields=["project", "email"],
                condition=Q(accepted_at__isnull=True, revoked_at__isnull=True) & ~Q(email=""),
                name="datasets_invitation_one_open_per_email",
            ),
        ]

    def __str__(self) -> str:
        return f"invitation {self.pk} to {self.project_id} as {self.role}"


class ImageSource(models.Model):
    """Another provenance of an image: a file with the same bytes that came in under another name,
    source, URL or licence. Its captions went to this image; this row keeps where it came from."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="extra_sources")
    source = models.CharField(max_length=20, choices=Source.choices)
    original_name = models.CharField(max_length=255, blank=True)
    source_url = models.URLField(max_length=1000, blank=True)
    license_name = models.CharField(max_length=200, blank=True)
    license_url = models.URLField(max_length=500, blank=True)
    # SHA-256 over the fields above: one row per distinct provenance, however long the URLs.
    key = models.CharField(max_length=64)
    job = models.ForeignKey(
        "ImportJob", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["image", "id"]
        constraints = [
            models.UniqueConstraint(fields=["image", "key"], name="datasets_imagesource_once"),
        ]

    def __str__(self) -> str:
        return f"{self.original_name or self.source_url or self.source} for image {self.image_id}"


class ImportKind(models.TextChoices):
    UPLOAD = "upload", "Files and zips"
    MANIFEST = "manifest", "CSV/JSONL manifest"
    COCO = "coco", "COCO captions"
    # Rows fetched by workers: a manifest of image URLs, or every image under an S3 prefix.
    COLLECT = "collect", "URL collection"
    BUCKET = "bucket", "S3 prefix"


class ImportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    # A collection a manager paused: its workers stop claiming rows; resuming re-enqueues them.
    PAUSED = "paused", "Paused"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    # Stopped by a manager (imports of files): its inputs are kept for Retry.
    CANCELLED = "cancelled", "Cancelled"


class RowOutcome(models.TextChoices):
    """What became of one input row (a manifest line, a COCO entry, a file or zip member)."""

    ADDED = "added", "Added"
    PRESENT = "present", "Already present"
    # Same bytes as an image already stored under another name or provenance: the row's captions
    # went to that image and its provenance was kept as an ImageSource.
    MERGED = "merged", "Merged"
    REFUSED = "refused", "Refused"


class ImportJob(models.Model):
    """One upload or import, run by a worker (or by the terminal command) row by row.

    ``inputs`` lists the stored input files as ``{"name", "storage", "role", "size"}``, where
    ``storage`` is a name in the default storage (never a local path) and ``role`` is
    ``files`` (images or zips to add), ``manifest`` (the CSV/JSONL/COCO file) or ``images``
    (the files a manifest names). ``options`` holds ``images_dir`` for imports started from
    the terminal, whose images are read from that machine's disk by that process alone.
    The counters are updated in the transaction that writes the rows they count, so
    ``rows_done`` always equals the per-outcome counts added up (a database constraint).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    kind = models.CharField(max_length=12, choices=ImportKind.choices)
    # The provenance every image and caption of this job is stored with.
    source = models.CharField(max_length=20, choices=Source.choices)
    status = models.CharField(
        max_length=10, choices=ImportStatus.choices, default=ImportStatus.QUEUED
    )
    inputs = models.JSONField(default=list, blank=True)
    options = models.JSONField(default=dict, blank=True)
    # What the reader noticed about the input as a whole (delimiter, encoding, skipped files).
    notes = models.JSONField(default=list, blank=True)
    rows_total = models.PositiveIntegerField(null=True, blank=True)
    rows_done = models.PositiveIntegerField(default=0)
    added = models.PositiveIntegerField(default=0)
    present = models.PositiveIntegerField(default=0)
    merged = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0)
    images_added = models.PositiveIntegerField(default=0)
    captions_added = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Touched with every batch of rows: a running job whose heartbeat is old lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(rows_done=F("added") + F("present") + F("merged") + F("refused")),
                name="datasets_importjob_outcomes_add_up",
            ),
            models.CheckConstraint(
                condition=Q(rows_total__isnull=True) | Q(rows_done__lte=F("rows_total")),
                name="datasets_importjob_progress",
            ),
        ]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="datasets_importjob_live")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} into {self.project}"

    @property
    def percent(self) -> int:
        if self.status == ImportStatus.DONE:
            return 100
        if not self.rows_total:
            return 0
        return min(100, self.rows_done * 100 // self.rows_total)

    @property
    def is_live(self) -> bool:
        return self.status in (ImportStatus.QUEUED, ImportStatus.RUNNING)

    @property
    def runs_in_terminal(self) -> bool:
        """Started by import_coco/import_manifest with images on that machine's disk: only that
        process can run it (a worker elsewhere cannot read the folder)."""
        return bool(self.options.get("images_dir"))


class ImportRow(models.Model):
    """The outcome of one input row of a job, in input order (``position``, from 0).

    Generic on purpose: a manifest line, a COCO image or annotation, an uploaded file, a zip
    member, a URL to fetch or an object under an S3 prefix all end as one of these. It is
    written in the same transaction as the data the row added, so a job run again after a crash
    skips exactly the rows that were committed (unique per job and position).
    """

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="rows")
    position = models.PositiveIntegerField()
    where = models.CharField(max_length=300, help_text="Line, id or member: how to find the row.")
    name = models.CharField(max_length=500, blank=True, help_text="File name or URL it names.")
    outcome = models.CharField(max_length=10, choices=RowOutcome.choices)
    reason = models.TextField(blank=True)
    image = models.ForeignKey(
        Image, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    caption = models.ForeignKey(
        Caption, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "position"]
        constraints = [
            models.UniqueConstraint(fields=["job", "position"], name="datasets_importrow_once"),
            models.CheckConstraint(
                condition=~Q(outcome="refused") | ~Q(reason=""),
                name="datasets_importrow_refusal_has_reason",
            ),
        ]
        indexes = [
            models.Index(fields=["job", "outcome", "position"], name="datasets_importrow_outcome")
        ]

    def __str__(self) -> str:
        return f"{self.where}: {self.outcome}"


class FetchState(models.TextChoices):
    PENDING = "pending", "Pending"
    CLAIMED = "claimed", "Being fetched"
    FETCHED = "fetched", "Fetched"
    FAILED = "failed", "Failed"


class FetchFailure(models.TextChoices):
    """Why a row of a collection could not be fetched (the breakdown on its page)."""

    INVALID = "invalid", "Not a usable row"
    DNS = "dns", "Name did not resolve"
    REFUSED = "refused", "Connection refused"
    TIMEOUT = "timeout", "Timed out"
    HTTP_STATUS = "http_status", "HTTP error status"
    TOO_LARGE = "too_large", "Too large"
    NOT_IMAGE = "not_image", "Not an image"
    REDIRECT_LOOP = "redirect_loop", "Redirect loop or too many redirects"
    BLOCKED = "blocked", "Blocked address"
    OPTED_OUT = "opted_out", "Opted out (X-Robots-Tag)"
    REJECTED = "rejected", "Refused by image checks"
    ERROR = "error", "Other network error"


class CollectItem(models.Model):
    """One row of a collection job (a URL of a manifest, or an object under an S3 prefix) and
    where its fetch stands.

    Workers claim pending rows (``claimed_by``, ``claimed_at``), fetch them outside any
    transaction, and then, in one transaction, write the row's ImportRow (through the normal
    ingest path) and set ``state`` to fetched or failed. A worker killed mid-batch leaves its rows
    claimed; once ``claimed_at`` is older than the claim lease they are claimed again, and since
    the ImportRow is unique per job and position, no row reaches the project twice.
    ``extra`` keeps the manifest's other columns as provenance.
    """

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="collect_items")
    position = models.PositiveIntegerField()
    url = models.CharField(max_length=1000)
    caption = models.TextField(blank=True)  # empty: the row names no caption
    license_name = models.CharField(max_length=200, blank=True)
    license_url = models.CharField(max_length=500, blank=True)
    extra = models.JSONField(default=dict, blank=True)
    host = models.CharField(max_length=255, blank=True)
    state = models.CharField(max_length=10, choices=FetchState.choices, default=FetchState.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_by = models.CharField(max_length=40, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # A transient failure (429/503, a timeout) is retried no sooner than this.
    not_before = models.DateTimeField(null=True, blank=True)
    failure = models.CharField(max_length=20, choices=FetchFailure.choices, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "position"]
        constraints = [
            models.UniqueConstraint(fields=["job", "position"], name="datasets_collectitem_once"),
            models.CheckConstraint(
                condition=~Q(state="failed") | ~Q(failure=""),
                name="datasets_collectitem_failure_has_reason",
            ),
        ]
        indexes = [
            models.Index(fields=["job", "state", "position"], name="datasets_collect_state"),
        ]

    def __str__(self) -> str:
        return f"{self.url} ({self.state})"


__all__ = [
    "ApiToken",
    "BalanceMethod",
    "Caption",
    "CaptionFlag",
    "ClusterMember",
    "CollectItem",
    "DecisionKind",
    "DuplicateCluster",
    "DuplicateDecision",
    "FetchFailure",
    "FetchState",
    "Image",
    "ImageFlag",
    "ImageFormat",
    "ImageSource",
    "ImageSplit",
    "ImportJob",
    "ImportKind",
    "ImportRow",
    "ImportStatus",
    "Invitation",
    "Membership",
    "Pair",
    "PairKind",
    "PairLabel",
    "Project",
    "Release",
    "ReleaseStatus",
    "Role",
    "RowOutcome",
    "Source",
    "Split",
]


class JobLease(models.Model):
    """One background job's place on the broker and its claim while it runs (config.jobs).

    A job is named by its Celery task (``name``) and what it works on (``key``, e.g. a project
    id): at most one message of a (name, key) waits on the broker (``pending``), and at most one
    worker runs it (``worker`` and ``heartbeat_at`` set while it runs). A request that comes
    while it runs sets ``again``, and the run that finishes sends one more message, so work asked
    for during a run is never lost and never queued twice. A heartbeat older than the job's
    stale time means its worker died (config.jobs.jobs_stale). ``options`` are what the pending
    request asked for (merged: e.g. ``{"full": true}``), ``progress`` what the running or last
    run reports (phase, done, total, seconds, written).
    """

    name = models.CharField(max_length=100)
    key = models.CharField(max_length=100)
    pending = models.BooleanField(default=False)
    again = models.BooleanField(default=False)
    options = models.JSONField(default=dict, blank=True)
    requested_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    runs = models.PositiveIntegerField(default=0)
    progress = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name", "key"], name="datasets_joblease_one_per_key")
        ]
        indexes = [models.Index(fields=["heartbeat_at"], name="datasets_joblease_running")]

    def __str__(self) -> str:
        return f"{self.name}({self.key})"

    @property
    def running(self) -> bool:
        return self.heartbeat_at is not None
