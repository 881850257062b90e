"""Command line: ``python -m training train RELEASE_DIR --out DIR [--encoder scratch] [...]``
and ``python -m training evaluate CHECKPOINT RELEASE_DIR``.

Every :class:`~training.core.config.TrainConfig` field is a ``train`` option, so the two never drift.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from collections.abc import Sequence

from training.core.config import TrainConfig
from training.core.evaluate import evaluate
from training.core.train import train


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        kwargs: dict[str, typing.Any] = {"dest": f.name, "default": f.default}
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hint) is typing.Literal:
            kwargs["choices"] = typing.get_args(hint)
        elif hint in (int, float, str):
            kwargs["type"] = hint
        else:  # optional str (cache_dir)
            kwargs["type"] = str
        parser.add_argument(flag, help=f"(default: {f.default})", **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m training`` argument parser."""
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train_cmd = commands.add_parser("train", help="train a matching model on a release")
    train_cmd.add_argument("release_dir", help="release directory (pairs.parquet or pairs.jsonl)")
    train_cmd.add_argument("--out", required=True, help="directory for checkpoints and logs")
    train_cmd.add_argument(
        "--no-resume", action="store_true", help="start afresh even if OUT/last.pt exists"
    )
    train_cmd.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_config_options(train_cmd)

    eval_cmd = commands.add_parser("evaluate", help="print a checkpoint's metrics per split")
    eval_cmd.add_argument("checkpoint")
    eval_cmd.add_argument("release_dir")
    eval_cmd.add_argument("--cache-dir", default=None)
    eval_cmd.add_argument("--device", default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; prints metrics per split as JSON on stdout."""
    args = build_parser().parse_args(argv)
    if args.command == "train":
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        config = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
        result = train(
            config,
            args.release_dir,
            args.out,
            resume=not args.no_resume,
            show_progress=not args.quiet,
        )
        summary = {
            "checkpoint": str(result.checkpoint),
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "threshold": result.threshold,
            "metrics": result.metrics,
        }
        json.dump(summary, sys.stdout, indent=2)
    else:
        metrics = evaluate(
            args.checkpoint, args.release_dir, cache_dir=args.cache_dir, device=args.device
        )
        json.dump(metrics, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
