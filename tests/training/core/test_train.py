"""End to end on tiny synthetic data: train, checkpoint, evaluate, resume, command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.training.core.synthetic import tiny_config
from training.__main__ import main
from training.core.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from training.core.config import TrainConfig
from training.core.data import load_release
from training.core.evaluate import embed_inputs, evaluate
from training.core.inputs import InputBuilder
from training.core.train import ERROR_RESUME_CONFIG, epoch_order, train


class Killed(Exception):
    pass


def test_smoke_train_with_every_loss(tmp_path: Path, release_dir: Path) -> None:
    config = tiny_config(tmp_path, w_triplet=0.5, w_bce=0.5, w_hinge=0.1, epochs=4)
    result = train(config, release_dir, tmp_path / "out", show_progress=False)

    assert {p.name for p in (tmp_path / "out").iterdir()} >= {
        "best.pt",
        "last.pt",
        "log.jsonl",
        "metrics.json",
    }
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert len(log) == result.epochs_run == 4
    # train has verified hard negatives: the triplet also ranks them against their positives.
    assert set(log[0]["train"]) >= {
        "loss",
        "infonce",
        "triplet",
        "triplet_labelled",
        "bce",
        "hinge",
    }
    assert log[-1]["train"]["loss"] < log[0]["train"]["loss"]
    assert set(result.metrics) == {"train", "val", "test"}
    for split in result.metrics.values():
        assert 0 <= split["i2t_r1"] <= split["i2t_r5"] <= split["i2t_r10"] <= 1
        assert 0 <= split["f1"] <= 1 and 0 <= split["ap"] <= 1
    assert result.metrics["val"]["threshold_source"] == "val"
    assert result.metrics["val"]["synthetic_negatives"]  # val has positives only
    assert not result.metrics["train"]["synthetic_negatives"]  # train has hard negatives
    assert result.threshold == result.metrics["test"]["threshold"]


def test_bilinear_score_trains(tmp_path: Path, release_dir: Path) -> None:
    config = tiny_config(tmp_path, score="bilinear", head="linear", epochs=1)
    result = train(config, release_dir, tmp_path / "out", show_progress=False)
    assert "bilinear" in load_checkpoint(result.checkpoint)["model"]


def test_checkpoint_round_trip_gives_identical_scores(tmp_path: Path, release_dir: Path) -> None:
    result = train(
        tiny_config(tmp_path, epochs=2), release_dir, tmp_path / "out", show_progress=False
    )

    checkpoint = load_checkpoint(result.checkpoint)
    assert (
        checkpoint["config"]["encoder"] == "scratch" and checkpoint["vocab"]["words"][0] == "<pad>"
    )
    assert checkpoint["epoch"] == result.best_epoch
    assert checkpoint["metrics"] == result.metrics
    # The saved file reproduces the metrics the training run reported, to the last bit.
    assert evaluate(result.checkpoint, release_dir) == result.metrics

    model, config, vocab = model_from_checkpoint(checkpoint)
    save_checkpoint(tmp_path / "copy.pt", {**checkpoint, "model": model.state_dict()})
    copy, _, _ = model_from_checkpoint(load_checkpoint(tmp_path / "copy.pt"))
    inputs = InputBuilder(config, vocab=vocab, progress=False).split(
        load_release(release_dir).splits["test"]
    )
    for a, b in zip(embed_inputs(model, inputs), embed_inputs(copy, inputs), strict=True):
        assert torch.equal(a, b)


def test_resumed_run_matches_an_uninterrupted_one(tmp_path: Path, release_dir: Path) -> None:
    config = tiny_config(tmp_path, epochs=3)
    straight = train(config, release_dir, tmp_path / "straight", show_progress=False)

    def kill_after_two(record: dict) -> None:
        if record["epoch"] == 2:
            raise Killed

    with pytest.raises(Killed):
        train(
            config, release_dir, tmp_path / "resumed", show_progress=False, on_epoch=kill_after_two
        )
    resumed = train(config, release_dir, tmp_path / "resumed", show_progress=False)

    assert resumed.epochs_run == 3
    for a, b in zip(straight.history, resumed.history, strict=True):
        assert a["train"] == b["train"] and a["val"] == b["val"]
    assert resumed.metrics == straight.metrics


def test_resume_refuses_a_different_config(tmp_path: Path, release_dir: Path) -> None:
    train(tiny_config(tmp_path, epochs=1), release_dir, tmp_path / "out", show_progress=False)
    with pytest.raises(ValueError, match=ERROR_RESUME_CONFIG.split(" ")[0] and "lr"):
        train(
            tiny_config(tmp_path, epochs=2, lr=1.0),
            release_dir,
            tmp_path / "out",
            show_progress=False,
        )
    # A longer run is a legitimate resumption.
    longer = train(
        tiny_config(tmp_path, epochs=2), release_dir, tmp_path / "out", show_progress=False
    )
    assert longer.epochs_run == 2


def test_command_line_train_and_evaluate(tmp_path: Path, release_dir: Path, capsys) -> None:
    out = tmp_path / "out"
    config = tiny_config(tmp_path, epochs=1)
    args = ["train", str(release_dir), "--out", str(out), "--quiet"]
    for name in (
        "encoder",
        "scratch_image_size",
        "scratch_image_width",
        "scratch_word_dim",
        "scratch_hidden_dim",
        "embed_dim",
        "head_hidden_dim",
        "batch_size",
        "epochs",
        "cache_dir",
    ):
        args += ["--" + name.replace("_", "-"), str(getattr(config, name))]
    args += ["--no-learn-temperature"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert load_checkpoint(summary["checkpoint"])["config"]["learn_temperature"] is False

    assert main(["evaluate", str(out / "best.pt"), str(release_dir)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"train", "val", "test"}
    assert metrics == json.loads(json.dumps(summary["metrics"]))


def test_epoch_order_gives_every_image_once_per_round(release_dir: Path) -> None:
    split = load_release(release_dir).splits["train"]  # 12 images, 2 captions each
    order = epoch_order(split, torch.Generator().manual_seed(0)).numpy()
    assert sorted(order.tolist()) == list(range(len(split.pos_img)))
    first_round, second_round = split.pos_img[order[:12]], split.pos_img[order[12:]]
    assert sorted(first_round.tolist()) == sorted(second_round.tolist()) == list(range(12))


def test_config_defaults_and_validation() -> None:
    assert (TrainConfig().batch_size, TrainConfig().lr) == (256, 1e-3)
    assert (TrainConfig(encoder="scratch").batch_size, TrainConfig(encoder="scratch").lr) == (
        64,
        2e-3,
    )
    assert TrainConfig(encoder="scratch", lr=0.1).lr == 0.1
    assert TrainConfig.from_dict({**TrainConfig().to_dict(), "unknown": 1}) == TrainConfig()
    with pytest.raises(ValueError, match="encoder"):
        TrainConfig(encoder="clip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="loss weights"):
        TrainConfig(w_infonce=0.0, w_triplet=0.0)
