"""The training loop: one function, :func:`train`, from a release directory to checkpoints.

Out directory layout::

    best.pt       weights of the best validation epoch, with final metrics per split
    last.pt       the latest epoch plus optimizer state: what a resumed run starts from
    log.jsonl     one line per epoch: lr, mean loss terms, validation metrics
    metrics.json  final metrics per split of best.pt

Every epoch re-seeds from ``(seed, epoch)``, so a run resumed from ``last.pt`` continues exactly
as if it had never stopped.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from training.core.checkpoint import load_checkpoint, save_checkpoint
from training.core.config import TrainConfig
from training.core.data import SplitData, add_random_negatives, load_release
from training.core.encoders import (
    Vocabulary,
    efficientnet_encoder_id,
    minilm_encoder_id,
    use_m3_encoder_id,
)
from training.core.evaluate import evaluate_model
from training.core.inputs import InputBuilder, SplitInputs
from training.core.losses import MatchingLoss
from training.core.model import MatchingModel
from training.core.store import DataStore

ERROR_NO_TRAIN_SPLIT = "the release has no train split with positive pairs"
ERROR_RESUME_CONFIG = "{path} was trained with a different config ({fields}); use another --out"
PRETRAINED_LR_SCALE = 0.1
# Fields that may change between a run and its resumption without changing what is trained.
RESUMABLE_CHANGES = frozenset(
    {"epochs", "patience", "device", "threads", "cache_dir", "embed_batch_size"}
)


@dataclass
class TrainResult:
    """What a finished :func:`train` call produced."""

    out_dir: Path
    checkpoint: Path
    best_epoch: int
    epochs_run: int
    threshold: float | None
    metrics: dict[str, dict[str, Any]]
    history: list[dict[str, Any]]
    seconds: float
    # Summed over all epochs run, resumed ones included; excludes embedding and evaluation.
    train_seconds: float = 0.0
    # What the embedding cache did: {"image": {"total", "computed", "seconds"}, "text": {...}}.
    embedding: dict[str, dict[str, float]] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_at(step: int, total_steps: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak (nanoGPT's schedule)."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return config.lr * (0.1 + 0.9 * cosine)


def build_optimizer(model: MatchingModel, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; matrices decay, biases, norms, temperature and the bilinear map do not.

    Fine-tuned pretrained blocks learn at a tenth of the rate (``lr_scale``), so the heads can
    adapt before the ImageNet weights drift.
    """
    groups: dict[tuple[bool, float], list[torch.nn.Parameter]] = defaultdict(list)
    pretrained = config.encoder == "pretrained"
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = param.ndim >= 2 and name != "bilinear"
        scale = PRETRAINED_LR_SCALE if pretrained and name.startswith("image_encoder.") else 1.0
        groups[(decay, scale)].append(param)
    return torch.optim.AdamW(
        [
            {
                "params": params,
                "weight_decay": config.weight_decay if decay else 0.0,
                "lr_scale": scale,
            }
            for (decay, scale), params in sorted(groups.items())
        ],
        lr=config.lr,
    )


