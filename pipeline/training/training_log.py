"""What a finished training run records (<name>.training_log.json): settings, per-epoch losses, time, rows."""

from __future__ import annotations

import dataclasses

from pipeline.config import TrainConfig


def training_log(cfg: TrainConfig, losses: dict, seconds: float, rows: int) -> dict:
    """The settings, per-epoch loss and val_loss (Keras' History.history), wall time and training rows."""
    val_losses = losses.get("val_loss", [float("nan")] * len(losses["loss"]))
    return {
        "config": dataclasses.asdict(cfg),
        "epochs": [
            {"epoch": i + 1, "loss": float(loss), "val_loss": float(val)}
            for i, (loss, val) in enumerate(zip(losses["loss"], val_losses))
        ],
        "train_seconds": round(seconds, 1),
        "train_rows": rows,
    }


def epoch_table(log: dict) -> str:
    rows = [f"{'epoch':>5}  {'loss':>8}  {'val_loss':>8}"]
    rows += [f"{e['epoch']:>5}  {e['loss']:8.4f}  {e['val_loss']:8.4f}" for e in log["epochs"]]
    return "\n".join(rows)
