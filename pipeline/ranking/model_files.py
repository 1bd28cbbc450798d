"""A trained model on disk: <name>.keras (reloadable with DeepCTR's custom objects) and its training log,
<name>.training_log.json (settings, per-epoch losses, wall time, rows; its presence marks a finished model).

Under artifacts/models/ for the random split and artifacts/models/temporal/ for the temporal one
(config.model_path).
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline import config, quiet_imports
from pipeline.files import atomic_path, write_json


def training_log_path(name: str, split: str = "random", models_dir: Path = config.MODELS_DIR) -> Path:
    return config.model_path(name, split, models_dir).with_suffix(".training_log.json")


def load_training_log(name: str, split: str = "random", models_dir: Path = config.MODELS_DIR) -> dict:
    return json.loads(training_log_path(name, split, models_dir).read_text())


def save_keras(model, path: Path) -> Path:
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


def save_model(model, log: dict, name: str, split: str = "random", models_dir: Path = config.MODELS_DIR) -> Path:
    """Write <name>.keras, then its training log (the log's presence marks a finished model)."""
    path = save_keras(model, config.model_path(name, split, models_dir))
    write_json(training_log_path(name, split, models_dir), log)
    return path


def load_keras(path: Path):
    tf = quiet_imports.tensorflow()
    quiet_imports.deepctr()
    from deepctr.layers import custom_objects  # after quiet_imports.deepctr(), which silences its import

    return tf.keras.models.load_model(path, custom_objects=custom_objects, compile=False)


def load_model(name: str, split: str = "random", models_dir: Path = config.MODELS_DIR):
    """Model `name` trained on `split` and the TrainConfig it was trained with."""
    model = load_keras(config.model_path(name, split, models_dir))
    return model, config.train_config(load_training_log(name, split, models_dir)["config"])
