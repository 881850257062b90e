"""Concord's image–text matching model: plain PyTorch, no Django.

Public API (what the Django side and ``python -m training`` call)::

    from training.core.config import TrainConfig
    from training.core.train import train, TrainResult
    from training.core.evaluate import evaluate

    result = train(TrainConfig(), release_dir, out_dir)   # -> TrainResult (checkpoint, metrics)
    metrics = evaluate(result.checkpoint, release_dir)    # -> {split: {metric: value}}

The input is a release directory (``pairs.parquet`` or ``pairs.jsonl``, see ``training.core.data``);
the checkpoint format is described in ``training.core.checkpoint``.
"""