def _positive_mask(split: SplitData, device: torch.device) -> Callable[..., torch.Tensor]:
    """same[i, j]: does text ``txt[j]`` match image ``img[i]`` (by the split's positives)."""
    codes = torch.as_tensor(split.pos_img * split.num_texts + split.pos_txt, device=device)

    def same(img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        return torch.isin(img[:, None] * split.num_texts + txt[None, :], codes)

    return same


def _draw(weights: np.ndarray, count: int, generator: torch.Generator) -> torch.Tensor:
    """Indices for one epoch: a permutation when weights are uniform, else weighted sampling."""
    if np.allclose(weights, weights[0]):
        return torch.randperm(len(weights), generator=generator)
    probs = torch.as_tensor(weights, dtype=torch.float)
    return torch.multinomial(probs, count, replacement=True, generator=generator)


def epoch_order(split: SplitData, generator: torch.Generator) -> torch.Tensor:
    """The order of the positive pairs for one epoch, in rounds: every image's first (random)
    caption, shuffled, then every image's second one, and so on.

    Consecutive pairs, hence a batch, then rarely share an image, so nearly every other pair in
    a batch is a true negative. Non-uniform ``weight``s fall back to weighted sampling.
    """
    if not np.allclose(split.pos_weight, split.pos_weight[0]):
        return _draw(split.pos_weight, len(split.pos_img), generator)
    shuffled = torch.randperm(len(split.pos_img), generator=generator).numpy()
    images = split.pos_img[shuffled]
    by_image = np.argsort(images, kind="stable")
    sorted_images = images[by_image]
    group_start = np.flatnonzero(np.r_[True, sorted_images[1:] != sorted_images[:-1]])
    sizes = np.diff(np.r_[group_start, len(images)])
    round_of = np.empty(len(images), dtype=np.int64)
    round_of[by_image] = np.arange(len(images)) - np.repeat(group_start, sizes)
    return torch.from_numpy(shuffled[np.argsort(round_of, kind="stable")])


def train_epoch(
    model: MatchingModel,
    criterion: MatchingLoss,
    optimizer: torch.optim.Optimizer,
    split: SplitData,
    inputs: SplitInputs,
    *,
    config: TrainConfig,
    epoch: int,
    first_step: int,
    total_steps: int,
    show_progress: bool,
) -> dict[str, float]:
    """One pass over the train split's positive pairs; returns the mean of each loss term."""
    device = inputs.images.device
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    torch.manual_seed(config.seed * 1_000_003 + epoch)  # dropout, flips
    same = _positive_mask(split, device)
    labelled = split
    if criterion.needs_labelled_pairs and not split.has_negatives:
        labelled = add_random_negatives(split, seed=config.seed * 1_000_003 + epoch)

    hard = _hard_negatives(split) if criterion.weights["triplet"] > 0 else None

    order = epoch_order(split, generator)
    batches = list(torch.split(order, config.batch_size))
    # A last batch of one pair has no in-batch negatives; fold it into the previous one.
    if len(batches) > 1 and len(batches[-1]) < 2:
        # Pop first: ``batches[-2] = cat([batches[-2], batches.pop()])`` would assign after the
        # pop has shortened the list, overwriting the wrong batch (or raising with two batches).
        last = batches.pop()
        batches[-1] = torch.cat([batches[-1], last])
    pos_img = torch.as_tensor(split.pos_img, device=device)
    pos_txt = torch.as_tensor(split.pos_txt, device=device)

    model.train()
    sums: dict[str, float] = defaultdict(float)
    bar = tqdm(batches, desc=f"epoch {epoch + 1}", disable=not show_progress, leave=False)
    for offset, batch in enumerate(bar):
        step = first_step + offset
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total_steps, config) * group["lr_scale"]
        batch = batch.to(device)
        img, txt = pos_img[batch], pos_txt[batch]
        outputs = model(inputs.images[img], inputs.texts[txt])
        pair_args: dict[str, torch.Tensor] = {}
        if criterion.needs_labelled_pairs:
            rows = _draw(labelled.lab_weight, config.batch_size, generator)[: config.batch_size]
            rows_np = rows.numpy()
            lab_img = torch.as_tensor(labelled.lab_img[rows_np], device=device)
            lab_txt = torch.as_tensor(labelled.lab_txt[rows_np], device=device)
            pair_args = {
                "pair_logits": model.pair_logits(inputs.images[lab_img], inputs.texts[lab_txt]),
                "pair_labels": torch.as_tensor(labelled.lab_label[rows_np], device=device),
                "pair_weights": torch.as_tensor(
                    labelled.lab_confidence[rows_np], dtype=torch.float, device=device
                ),
            }
        if hard is not None:
            pair_args |= _hard_negative_scores(model, inputs, hard, config, generator)
        terms = criterion(outputs, same(img, txt), **pair_args)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        for name, value in terms.items():
            sums[name] += float(value.detach())
        bar.set_postfix(loss=f"{sums['loss'] / (offset + 1):.3f}")
    return {name: total / max(1, len(batches)) for name, total in sums.items()}


@dataclass(frozen=True)
class HardNegatives:
    """A split's labelled negatives whose image has a positive caption to rank them against."""

    image: np.ndarray
    negative: np.ndarray
    positive: np.ndarray
    weight: np.ndarray
    confidence: np.ndarray


