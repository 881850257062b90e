"""DATASHEET.md: every section of Gebru et al. answered from plain stats, deterministically."""

from __future__ import annotations

from datasets.releases.balance import BalanceTally, LabelCounts, apply_balance, plan_balance
from datasets.releases.datasheet import (
    DATASHEET,
    AgreementStats,
    CollectionStats,
    CompositionTally,
    DatasheetStats,
    PreprocessingStats,
    render_datasheet,
    write_datasheet,
)
from datasets.releases.diff import diff_counts
from datasets.releases.exporters import export_rows


def make_rows() -> list[dict[str, object]]:
    """Ordered by (split, image_id, pair_id): 3 test images, 4 train images, 1 val image."""
    rows = []
    pair_id = 0
    layout = [("test", 3), ("train", 4), ("val", 1)]
    image_id = 0
    for split, images in layout:
        for _ in range(images):
            image_id += 1
            for kind, label, source, judgments in [
                ("positive", 1, "import", 0),
                ("random_negative", 0, "construction", 0),
                ("hard_negative", 0, "crowd", 3),
            ]:
                pair_id += 1
                rows.append(
                    {
                        "pair_id": pair_id,
                        "image_id": image_id,
                        "caption_id": pair_id,
                        "image_path": f"images/{image_id}.jpg",
                        "image_sha256": f"{image_id:064x}",
                        "caption": f"caption {pair_id}",
                        "kind": kind,
                        "label": label,
                        "label_source": source,
                        "confidence": 0.9,
                        "n_judgments": judgments,
                        "split": split,
                        # images 1 and 2 are one duplicate cluster
                        "cluster_id": 1 if image_id == 2 else image_id,
                        "weight": 1.0,
                        "license": "CC BY 4.0" if image_id % 2 else "CC0",
                    }
                )
    return rows


def make_stats(**overrides) -> DatasheetStats:
    rows = make_rows()
    tally = CompositionTally()
    balance_tally = BalanceTally()
    plan = plan_balance(
        train=LabelCounts(positives=4, negatives=8), target_ratio=1.0, method="oversample", seed=1
    )
    export_rows(rows=apply_balance(rows=rows, plan=plan, tally=balance_tally), sinks=[tally])
    old = [(r["pair_id"], r["label"], r["split"], r["kind"]) for r in rows[:-1]]
    new = [
        (r["pair_id"], 1 - r["label"] if r["pair_id"] == 2 else r["label"], r["split"], r["kind"])
        for r in rows
    ]
    values = {
        "project": "Street scenes",
        "version": "v2",
        "previous_version": "v1",
        "created": "2026-03-01",
        "motivation": "Street photographs paired with descriptions for retrieval research.",
        "maintainer": "the Concord team",
        "composition": tally.composition(),
        "collection": CollectionStats(
            annotators=12,
            judgments=5_400,
            judgments_per_item=3,
            gold_rate=0.1,
            gold_accuracy=0.934,
            trusted_sources=("COCO import",),
        ),
        "agreement": AgreementStats(
            aggregation="Dawid–Skene",
            figures={"Krippendorff's α": 0.712, "Fleiss' κ": 0.7049},
            min_confidence=0.7,
        ),
        "preprocessing": PreprocessingStats(
            phash_threshold=8,
            dhash_threshold=20,
            duplicates_excluded=17,
            flagged_excluded=2,
            low_agreement_excluded=40,
            filters=("Captions shorter than 3 words excluded.",),
        ),
        "split_ratios": (0.7, 0.1, 0.2),
        "balance": balance_tally.summary(plan=plan),
        "diff": diff_counts(old=old, new=new),
        "split_moves": 3,
        "formats": ("JSONL", "CSV", "Parquet", "COCO captions", "WebDataset"),
    }
    values.update(overrides)
    return DatasheetStats(**values)


def test_composition_is_counted_from_the_rows():
    tally = CompositionTally()
    export_rows(rows=make_rows(), sinks=[tally])
    comp = tally.composition()
    assert comp.images == {"test": 3, "train": 4, "val": 1}
    assert comp.clusters == {"test": 2, "train": 4, "val": 1}
    assert comp.pairs[("train", "hard_negative", 0)] == 4
    assert comp.label_sources[("test", "import")] == 3
    assert comp.licences == {"CC BY 4.0": 4, "CC0": 4}
    assert (comp.judgments, comp.judged_pairs) == (24, 8)
    assert comp.total_pairs == 24


def test_datasheet_answers_every_section():
    text = render_datasheet(stats=make_stats())
    for heading in [
        "# Datasheet: Street scenes v2",
        "## Motivation",
        "## Composition",
        "### Pairs per split",
        "### Pairs per kind and label",
        "### Where labels came from",
        "### Splits",
        "### Balance",
        "## Collection process",
        "### Agreement",
        "## Preprocessing, cleaning and labelling",
        "## Uses",
        "## Distribution",
        "### Licences",
        "## Maintenance",
    ]:
        assert f"\n{heading}\n" in f"\n{text}"
    assert "cut 2026-03-01; previous version: v1." in text
    assert (
        "| train | 4 | 4 | 12 | 4 | 8 |\n| val | 1 | 1 | 3 | 1 | 2 |\n| test | 3 | 2 | 9 | 3 | 6 |"
        in text
    )
    assert "| hard_negative | no match | 4 | 1 | 3 | 8 |" in text
    assert "| import | 4 | 1 | 3 | 8 |" in text
    assert "| gold rate | 10.0% |" in text
    assert "| annotators' accuracy on gold (mean) | 93.4% |" in text
    assert "| judgments per judged pair (mean) | 3.00 |" in text
    assert "| Krippendorff's α | 0.712 |" in text
    assert "Dawid–Skene" in text
    assert "pHash within 8 bits and dHash within 20 bits" in text
    assert "(17 duplicates excluded)" in text
    assert "confidence below 0.7 excluded: 40" in text
    assert "Captions shorter than 3 words excluded." in text
    assert "Positives were over-sampled by weight: each has weight 2" in text
    assert "val: 1 positive, 2 negatives" in text
    assert "| CC0 | 4 |" in text
    assert "Images that changed split since v1: 3." in text
    assert "| added | 1 |" in text
    assert "| relabelled | 1 |" in text
    assert "train 70%, val 10%, test 20%" in text
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_datasheet_is_deterministic_and_written_to_the_release(tmp_path):
    stats = make_stats()
    path = write_datasheet(directory=tmp_path, stats=stats)
    assert path.name == DATASHEET
    assert path.read_text(encoding="utf-8") == render_datasheet(stats=make_stats())


def test_first_release_without_balance_or_date():
    text = render_datasheet(
        stats=make_stats(previous_version=None, diff=None, balance=None, created="")
    )
    assert "previous version: none." in text
    assert "; cut " not in text
    assert "This is the first release." in text
    assert "No balancing was applied" in text
    assert "changed split since" not in text


def test_datasheet_says_how_csv_cells_are_neutralised():
    assert "OWASP" in render_datasheet(stats=make_stats(formats=("jsonl", "csv", "parquet")))
    assert "OWASP" not in render_datasheet(stats=make_stats(formats=("jsonl", "parquet")))
