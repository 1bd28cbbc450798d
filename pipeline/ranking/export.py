"""`make export`: each served model's .keras file converted to LiteRT (`tf.lite.TFLiteConverter`),
written beside it as <name>.tflite (float32), and with `--variant` its quantized variants <name>.int8.tflite
(dynamic-range: int8 weights, float activations) and <name>.float16.tflite (float16 weights).

The serving paths run these files with ai-edge-litert and never import TensorFlow (runtimes.LiteRuntime); this
module is the only one that needs TensorFlow to make them. Each file is written atomically with a manifest that
records the training settings' digest, like its .keras (model_files), so a damaged or stale file is noticed.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from tqdm import tqdm

from pipeline import config, config_serving, manifests, quiet_imports
from pipeline.files import atomic_path
from pipeline.ranking import model_files


def rebuild_command(variant: str = "float32") -> str:
    return "make export" if variant == "float32" else "make export-quantized"


def serving_function(model):
    """The model's forward pass as one concrete function over its named inputs: the LiteRT file's signature."""
    tf = quiet_imports.tensorflow()
    signature = {
        tensor.name.split(":")[0]: tf.TensorSpec(tensor.shape, tensor.dtype, name=tensor.name.split(":")[0])
        for tensor in model.inputs
    }

    @tf.function(input_signature=[signature])
    def serve(inputs):
        return {"score": model(inputs, training=False)}

    return serve.get_concrete_function()


def convert(model, variant: str) -> bytes:
    """The LiteRT flatbuffer of a Keras model: float32 as it is, or quantized as `variant` says.

    Converted from the forward pass's concrete function with a bare tf.Module holding the weights as the object
    the converter saves: `from_keras_model` (or the Keras model itself as that object) first writes and reads back
    a whole Keras SavedModel, which traces every layer's call again; that was ~90 % of an export (3.8 s of 4.2 for
    a test-sized model, against 0.4 s this way) and gave the same file to the last score (tests/test_litert.py)."""
    tf = quiet_imports.tensorflow()
    weights = tf.Module()
    weights.variables_of_model = list(model.weights)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serving_function(model)], weights)
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # alone: dynamic-range quantization (int8 weights)
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def export_model(name: str, split: str, models_dir: Path, variants) -> list[Path]:
    """Write model `name`'s LiteRT files of `variants`; the paths written."""
    log = model_files.load_training_log(name, split, models_dir)
    model = model_files.load_keras(config.model_path(name, split, models_dir))
    written = []
    for variant in variants:
        path = config.litert_path(name, split, models_dir, variant)
        recorded = {"producer": rebuild_command(variant), "settings_digest": manifests.digest(log["config"])}
        with atomic_path(path, **recorded) as tmp:
            tmp.write_bytes(convert(model, variant))
        written.append(path)
    return written


def check_choice(values: list[str], allowed, what: str) -> None:
    unknown = [value for value in values if value not in allowed]
    if unknown:
        typer.echo(f"error: unknown {what} {', '.join(unknown)}; choose from {', '.join(allowed)}", err=True)
        raise typer.Exit(2)


def export_command(
    model: list[str] = typer.Option(
        list(config.models_of(*config.SERVED_MODES)), help="Model file(s) to convert (repeat the option)."
    ),
    variant: list[str] = typer.Option(["float32"], help="float32 (served), int8, float16 (repeat the option)."),
    split: str = typer.Option("random"),
    models_dir: Path = typer.Option(config.MODELS_DIR),
) -> None:
    """Convert trained models to LiteRT files beside their .keras files (the serving paths run them)."""
    check_choice(model, list(config.MODELS), "model")
    check_choice(variant, config_serving.LITERT["variants"], "variant")
    quiet_imports.tensorflow()
    sizes = {}
    for name in tqdm(model, desc="exporting", unit="model"):
        for path in export_model(name, split, models_dir, variant):
            sizes[manifests.shown(path)] = path.stat().st_size
    typer.echo(json.dumps(sizes, indent=1))
