"""The upload and import forms: files (images or zips) in one field; a manifest with its images."""

from django import forms
from django.core.validators import RegexValidator

from datasets.ingest.sources import ENCODINGS
from datasets.models import ImportKind


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    widget = MultipleFileInput

    def clean(self, data, initial=None):
        files = data if isinstance(data, list | tuple) else [data]
        cleaned = [super(MultipleFileField, self).clean(item, initial) for item in files if item]
        if self.required and not cleaned:
            raise forms.ValidationError(self.error_messages["required"], code="required")
        return cleaned


class UploadForm(forms.Form):
    files = MultipleFileField(
        help_text="JPEG, PNG or WebP images, or zip archives of them.",
        widget=MultipleFileInput(attrs={"accept": "image/jpeg,image/png,image/webp,.zip"}),
    )


class ImportForm(forms.Form):
    kind = forms.ChoiceField(
        choices=[
            (ImportKind.MANIFEST, "CSV or JSONL manifest (image, caption[, license, source_url])"),
            (ImportKind.COCO, "COCO captions JSON"),
        ],
        widget=forms.RadioSelect,
        initial=ImportKind.MANIFEST,
    )
    manifest = forms.FileField(
        required=False,
        label="Manifest or COCO file",
        help_text="Leave empty when the zip below holds it beside the images.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.tsv,.jsonl,.ndjson,.json"}),
    )
    encoding = forms.ChoiceField(
        choices=list(ENCODINGS.items()),
        initial="auto",
        required=False,
        label="Text encoding",
        help_text="Leave on Detect unless the job's note shows accents read wrongly.",
    )
    images = MultipleFileField(
        required=False,
        label="Images",
        help_text="The images it names: a zip of them (with the manifest, if you like), or the "
        "files themselves.",
        widget=MultipleFileInput(attrs={"accept": "image/jpeg,image/png,image/webp,.zip"}),
    )

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("manifest") and not cleaned.get("images"):
            raise forms.ValidationError(
                "Choose the manifest or COCO file, or a zip that holds it with the images."
            )
        return cleaned


# Checked when a collection is asked for (page and API alike), not found out later by a worker.
# Bucket names as S3 clients accept them (boto3's own pattern, which admits legacy names).
BUCKET_NAME = RegexValidator(
    r"\A[a-zA-Z0-9._-]{3,63}\Z",
    "A bucket name is 3 to 63 letters, digits, dots, hyphens or underscores.",
)
NO_CONTROLS = RegexValidator(
    r"[\x00-\x1f\x7f]", "Control characters are not allowed here.", inverse_match=True
)


class CollectForm(forms.Form):
    manifest = forms.FileField(
        required=False,
        label="URL manifest",
        help_text="CSV, TSV, JSONL or Parquet with a column of image URLs and, optionally, "
        "captions (img2dataset's input shapes); other columns are kept as provenance.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.tsv,.jsonl,.ndjson,.parquet"}),
    )
    url_column = forms.CharField(
        max_length=100, initial="url", label="URL column", validators=[NO_CONTROLS]
    )
    caption_column = forms.CharField(
        max_length=100, initial="caption", label="Caption column", validators=[NO_CONTROLS]
    )
    bucket = forms.CharField(
        max_length=63,
        required=False,
        validators=[BUCKET_NAME],
        label="Or an S3 bucket",
        help_text="Every JPEG, PNG and WebP under the prefix, on the configured S3 endpoint.",
    )
    prefix = forms.CharField(
        max_length=900, required=False, label="Prefix", validators=[NO_CONTROLS]
    )
    captions_key = forms.CharField(
        max_length=900,
        required=False,
        validators=[NO_CONTROLS],
        label="Captions manifest in the bucket",
        help_text="Optional: a CSV/JSONL/Parquet object with key and caption columns; without "
        "it, photo.txt beside photo.jpg is its caption.",
    )

    def clean(self):
        cleaned = super().clean()
        if problem := collect_source_problem(cleaned):
            raise forms.ValidationError(problem)
        return cleaned


COLLECT_ONE_SOURCE = "Send either a URL manifest ('manifest') or an S3 prefix ('bucket', 'prefix')."
COLLECT_BUCKET_ONLY = (
    "{fields} only apply to an S3 bucket ('bucket'); a URL manifest carries its captions in"
    " its own caption column."
)


def collect_source_problem(data: dict) -> str:
    """Why a collection request's sources do not fit together, or "": exactly one of a URL
    manifest and a bucket, and the bucket's own fields (prefix, captions manifest) only with a
    bucket. The page and the API give the same words."""
    if bool(data.get("manifest")) == bool(data.get("bucket")):
        return COLLECT_ONE_SOURCE
    if data.get("manifest"):
        extra = [f"'{name}'" for name in ("prefix", "captions_key") if data.get(name)]
        if extra:
            return COLLECT_BUCKET_ONLY.format(fields=" and ".join(extra))
    return ""
