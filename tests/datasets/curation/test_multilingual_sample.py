"""Flickr8K-CN (the sample's Chinese captions of the Flickr8k-1k images) through the quality
filters, the importer, cleaning and a release, with default settings."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest
from django.core.management import call_command

from datasets.curation.quality import CAPTION_TOO_SHORT, caption_quality_flags
from datasets.curation.services.cleaning import CAPTION_DUPLICATE, project_clean
from datasets.models import Caption, CaptionFlag, Source
from datasets.releases.services import (
    release_build,
    release_download,
    release_options,
    release_request,
)
from tests.sample_data import SHARED_DATA

FLICKR = SHARED_DATA / "flickr8k-1k"
requires_shared = pytest.mark.skipif(
    not (FLICKR / "captions_zh.csv").is_file(),
    reason=f"sample data {FLICKR / 'captions_zh.csv'} is absent",
)


def _rows() -> list[dict[str, str]]:
    with open(FLICKR / "captions_zh.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@requires_shared
def test_default_quality_flags_fewer_than_one_percent_of_chinese_captions():
    rows = _rows()
    flagged = {
        r["caption"]: [f.code for f in caption_quality_flags(text=r["caption"])]
        for r in rows
        if caption_quality_flags(text=r["caption"])
    }

    assert len(rows) == 5000
    # The two one-word captions, "child." and "puppy.", as their English equivalents would be.
    assert flagged == {"小孩。": [CAPTION_TOO_SHORT.code], "小狗。": [CAPTION_TOO_SHORT.code]}


@requires_shared
@pytest.mark.django_db
def test_chinese_import_clean_and_release_keep_every_distinct_caption(project, tmp_path):
    project.language = "zh"
    project.trusted_sources = [Source.MANIFEST]
    project.save()
    rows = _rows()
    names = sorted({r["image"] for r in rows})[:60]
    subset = [r for r in rows if r["image"] in names]
    manifest = tmp_path / "captions_zh.csv"
    with open(manifest, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "caption"])
        writer.writeheader()
        writer.writerows(subset)

    call_command("import_manifest", project.slug, str(manifest), "--images", str(FLICKR / "images"))
    project_clean(project=project)

    captions = Caption.objects.filter(image__project=project)
    assert captions.count() == len(subset)
    flags = Counter(
        CaptionFlag.objects.filter(caption__image__project=project).values_list("code", flat=True)
    )
    # Only repeats of an earlier caption of the same image: the source has identical rows
    # (the same sentence written twice for one image), and a few near repeats.
    repeated = len(subset) - len({(r["image"], r["caption"]) for r in subset})
    assert set(flags) <= {CAPTION_DUPLICATE}
    assert repeated <= flags[CAPTION_DUPLICATE] <= repeated + len(subset) // 50

    release = release_request(
        project=project, user=None, options=release_options(project=project, formats=["jsonl"])
    )
    release = release_build(release_id=release.pk)
    release_download(release=release, target=tmp_path / "downloaded")
    pairs = [
        json.loads(line)
        for line in (tmp_path / "downloaded" / "pairs.jsonl").read_text().splitlines()
    ]
    released = {p["caption"] for p in pairs if p["label"] == 1}
    kept = set(
        captions.exclude(flags__overridden_at__isnull=True, flags__isnull=False).values_list(
            "text", flat=True
        )
    )
    assert released == kept
    assert (
        len({(p["image_id"], p["caption"]) for p in pairs if p["label"] == 1})
        == len(subset) - flags[CAPTION_DUPLICATE]
    )