def _hard_negatives(split: SplitData) -> HardNegatives | None:
    """Real labelled negatives only (the synthetic random ones are easy by construction)."""
    if split.synthetic_negatives or not split.has_negatives:
        return None
    positive_of = np.full(split.num_images, -1, dtype=np.int64)
    # Reversed, so that each image keeps its first positive caption.
    positive_of[split.pos_img[::-1]] = split.pos_txt[::-1]
    rows = np.flatnonzero((split.lab_label == 0) & (positive_of[split.lab_img] >= 0))
    if not len(rows):
        return None
    return HardNegatives(
        image=split.lab_img[rows],
        negative=split.lab_txt[rows],
        positive=positive_of[split.lab_img[rows]],
        weight=split.lab_weight[rows],
        confidence=split.lab_confidence[rows],
    )


def _hard_negative_scores(
    model: MatchingModel,
    inputs: SplitInputs,
    hard: HardNegatives,
    config: TrainConfig,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """Scores of a draw of labelled negatives and of their images' positives, for the triplet."""
    rows = _draw(hard.weight, config.batch_size, generator)[: config.batch_size].numpy()
    device = inputs.images.device
    image = torch.as_tensor(hard.image[rows], device=device)
    image_emb = model.encode_image(inputs.images[image])
    negative = model.encode_text(inputs.texts[torch.as_tensor(hard.negative[rows], device=device)])
    positive = model.encode_text(inputs.texts[torch.as_tensor(hard.positive[rows], device=device)])
    return {
        "negative_scores": model.pair_scores(image_emb, negative),
        "negative_positive_scores": model.pair_scores(image_emb, positive),
        "negative_weights": torch.as_tensor(
            hard.confidence[rows], dtype=torch.float, device=device
        ),
    }


def _config_changes(saved: dict[str, Any], config: TrainConfig) -> list[str]:
    current = config.to_dict()
    return sorted(
        k for k in current if k not in RESUMABLE_CHANGES and saved.get(k, current[k]) != current[k]
    )


def train(
    config: TrainConfig,
    release_dir: str | Path,
    out_dir: str | Path,
    *,
    resume: bool = True,
    show_progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    store: DataStore | None = None,
) -> TrainResult:
    """Train a matching model on ``release_dir`` and write checkpoints and logs to ``out_dir``.

    With ``resume`` (the default) an existing ``out_dir/last.pt`` is continued; its config must
    match except for :data:`RESUMABLE_CHANGES`. ``on_epoch`` receives each epoch's log record
    (a Celery task can report progress with it; raising from it stops the run after ``last.pt``
    has been written, which is also how tests simulate a killed run). ``store`` serves images
    by content key and shares the embedding cache (see :mod:`training.core.store`); without
    it, images are read from the paths in the pairs table.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = config.resolved_device()

    release = load_release(release_dir)
    train_split = release.splits.get("train")
    if train_split is None or not len(train_split.pos_img):
        raise ValueError(ERROR_NO_TRAIN_SPLIT)

    last_path, best_path = out / "last.pt", out / "best.pt"
    state = load_checkpoint(last_path) if resume and last_path.exists() else None
    if state is not None:
        changed = _config_changes(state["config"], config)
        if changed:
            raise ValueError(ERROR_RESUME_CONFIG.format(path=last_path, fields=", ".join(changed)))

    vocab: Vocabulary | None = None
    if config.encoder == "scratch":
        vocab = (
            Vocabulary.from_dict(state["vocab"])
            if state is not None
            else Vocabulary.build(train_split.texts, config.vocab_min_freq)
        )
    builder = InputBuilder(config, vocab=vocab, progress=show_progress, store=store)
    inputs = {name: builder.split(split) for name, split in release.splits.items()}
    embedding = {kind: asdict(s) for kind, s in builder.stats.items()}

    # Loading a frozen encoder draws from the RNG (its modules are built before their weights
    # are loaded), and it is loaded only when the cache misses: seed again, so that a first run
    # and a cached rerun start from the same weights.
    seed_everything(config.seed)
    model = MatchingModel(config, len(vocab) if vocab else None).to(device)
    criterion = MatchingLoss(config)
    optimizer = build_optimizer(model, config)
    steps_per_epoch = max(1, math.ceil(len(train_split.pos_img) / config.batch_size))
    if len(train_split.pos_img) % config.batch_size == 1 and steps_per_epoch > 1:
        steps_per_epoch -= 1
    total_steps = steps_per_epoch * config.epochs

    history: list[dict[str, Any]] = []
    best_score, best_epoch, bad_epochs, start_epoch, finished = -math.inf, 0, 0, 0, False
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = list(state["history"])
        best_score, best_epoch = state["best_score"], state["best_epoch"]
        bad_epochs, start_epoch = state["bad_epochs"], state["epoch"]
        finished = state["finished"] and start_epoch >= config.epochs

    common = {
        "config": config.to_dict(),
        "vocab": vocab.to_dict() if vocab else None,
        "encoder_ids": _encoder_ids(config),
        "release": {"path": str(release_dir), "fingerprint": release.fingerprint},
    }
    eval_splits = {k: v for k, v in release.splits.items() if k == "val"}
    train_seconds = sum(h["seconds"] for h in history)

    for epoch in range(start_epoch, config.epochs):
        if finished:
            break
        tick = time.perf_counter()
        losses = train_epoch(
            model,
            criterion,
            optimizer,
            train_split,
            inputs["train"],
            config=config,
            epoch=epoch,
            first_step=epoch * steps_per_epoch,
            total_steps=total_steps,
            show_progress=show_progress,
        )
        seconds = time.perf_counter() - tick
        train_seconds += seconds
        val = evaluate_model(model, eval_splits, inputs).get("val", {})
        # Without a val split every epoch counts as the best: the last one is kept.
        score = val.get(config.select_metric, float(epoch))
        improved = score > best_score
        if improved:
            best_score, best_epoch, bad_epochs = score, epoch + 1, 0
            save_checkpoint(
                best_path,
                {
                    **common,
                    "model": model.state_dict(),
                    "epoch": epoch + 1,
                    "threshold": val.get("threshold"),
                    "metrics": {"val": val} if val else {},
                },
            )
        else:
            bad_epochs += 1
        record = {
            "epoch": epoch + 1,
            "lr": lr_at((epoch + 1) * steps_per_epoch - 1, total_steps, config),
            "seconds": seconds,
            "train": losses,
            "val": val,
            "logit_scale": float(model.logit_scale.detach()),
            "best": improved,
        }
        history.append(record)
        finished = bad_epochs >= config.patience or epoch + 1 == config.epochs
        save_checkpoint(
            last_path,
            {
                **common,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch + 1,
                "history": history,
                "best_score": best_score,
                "best_epoch": best_epoch,
                "bad_epochs": bad_epochs,
                "finished": finished,
                "threshold": val.get("threshold"),
                "metrics": {"val": val} if val else {},
            },
        )
        (out / "log.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
        if on_epoch is not None:
            on_epoch(record)
        if finished:
            break

    # Final report: the best epoch's weights on every split, threshold from val.
    best = load_checkpoint(best_path)
    model.load_state_dict(best["model"])
    metrics = evaluate_model(model, release.splits, inputs, fallback_threshold=best["threshold"])
    threshold = metrics["val"]["threshold"] if "val" in metrics else best["threshold"]
    best |= {"metrics": metrics, "threshold": threshold}
    save_checkpoint(best_path, {k: v for k, v in best.items() if k != "format"})
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return TrainResult(
        out_dir=out,
        checkpoint=best_path,
        best_epoch=best_epoch,
        epochs_run=len(history),
        threshold=threshold,
        metrics=metrics,
        history=history,
        seconds=time.perf_counter() - started,
        train_seconds=train_seconds,
        embedding=embedding,
    )


def _encoder_ids(config: TrainConfig) -> dict[str, str] | None:
    if config.encoder != "pretrained":
        return None
    text = {
        "minilm": minilm_encoder_id,
        "use-m3": use_m3_encoder_id,
        "char-ngram": lambda: "char-ngram (trained)",
    }[config.text_encoder]()
    return {"image": efficientnet_encoder_id(config.finetune_image_blocks), "text": text}
