"""The Keras callbacks every training path shares: the learning-rate schedule, a progress bar per epoch, and the
streamed paths' per-epoch time and rows."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

from pipeline import quiet_imports
from pipeline.config import TrainConfig


def lr_schedule(cfg: TrainConfig):
    """The Keras callback that sets epoch e's learning rate to cfg.learning_rate * cfg.lr_decay ** e."""
    tf = quiet_imports.tensorflow()
    return tf.keras.callbacks.LearningRateScheduler(lambda epoch: cfg.learning_rate * cfg.lr_decay**epoch)


def epoch_progress(description: str, show: bool):
    """A Keras callback drawing one tqdm bar per epoch (batches, running loss); nothing when not `show`."""
    tf = quiet_imports.tensorflow()

    class EpochProgress(tf.keras.callbacks.Callback):
        bar = None

        def on_epoch_begin(self, epoch, logs=None):
            self.bar = tqdm(
                total=self.params.get("steps"),
                unit="batch",
                desc=f"{description} epoch {epoch + 1}",
                disable=not show,
                leave=True,
                file=sys.stderr,
            )

        def on_train_batch_end(self, batch, logs=None):
            self.bar.update(1)
            if logs and batch % 50 == 0:
                self.bar.set_postfix(loss=f"{logs.get('loss', float('nan')):.4f}")

        def on_epoch_end(self, epoch, logs=None):
            if logs:
                self.bar.set_postfix({key: f"{value:.4f}" for key, value in logs.items()})
            self.bar.close()

    return EpochProgress()


def epoch_log(rows_of_epoch, cfg: TrainConfig, echo):
    """A Keras callback that times every epoch, counts its rows (rows_of_epoch(epoch)), and (with `echo`)
    prints one line per epoch; its `epochs` list goes into a streamed model's training log."""
    tf = quiet_imports.tensorflow()

    class EpochLog(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs = []

        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self.began
            rows = rows_of_epoch(epoch)
            self.epochs.append(
                {
                    "epoch": epoch + 1,
                    "seconds": round(seconds, 2),
                    "train_rows": rows,
                    "rows_per_s": round(rows / seconds, 1),
                }
            )
            if echo:
                logs = logs or {}
                echo(
                    f"epoch {epoch + 1}/{cfg.epochs}: loss {logs.get('loss', float('nan')):.4f} "
                    f"val_loss {logs.get('val_loss', float('nan')):.4f}, {rows:,} rows in {seconds:.1f} s"
                )

    return EpochLog()
