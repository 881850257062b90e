"""Label aggregation: majority vote and Dawid–Skene over plain judgment tables.

A judgment table is a pandas DataFrame (or a sequence of :class:`Judgment` records) with one
row per judgment and the columns ``item``, ``annotator`` and ``label``. Items and annotators
are any hashable ids (database primary keys in practice); labels are small ints, for pair
judgments 1 = match and 0 = no match. "Unsure" answers are not labels: the caller drops them
(and the judgments of suspended annotators) before calling anything here, so every row is a
vote. One annotator judges an item at most once.

Both aggregators return, per item, the label, a confidence in [0, 1], the number of
judgments and a status:

- ``pending``: fewer than ``target_judgments`` judgments so far;
- ``agreed``: at least ``target_judgments`` judgments and confidence >= ``agreement_threshold``;
- ``disputed``: at least ``target_judgments`` judgments and confidence below the threshold.

Confidence is the vote share of the winning label for majority vote and the Dawid–Skene
posterior probability of the winning label. The threshold must lie in (0.5, 1], so at most one
label can reach it and a tie is never agreed. Whether a disputed item gets another judgment or
goes to a manager (the project maximum) is the queue's decision, not the status's.

Dawid–Skene runs on a vectorised numpy EM by default. It reproduces crowd-kit's
``DawidSkene`` step for step (same initialisation from majority vote, same clipping, same
stopping rule; the tests compare both). crowd-kit joins and groups pandas frames on every
iteration: about 1 s per iteration at a million judgments, so 100 iterations blow a 30 s budget,
while index arrays and ``np.bincount`` take under 0.1 s per iteration. ``engine="crowdkit"``
runs crowd-kit itself, for checking.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

ITEM = "item"
ANNOTATOR = "annotator"
LABEL = "label"

PENDING = "pending"
AGREED = "agreed"
DISPUTED = "disputed"

Engine = Literal["numpy", "crowdkit"]

MISSING_COLUMNS = "Judgments need the columns item, annotator and label; missing: {missing}."
MISSING_VALUES = "Judgments have {count} rows without an item, annotator or label."
DUPLICATE_JUDGMENTS = (
    "{count} judgments repeat an (item, annotator) pair; keep one judgment per annotator and item."
)
NON_INTEGER_LABELS = "Labels must be integers (1 = match, 0 = no match, ...)."
INVALID_TARGET = "The target number of judgments must be at least 1, got {target}."
INVALID_THRESHOLD = "The agreement threshold must be above 0.5 and at most 1, got {threshold}."
UNKNOWN_ENGINE = "Unknown aggregation engine {engine!r}; use 'numpy' or 'crowdkit'."

# crowd-kit clips probabilities and error rates at this value; matching it keeps the numpy
# engine's results identical to crowd-kit's.
_EPS = 1e-10


class Judgment(NamedTuple):
    """One vote: ``annotator`` gave ``label`` to ``item``."""

    item: Hashable
    annotator: Hashable
    label: int


Judgments = pd.DataFrame | Sequence[Judgment]


@dataclass(frozen=True)
class EncodedJudgments:
    """A judgment table as dense integer codes, the form every algorithm here works on.

    ``item[j]``, ``annotator[j]`` and ``label[j]`` are positions in ``items``, ``annotators``
    and ``labels`` (each sorted), in the row order of the input.
    """

    items: pd.Index
    annotators: pd.Index
    labels: pd.Index
    item: np.ndarray
    annotator: np.ndarray
    label: np.ndarray

    @property
    def n_judgments(self) -> int:
        return len(self.item)

    def frame(self) -> pd.DataFrame:
        """The judgments back as a table, in the original row order."""
        return pd.DataFrame(
            {
                ITEM: self.items.to_numpy()[self.item],
                ANNOTATOR: self.annotators.to_numpy()[self.annotator],
                LABEL: self.labels.to_numpy()[self.label],
            }
        )

    def item_label_counts(self) -> np.ndarray:
        """Votes per item and label, shape (items, labels)."""
        n_labels = len(self.labels)
        counts = np.bincount(
            self.item * n_labels + self.label, minlength=len(self.items) * n_labels
        )
        return counts.reshape(len(self.items), n_labels)


def judgments_frame(*, judgments: Judgments) -> pd.DataFrame:
    """Return the judgments as a DataFrame with at least the item, annotator and label columns."""
    if isinstance(judgments, pd.DataFrame):
        frame = judgments
    else:
        frame = pd.DataFrame.from_records(list(judgments), columns=[ITEM, ANNOTATOR, LABEL])
    missing = [column for column in (ITEM, ANNOTATOR, LABEL) if column not in frame.columns]
    if missing:
        raise ValueError(MISSING_COLUMNS.format(missing=", ".join(missing)))
    return frame


def encode_judgments(
    *, judgments: Judgments | EncodedJudgments, extra_labels: Sequence[int] = ()
) -> EncodedJudgments:
    """Encode a judgment table as integer codes, rejecting missing values and repeated votes.

    Already encoded judgments come back unchanged, so a caller computing several statistics
    encodes once. ``extra_labels`` joins the label set even when nobody chose them (gold answers, or the
    project's full label set so that confusion matrices have a fixed shape).
    """
    if isinstance(judgments, EncodedJudgments) and set(extra_labels) <= set(judgments.labels):
        return judgments
    if isinstance(judgments, EncodedJudgments):
        judgments = judgments.frame()
    frame = judgments_frame(judgments=judgments)
    item, items = pd.factorize(frame[ITEM], sort=True)
    annotator, annotators = pd.factorize(frame[ANNOTATOR], sort=True)
    label_values = frame[LABEL].to_numpy()
    missing = (item < 0) | (annotator < 0) | pd.isna(label_values)
    if missing.any():
        raise ValueError(MISSING_VALUES.format(count=int(missing.sum())))
    as_int = label_values.astype(np.int64)
    if (as_int != label_values).any():
        raise ValueError(NON_INTEGER_LABELS)
    labels = pd.Index(np.union1d(as_int, np.asarray(extra_labels, dtype=np.int64)))
    label = labels.get_indexer(as_int)

    pair = np.sort(item.astype(np.int64) * len(annotators) + annotator)
    repeated = int(np.count_nonzero(pair[1:] == pair[:-1]))
    if repeated:
        raise ValueError(DUPLICATE_JUDGMENTS.format(count=repeated))

    return EncodedJudgments(
        items=items.rename(ITEM),
        annotators=annotators.rename(ANNOTATOR),
        labels=labels.rename(LABEL),
        item=item.astype(np.intp),
        annotator=annotator.astype(np.intp),
        label=label.astype(np.intp),
    )


def item_status(
    *,
    judgments: np.ndarray,
    confidence: np.ndarray,
    target_judgments: int,
    agreement_threshold: float,
) -> np.ndarray:
    """Status per item from its judgment count and confidence (see the module docstring)."""
    _check_status_arguments(
        target_judgments=target_judgments, agreement_threshold=agreement_threshold
    )
    return np.select(
        [judgments < target_judgments, confidence >= agreement_threshold],
        [PENDING, AGREED],
        default=DISPUTED,
    ).astype(object)


def majority_vote(
    *,
    judgments: Judgments,
    target_judgments: int,
    agreement_threshold: float,
    engine: Engine = "numpy",
) -> pd.DataFrame:
    """Aggregate by majority vote.

    Returns a DataFrame indexed by item with the columns ``label``, ``confidence`` (the
    winning label's vote share), ``judgments`` and ``status``. A tie goes to the smallest
    label here; crowd-kit breaks ties by its column order, so the engines agree only on
    shares and on untied items.
    """
    _check_status_arguments(
        target_judgments=target_judgments, agreement_threshold=agreement_threshold
    )
    encoded = encode_judgments(judgments=judgments)
    counts = encoded.item_label_counts()
    totals = counts.sum(axis=1)
    if engine == "numpy":
        shares = counts / totals[:, None]
    elif engine == "crowdkit":
        shares = _crowdkit_majority_shares(encoded)
    else:
        raise ValueError(UNKNOWN_ENGINE.format(engine=engine))
    return _items_frame(
        encoded=encoded,
        probabilities=shares,
        totals=totals,
        target_judgments=target_judgments,
        agreement_threshold=agreement_threshold,
    )


@dataclass(frozen=True)
class DawidSkeneResult:
    """Dawid–Skene estimates.

    ``items``: as :func:`majority_vote`, with the posterior of the winning label as confidence.
    ``posteriors``: items × labels, the posterior probability of each true label.
    ``confusion``: shape (annotators, labels, labels); ``confusion[a, t, k]`` is the estimated
    probability that annotator ``a`` answers ``labels[k]`` when the truth is ``labels[t]``
    (rows sum to 1; a label the annotator never gave has probability 0).
    ``priors``: the estimated share of each true label.
    """

    items: pd.DataFrame
    posteriors: pd.DataFrame
    confusion: np.ndarray
    annotators: pd.Index
    labels: pd.Index
    priors: pd.Series
    iterations: int
    converged: bool

    def confusion_matrix(self, annotator: Hashable) -> pd.DataFrame:
        """One annotator's confusion matrix: rows are true labels, columns their answers."""
        position = self.annotators.get_loc(annotator)
        return pd.DataFrame(
            self.confusion[position],
            index=self.labels.rename("true"),
            columns=self.labels.rename("answer"),
        )


def dawid_skene(
    *,
    judgments: Judgments,
    target_judgments: int,
    agreement_threshold: float,
    gold: Mapping[Hashable, int] | pd.Series | None = None,
    max_iterations: int = 100,
    tolerance: float = 1e-5,
    engine: Engine = "numpy",
) -> DawidSkeneResult:
    """Aggregate with Dawid–Skene (full confusion matrix per annotator, EM as in crowd-kit).

    ``gold`` maps items to known labels (gold items, manager adjudications); their posteriors
    are pinned to the known label on every iteration, which anchors the annotators'
    confusion matrices. Gold items without judgments are ignored. EM stops after
    ``max_iterations`` or when the per-judgment evidence lower bound improves by less than
    ``tolerance``.
    """
    _check_status_arguments(
        target_judgments=target_judgments, agreement_threshold=agreement_threshold
    )
    frame = judgments_frame(judgments=judgments)
    gold_series = _judged_gold(gold=gold, items=frame[ITEM])
    encoded = encode_judgments(judgments=frame, extra_labels=gold_series.unique())
    gold_items = encoded.items.get_indexer(gold_series.index)
    gold_labels = encoded.labels.get_indexer(gold_series.to_numpy())

    if encoded.n_judgments == 0:
        n_labels = len(encoded.labels)
        fit = _Fit(
            posteriors=np.zeros((0, n_labels)),
            errors=np.zeros((0, n_labels, n_labels)),
            priors=np.full(n_labels, np.nan),
            iterations=0,
            converged=True,
        )
    elif engine == "numpy":
        fit = _dawid_skene_numpy(
            encoded=encoded,
            gold_items=gold_items,
            gold_labels=gold_labels,
            max_iterations=max_iterations,
            tolerance=tolerance,
        )
    elif engine == "crowdkit":
        fit = _dawid_skene_crowdkit(
            encoded=encoded,
            gold_items=gold_items,
            gold_labels=gold_labels,
            max_iterations=max_iterations,
            tolerance=tolerance,
        )
    else:
        raise ValueError(UNKNOWN_ENGINE.format(engine=engine))

    totals = np.bincount(encoded.item, minlength=len(encoded.items))
    return DawidSkeneResult(
        items=_items_frame(
            encoded=encoded,
            probabilities=fit.posteriors,
            totals=totals,
            target_judgments=target_judgments,
            agreement_threshold=agreement_threshold,
        ),
        posteriors=pd.DataFrame(fit.posteriors, index=encoded.items, columns=encoded.labels),
        confusion=fit.errors.transpose(0, 2, 1),
        annotators=encoded.annotators,
        labels=encoded.labels,
        priors=pd.Series(fit.priors, index=encoded.labels, name="prior"),
        iterations=fit.iterations,
        converged=fit.converged,
    )


class _Fit(NamedTuple):
    posteriors: np.ndarray  # (items, labels)
    errors: np.ndarray  # (annotators, answer, truth), crowd-kit's orientation
    priors: np.ndarray
    iterations: int
    converged: bool


def _dawid_skene_numpy(
    *,
    encoded: EncodedJudgments,
    gold_items: np.ndarray,
    gold_labels: np.ndarray,
    max_iterations: int,
    tolerance: float,
) -> _Fit:
    n_items, n_annotators, n_labels = (
        len(encoded.items),
        len(encoded.annotators),
        len(encoded.labels),
    )
    n_rows = n_annotators * n_labels
    # Judgments grouped by item: the gathers and bincounts below then walk memory in order.
    order = np.argsort(encoded.item, kind="stable")
    item = encoded.item[order]
    # Row of each judgment in the (annotator, answer) × truth error table.
    answer_row = (encoded.annotator * n_labels + encoded.label)[order]
    answered = np.bincount(answer_row, minlength=n_rows) > 0

    # Arrays are laid out truth-first — posteriors (labels, items), error tables (labels,
    # rows) — so that each per-label slice is contiguous.
    def m_step(posteriors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Expected answer counts per (annotator, answer) row and true label, and the error
        rates from them."""
        counts = np.stack(
            [
                np.bincount(answer_row, weights=posteriors[truth][item], minlength=n_rows)
                for truth in range(n_labels)
            ]
        )
        # crowd-kit clips only the (annotator, answer) rows that occur; answers an annotator
        # never gave keep probability 0 and never enter the likelihood.
        errors = counts.copy()
        errors[:, answered] = np.maximum(errors[:, answered], _EPS)
        errors = errors.reshape(n_labels, n_annotators, n_labels)
        errors /= errors.sum(axis=2, keepdims=True)
        return counts, errors.reshape(n_labels, n_rows)

    def log_of_answered(errors: np.ndarray) -> np.ndarray:
        return np.log(errors, out=np.zeros_like(errors), where=answered[None, :])

    def pin_gold(posteriors: np.ndarray) -> np.ndarray:
        posteriors[:, gold_items] = 0.0
        posteriors[gold_labels, gold_items] = 1.0
        return posteriors

    votes = encoded.item_label_counts().T
    posteriors = pin_gold(votes / votes.sum(axis=0))
    priors = np.maximum(posteriors.mean(axis=1), _EPS)
    _, errors = m_step(posteriors)
    log_errors = log_of_answered(errors)

    loss = -np.inf
    iterations = 0
    converged = False
    for _ in range(max_iterations):
        iterations += 1
        # E-step: log-likelihood of every true label per item, shifted so the largest is 0
        # before exponentiating, as crowd-kit does, to stay within float range.
        log_likelihood = np.stack(
            [
                np.bincount(item, weights=log_errors[truth][answer_row], minlength=n_items)
                for truth in range(n_labels)
            ]
        )
        log_likelihood += np.log(priors)[:, None]
        likelihood = np.exp(log_likelihood - log_likelihood.max(axis=0))
        posteriors = pin_gold(likelihood / likelihood.sum(axis=0))
        priors = np.maximum(posteriors.mean(axis=1), _EPS)

        counts, errors = m_step(posteriors)
        log_errors = log_of_answered(errors)

        # crowd-kit's evidence lower bound, including its choice to add the log prior once per
        # judgment rather than once per item: the same bound gives the same stopping point.
        # Σ_j Σ_t P(t | item_j) log e(answer_j | t) is the M-step counts against the log rates.
        joint = np.sum(counts * log_errors) + np.dot(counts.sum(axis=1), np.log(priors))
        clipped = np.maximum(posteriors, _EPS)
        entropy = -np.sum(clipped * np.log(clipped))
        new_loss = float(joint + entropy) / encoded.n_judgments
        if new_loss - loss < tolerance:
            converged = True
            break
        loss = new_loss

    return _Fit(
        posteriors=posteriors.T,
        errors=errors.reshape(n_labels, n_annotators, n_labels).transpose(1, 2, 0),
        priors=priors,
        iterations=iterations,
        converged=converged,
    )


def _dawid_skene_crowdkit(
    *,
    encoded: EncodedJudgments,
    gold_items: np.ndarray,
    gold_labels: np.ndarray,
    max_iterations: int,
    tolerance: float,
) -> _Fit:
    # Imported here: crowd-kit pulls in scipy.stats and friends (seconds of import time) and
    # only the reference engine needs it.
    from crowdkit.aggregation import DawidSkene

    true_labels = None
    if len(gold_items):
        true_labels = pd.Series(encoded.labels[gold_labels], index=gold_items)
    model = DawidSkene(n_iter=max_iterations, tol=tolerance)
    with warnings.catch_warnings():
        # crowd-kit 1.4 still passes pandas keywords that pandas 3 deprecates.
        warnings.filterwarnings("ignore", module="crowdkit")
        model.fit(_crowdkit_frame(encoded), true_labels=true_labels)

    posteriors = (
        model.probas_.reindex(index=np.arange(len(encoded.items)), columns=encoded.labels)
        .fillna(0.0)
        .to_numpy()
    )
    n_annotators, n_labels = len(encoded.annotators), len(encoded.labels)
    errors = np.zeros((n_annotators, n_labels, n_labels))
    table = model.errors_.reindex(columns=encoded.labels).fillna(0.0)
    workers = table.index.get_level_values("worker").to_numpy()
    answers = encoded.labels.get_indexer(table.index.get_level_values("label"))
    errors[workers, answers] = table.to_numpy()
    history = model.loss_history_
    return _Fit(
        posteriors=posteriors,
        errors=errors,
        priors=model.priors_.reindex(encoded.labels).fillna(0.0).to_numpy(),
        iterations=len(history),
        converged=len(history) >= 2 and history[-1] - history[-2] < tolerance,
    )


def _crowdkit_majority_shares(encoded: EncodedJudgments) -> np.ndarray:
    from crowdkit.aggregation import MajorityVote

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="crowdkit")
        probas = MajorityVote().fit_predict_proba(_crowdkit_frame(encoded))
    return (
        probas.reindex(index=np.arange(len(encoded.items)), columns=encoded.labels)
        .fillna(0.0)
        .to_numpy()
    )


def _crowdkit_frame(encoded: EncodedJudgments) -> pd.DataFrame:
    # Integer codes for tasks and workers keep crowd-kit's joins cheap; labels keep their values
    # so crowd-kit's columns are the project's labels.
    return pd.DataFrame(
        {
            "task": encoded.item,
            "worker": encoded.annotator,
            "label": encoded.labels.to_numpy()[encoded.label],
        }
    )


def _items_frame(
    *,
    encoded: EncodedJudgments,
    probabilities: np.ndarray,
    totals: np.ndarray,
    target_judgments: int,
    agreement_threshold: float,
) -> pd.DataFrame:
    if len(encoded.items) == 0:
        winner = np.zeros(0, dtype=np.intp)
        confidence = np.zeros(0)
    else:
        winner = probabilities.argmax(axis=1)
        confidence = probabilities[np.arange(len(winner)), winner]
    return pd.DataFrame(
        {
            "label": encoded.labels.to_numpy()[winner],
            "confidence": confidence,
            "judgments": totals,
            "status": item_status(
                judgments=totals,
                confidence=confidence,
                target_judgments=target_judgments,
                agreement_threshold=agreement_threshold,
            ),
        },
        index=encoded.items,
    )


def _judged_gold(*, gold: Mapping[Hashable, int] | pd.Series | None, items: pd.Series) -> pd.Series:
    """Gold labels of the items that have judgments; the others carry no information here."""
    if gold is None:
        return pd.Series(dtype=int)
    series = pd.Series(gold).dropna()
    return series[series.index.isin(items)].astype(int)


def _check_status_arguments(*, target_judgments: int, agreement_threshold: float) -> None:
    if target_judgments < 1:
        raise ValueError(INVALID_TARGET.format(target=target_judgments))
    if not 0.5 < agreement_threshold <= 1:
        raise ValueError(INVALID_THRESHOLD.format(threshold=agreement_threshold))
