"""``DATASHEET.md``: a release described after Gebru et al., "Datasheets for Datasets" (2021).

The sections follow the paper's questions — motivation, composition, collection process,
preprocessing/cleaning/labelling, uses, distribution, maintenance — answered from a plain
:class:`DatasheetStats`. The composition is counted from the rows as they are exported
(:class:`CompositionTally` is a sink for :func:`datasets.releases.exporters.export_rows`), so the
datasheet describes exactly the files beside it. Rendering is deterministic: sorted keys,
fixed number formats, and no clock unless a date is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from datasets.releases.balance import BalanceSummary
from datasets.releases.diff import DiffCounts
from datasets.releases.exporters.rows import KINDS, LABEL_SOURCES, ReleaseRow
from datasets.releases.splits import SPLITS

DATASHEET = "DATASHEET.md"

DEFAULT_RECOMMENDED_USES = (
    "Training and evaluating image–text matching models: retrieval (Recall@K), binary "
    "match classification, contrastive (CLIP-style) pre-training and fine-tuning.",
    "Measuring a model's robustness to hard negatives: captions that almost describe an image.",
    "Comparing models across releases on the test split, which is stable from release to release.",
)
DEFAULT_OUT_OF_SCOPE_USES = (
    "Identifying, profiling or making decisions about people shown in the images.",
    "Training on the validation or test split and reporting results on them.",
    "Treating labels as ground truth beyond what their agreement figures support; "
    "low-confidence pairs are noisier than high-confidence ones.",
)
_LABEL_NAMES = {1: "match", 0: "no match"}


@dataclass(frozen=True)
class Composition:
    """What the release contains, counted from its rows.

    ``pairs`` maps (split, kind, label) to rows; ``label_sources`` (split, label_source) to
    rows; ``images`` and ``clusters`` count distinct images and duplicate clusters per split;
    ``licences`` counts images per licence name.
    """

    pairs: Mapping[tuple[str, str, int], int]
    label_sources: Mapping[tuple[str, str], int]
    images: Mapping[str, int]
    clusters: Mapping[str, int]
    licences: Mapping[str, int]
    judgments: int
    judged_pairs: int

    @property
    def total_pairs(self) -> int:
        return sum(self.pairs.values())

    def split_pairs(self, split: str) -> int:
        """Rows in one split."""
        return sum(n for (s, _kind, _label), n in self.pairs.items() if s == split)


class CompositionTally:
    """Counts rows into a :class:`Composition` as they stream past; a sink that writes no file.

    Needs the export row order (images contiguous within a split). Holds one set of cluster ids
    per split: a few MB for a million images.
    """

    def __init__(self) -> None:
        self._pairs: dict[tuple[str, str, int], int] = {}
        self._sources: dict[tuple[str, str], int] = {}
        self._images: dict[str, int] = {}
        self._clusters: dict[str, set[int]] = {}
        self._licences: dict[str, int] = {}
        self._judgments = 0
        self._judged = 0
        self._last_image: tuple[str, int] | None = None

    def write(self, row: ReleaseRow) -> None:
        split = row["split"]
        key = (split, row["kind"], row["label"])
        self._pairs[key] = self._pairs.get(key, 0) + 1
        source = (split, row["label_source"])
        self._sources[source] = self._sources.get(source, 0) + 1
        if row["n_judgments"]:
            self._judgments += row["n_judgments"]
            self._judged += 1
        image = (split, row["image_id"])
        if image != self._last_image:
            self._last_image = image
            self._images[split] = self._images.get(split, 0) + 1
            self._clusters.setdefault(split, set()).add(row["cluster_id"])
            self._licences[row["license"]] = self._licences.get(row["license"], 0) + 1

    def close(self) -> list[Path]:
        return []

    def abort(self) -> None:
        pass

    def composition(self) -> Composition:
        """Everything counted so far."""
        return Composition(
            pairs=dict(sorted(self._pairs.items())),
            label_sources=dict(sorted(self._sources.items())),
            images=dict(sorted(self._images.items())),
            clusters={split: len(ids) for split, ids in sorted(self._clusters.items())},
            licences=dict(sorted(self._licences.items())),
            judgments=self._judgments,
            judged_pairs=self._judged,
        )


@dataclass(frozen=True)
class CollectionStats:
    """How labels were collected. Rates are fractions in [0, 1]; ``None`` means not measured."""

    annotators: int
    judgments: int
    judgments_per_item: int
    gold_rate: float
    challenge_rate: float | None = None
    gold_accuracy: float | None = None
    trusted_sources: tuple[str, ...] = ()
    period: str = ""


@dataclass(frozen=True)
class AgreementStats:
    """Inter-annotator agreement and how labels were aggregated.

    ``figures`` maps a measure's name (e.g. "Krippendorff's α") to its value over the release's
    judgments; ``min_confidence`` is the filter a pair's aggregated label had to pass.
    """

    aggregation: str
    figures: Mapping[str, float] = field(default_factory=dict)
    min_confidence: float | None = None


@dataclass(frozen=True)
class PreprocessingStats:
    """Cleaning applied before the release: dedup thresholds, filters and what they removed."""

    phash_threshold: int | None = None
    dhash_threshold: int | None = None
    duplicates_excluded: int = 0
    flagged_excluded: int = 0
    low_agreement_excluded: int = 0
    filters: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasheetStats:
    """Everything ``DATASHEET.md`` states, as plain data.

    ``created`` is printed as given (pass the snapshot's date, or "" to leave it out);
    ``split_moves`` is the number of images whose split changed since the previous release.
    """

    project: str
    version: str
    composition: Composition
    collection: CollectionStats
    agreement: AgreementStats
    preprocessing: PreprocessingStats
    split_ratios: tuple[float, float, float]
    motivation: str = ""
    maintainer: str = ""
    created: str = ""
    previous_version: str | None = None
    # With no predecessor to compare with: the newest earlier release whose files were pruned.
    pruned_before: str | None = None
    balance: BalanceSummary | None = None
    diff: DiffCounts | None = None
    split_moves: int = 0
    images_included: bool = True
    formats: tuple[str, ...] = ()
    recommended_uses: tuple[str, ...] = DEFAULT_RECOMMENDED_USES
    out_of_scope_uses: tuple[str, ...] = DEFAULT_OUT_OF_SCOPE_USES


def render_datasheet(*, stats: DatasheetStats) -> str:
    """The datasheet as Markdown text, ending with a newline."""
    sections = [
        _title(stats),
        _motivation(stats),
        _composition(stats),
        _collection(stats),
        _preprocessing(stats),
        _uses(stats),
        _distribution(stats),
        _maintenance(stats),
    ]
    return "\n\n".join(section.rstrip("\n") for section in sections) + "\n"


def write_datasheet(*, directory: Path, stats: DatasheetStats) -> Path:
    """Write ``DATASHEET.md`` into ``directory``; returns its path."""
    path = Path(directory) / DATASHEET
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write(render_datasheet(stats=stats))
    return path


def _title(stats: DatasheetStats) -> str:
    lines = [f"# Datasheet: {stats.project} {stats.version}", ""]
    lines.append(
        'Written after Gebru et al., "Datasheets for Datasets" (Communications of the ACM, 2021).'
    )
    facts = [f"Version: {stats.version}"]
    if stats.created:
        facts.append(f"cut {stats.created}")
    facts.append(f"previous version: {stats.previous_version or 'none'}")
    lines.append(f"{'; '.join(facts)}.")
    return "\n".join(lines)


def _motivation(stats: DatasheetStats) -> str:
    lines = ["## Motivation", ""]
    if stats.motivation:
        lines += [stats.motivation.strip(), ""]
    lines.append(
        "The dataset pairs images with captions and records, for every pair, whether the "
        "caption matches the image, as judged by people. It exists to train and evaluate "
        "image–text matching models, including on hard negatives: captions chosen because "
        "a model found them close to the image."
    )
    if stats.maintainer:
        lines += ["", f"Created and maintained by {stats.maintainer}."]
    return "\n".join(lines)


def _composition(stats: DatasheetStats) -> str:
    comp = stats.composition
    splits = _ordered(comp.images.keys() | {s for s, _k, _l in comp.pairs}, SPLITS)
    lines = ["## Composition", ""]
    lines.append(
        f"{comp.total_pairs:,} image–caption pairs over {sum(comp.images.values()):,} images "
        f"in {sum(comp.clusters.values()):,} duplicate clusters. Each row of the pairs table "
        "is one pair: image and caption ids, the image's path and SHA-256, the caption text, "
        "the pair's kind, its aggregated label (1 match, 0 no match), where that label came "
        "from, its confidence and number of judgments, its split, cluster, training weight "
        "and the image's licence."
    )
    lines += ["", "### Pairs per split", ""]
    lines += _table(
        ["split", "images", "clusters", "pairs", "match", "no match"],
        [
            [
                split,
                _n(comp.images.get(split, 0)),
                _n(comp.clusters.get(split, 0)),
                _n(comp.split_pairs(split)),
                _n(_count(comp, split=split, label=1)),
                _n(_count(comp, split=split, label=0)),
            ]
            for split in splits
        ],
    )
    kinds = _ordered({k for _s, k, _l in comp.pairs}, KINDS)
    lines += ["", "### Pairs per kind and label", ""]
    header = ["kind", "label", *splits, "total"]
    rows = []
    for kind in kinds:
        for label in (1, 0):
            counts = [_count(comp, split=s, kind=kind, label=label) for s in splits]
            if any(counts):
                rows.append([kind, _LABEL_NAMES[label], *map(_n, counts), _n(sum(counts))])
    lines += _table(header, rows)
    sources = _ordered({src for _s, src in comp.label_sources}, LABEL_SOURCES)
    lines += ["", "### Where labels came from", ""]
    lines += _table(
        ["label source", *splits, "total"],
        [
            [
                source,
                *(_n(comp.label_sources.get((s, source), 0)) for s in splits),
                _n(sum(comp.label_sources.get((s, source), 0) for s in splits)),
            ]
            for source in sources
        ],
    )
    lines += [
        "",
        "crowd: aggregated from annotators' judgments; gold: a gold item with a known answer; "
        "adjudicated: decided by a project manager; import: a caption from a source the project "
        "trusts, a positive without judgments; construction: a random negative, a negative by "
        "construction until people judge it otherwise.",
    ]
    ratios = ", ".join(f"{s} {r:.0%}" for s, r in zip(SPLITS, stats.split_ratios, strict=True))
    lines += [
        "",
        "### Splits",
        "",
        f"Target ratios {ratios}, assigned per duplicate cluster: an image, its near-duplicates "
        "and all their pairs are in one split, so no image leaks from training into evaluation. "
        "A cluster keeps its split from release to release; a new cluster's split comes from a "
        "SHA-256 of a per-project salt and its canonical image id. When clusters merge, the "
        "merged cluster takes the most held-out of their splits (test, then val, then train).",
    ]
    if stats.previous_version is not None:
        lines += [
            "",
            f"Images that changed split since {stats.previous_version}: {stats.split_moves:,}.",
        ]
    lines += ["", "### Balance", ""]
    if stats.balance is None:
        lines.append("No balancing was applied; every row has weight 1.")
    else:
        lines.append(stats.balance.describe())
    return "\n".join(lines)


def _collection(stats: DatasheetStats) -> str:
    col, agr, comp = stats.collection, stats.agreement, stats.composition
    lines = ["## Collection process", ""]
    if col.period:
        lines += [f"Collected {col.period}.", ""]
    per_pair = comp.judgments / comp.judged_pairs if comp.judged_pairs else 0.0
    lines += _table(
        ["measure", "value"],
        [
            ["annotators", _n(col.annotators)],
            ["judgments (all, project)", _n(col.judgments)],
            ["judgments per item (target)", _n(col.judgments_per_item)],
            ["judged pairs in this release", _n(comp.judged_pairs)],
            ["judgments per judged pair (mean)", f"{per_pair:.2f}"],
            ["gold rate", _pct(col.gold_rate)],
            ["challenge rate", _pct(col.challenge_rate)],
            ["annotators' accuracy on gold (mean)", _pct(col.gold_accuracy)],
        ],
    )
    lines += [
        "",
        "Annotators judged whether a caption matches an image; every pair was shown to several "
        "annotators independently. Gold items with known answers were mixed in to measure each "
        "annotator's accuracy, and challenge items (hard negatives) to test attention.",
    ]
    if col.trusted_sources:
        lines += [
            "",
            "Captions from these trusted sources count as positives without judgments: "
            + ", ".join(col.trusted_sources)
            + ".",
        ]
    lines += ["", "### Agreement", ""]
    lines.append(f"Labels were aggregated by {agr.aggregation}.")
    if agr.figures:
        lines += [""]
        lines += _table(
            ["measure", "value"],
            [[name, f"{agr.figures[name]:.3f}"] for name in sorted(agr.figures)],
        )
    return "\n".join(lines)


def _preprocessing(stats: DatasheetStats) -> str:
    pre, agr = stats.preprocessing, stats.agreement
    lines = ["## Preprocessing, cleaning and labelling", ""]
    items = []
    if pre.phash_threshold is not None:
        dedup = (
            "Near-duplicate images grouped by perceptual hash: "
            f"pHash within {pre.phash_threshold} bits"
        )
        if pre.dhash_threshold is not None:
            dedup += f" and dHash within {pre.dhash_threshold} bits"
        items.append(
            dedup + f"; only each cluster's canonical image is released "
            f"({_n(pre.duplicates_excluded)} duplicates excluded)."
        )
    items.append(f"Flagged items excluded: {_n(pre.flagged_excluded)}.")
    if agr.min_confidence is not None:
        items.append(
            f"Pairs whose aggregated label has confidence below {agr.min_confidence:g} excluded: "
            f"{_n(pre.low_agreement_excluded)}."
        )
    items += list(pre.filters)
    lines += [f"- {item}" for item in items]
    lines += [
        "",
        "The raw judgments are not part of the release; each pair carries its aggregated "
        "label, confidence and number of judgments.",
    ]
    return "\n".join(lines)


def _uses(stats: DatasheetStats) -> str:
    lines = ["## Uses", "", "Recommended:", ""]
    lines += [f"- {use}" for use in stats.recommended_uses]
    lines += ["", "Not recommended:", ""]
    lines += [f"- {use}" for use in stats.out_of_scope_uses]
    lines += [
        "",
        "Train on `train`, choose models on `val`, report on `test`. Use the `weight` column "
        "for training losses or sampling (see Balance); ignore it for evaluation.",
    ]
    return "\n".join(lines)


def _distribution(stats: DatasheetStats) -> str:
    comp = stats.composition
    lines = ["## Distribution", ""]
    if stats.formats:
        lines += [
            f"Formats: {', '.join(stats.formats)}. "
            "`manifest.json` lists every file with its SHA-256 and size."
        ]
    # Each image is stored at most once per release (copies and shards are never both made).
    if stats.images_included:
        images = (
            "Each image is stored once, under `images/<first two hex digits>/<sha256>.<ext>`; "
            "`image_path` in the pairs tables is relative to the release."
        )
    elif "webdataset" in stats.formats:
        images = (
            "Each image is stored once, inside the WebDataset shards (one sample per image); "
            "`image_path` in the pairs tables names it in Concord's media storage and "
            "`image_sha256` identifies its content."
        )
    else:
        images = (
            "Images are not included; `image_path` names each one in Concord's media storage "
            "and `image_sha256` identifies its content."
        )
    lines += ["", images, "", "### Licences", "", "Each image keeps its own licence:", ""]
    lines += _table(
        ["licence", "images"],
        [[name or "(none given)", _n(count)] for name, count in sorted(comp.licences.items())],
    )
    return "\n".join(lines)


def _maintenance(stats: DatasheetStats) -> str:
    lines = ["## Maintenance", ""]
    lines.append(
        "Releases are immutable and numbered; a new release is cut from the current labels and "
        "keeps every image in the split it had before."
    )
    if stats.diff is None or stats.previous_version is None:
        if stats.pruned_before:
            lines += [
                "",
                f"No earlier release is kept to compare with ({stats.pruned_before} and any "
                "before it were pruned): `diff.jsonl` lists every pair as added.",
            ]
        else:
            lines += ["", "This is the first release."]
        return "\n".join(lines)
    diff = stats.diff
    lines += ["", f"Changes since {stats.previous_version} (pairs; listed in `diff.jsonl`):", ""]
    lines += _table(
        ["change", "pairs"],
        [
            ["added", _n(diff.added)],
            ["removed", _n(diff.removed)],
            ["relabelled", _n(diff.relabelled)],
            ["— became a match", _n(diff.became_match)],
            ["— became no match", _n(diff.became_no_match)],
            ["moved to another split", _n(diff.moved)],
            ["kind changed", _n(diff.kind_changed)],
            ["unchanged", _n(diff.unchanged)],
        ],
    )
    return "\n".join(lines)


def _count(comp: Composition, *, split: str, label: int, kind: str | None = None) -> int:
    return sum(
        n
        for (s, k, lab), n in comp.pairs.items()
        if s == split and lab == label and (kind is None or k == kind)
    )


def _ordered(values: set[str] | frozenset[str], known: Sequence[str]) -> list[str]:
    """Known values in their canonical order, then any others alphabetically."""
    return [v for v in known if v in values] + sorted(v for v in values if v not in known)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _n(value: int) -> str:
    return f"{value:,}"


def _pct(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.1%}"
