"""A trained model on disk: <name>.keras (reloadable with DeepCTR's custom objects) and its training log,
<name>.training_log.json (settings, per-epoch losses, wall time, rows; its presence marks a finished model).

Under artifacts/models/ for the random split and artifacts/models/temporal/ for the temporal one
(config.model_path). Both files are recorded in manifests (pipeline.manifests) with `make train` as their
producer, and checked against them when loaded: a missing, damaged or unreadable file raises
manifests.ArtifactError naming the file and the command that rebuilds it.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline import config, manifests, quiet_imports
from pipeline.files import atomic_path, write_json


def rebuild_command(name: str, split: str = "random") -> str:
    return f"make train MODEL={name}" + ("" if split == "random" else f" SPLIT={split}")


def training_log_path(name: str, split: str = "random", models_dir: Path = config.MODELS_DIR) -> Path:
    return config.model_path(name, split, models_dir).with_suffix(".training_log.json")


def load_training_log(name: str, split: str = "random", models_dir: Path = config.MODELS_DIR) -> dict:
    path = training_log_path(name, split, models_dir)
    with manifests.checked(path, rebuild_command(name, split)):
        return json.loads(path.read_text())


def save_keras(model, path: Path, **manifest) -> Path:
    """Write `model` to `path`; `manifest` (producer, settings_digest) records it, as files.atomic_path takes it."""
    with atomic_path(path, **manifest) as tmp:
        model.save(tmp)
    return path


def save_model(model, log: dict, name: str, split: str = "random", models_dir: Path = config.MODELS_DIR) -> Path:
    """Write <name>.keras, then its training log (the log's presence marks a finished model); both recorded
    with the digest of the settings they were trained with, the log with the model as its Make target."""
    recorded = {"producer": rebuild_command(name, split), "settings_digest": manifests.digest(log["config"])}
    path = save_keras(model, config.model_path(name, split, models_dir), **recorded)
    write_json(training_log_path(name, split, models_dir), log, target=path, **recorded)
    return path


def check_model(name: str, split: str = "random", models_dir: Path = config.MODELS_DIR) -> None:
    """ArtifactError if model `name`'s file or training log is missing or does not match its manifest; nothing
    is loaded (no TensorFlow)."""
    manifests.check(config.model_path(name, split, models_dir), rebuild_command(name, split))
    manifests.check(training_log_path(name, split, models_dir), rebuild_command(name, split))


def load_keras(path: Path):
    path = Path(path)
    split = path.parent.name if path.parent.name in config.SPLITS else "random"
    with manifests.checked(path, rebuild_command(path.stem, split)):  # checked before TensorFlow is imported
        tf = quiet_imports.tensorflow()
        quiet_imports.deepctr()
        from deepctr.layers import custom_objects  # after quiet_imports.deepctr(), which silences its import

        return tf.keras.models.load_model(path, custom_objects=custom_objects, compile=False)


def load_model(name: str, split: str = "random", models_dir: Path = config.MODELS_DIR):
    """Model `name` trained on `split` and the TrainConfig it was trained with."""
    log = load_training_log(name, split, models_dir)
    return load_keras(config.model_path(name, split, models_dir)), config.train_config(log["config"])
