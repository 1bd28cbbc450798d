"""What turns a batch of a ranker's input rows into scores: the Keras model (TensorFlow; training and evaluation
use it) or the model's LiteRT file (ai-edge-litert, no TensorFlow; the serving paths use it).

Both are callables {input name: (rows, width) array} → (rows,) float32 scores, with `dtypes` (what each input
must be) and `batch_rows` (how many rows one call should take). The scorers (scorers.py) build the batches and do
not care which runtime runs them.

Keras runs through one traced `tf.function`: `Model.predict` pays tens of milliseconds of set-up per call (it
builds a data pipeline and a callback loop each time); a direct call of the graph does not. LiteRT runs the
converted file (export.py) on its own CPU kernels (XNNPACK) in one thread per process: a request scores ~100 rows,
and a service already runs a process per core.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from pipeline import config, config_serving, quiet_imports

RUNTIMES = tuple(runtime.value for runtime in config.Runtime)  # the first is the serving default


class KerasRuntime:
    """A Keras model's forward pass as a traced tf.function over its own input signature."""

    def __init__(self, model, batch_rows: int = config.SCORING_BATCH_ROWS):
        tf = quiet_imports.tensorflow()
        self.batch_rows = batch_rows
        signature = {
            tensor.name.split(":")[0]: tf.TensorSpec(tensor.shape, tensor.dtype, name=tensor.name.split(":")[0])
            for tensor in model.inputs
        }

        @tf.function(input_signature=[signature])
        def forward(inputs):
            return model(inputs, training=False)[:, 0]

        self._forward = forward
        self.dtypes = {name: spec.dtype.as_numpy_dtype for name, spec in signature.items()}

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return self._forward(batch).numpy()


class LiteRuntime:
    """A LiteRT file's serving signature through ai-edge-litert's interpreter. One interpreter is not safe to
    call from two threads at once, so calls take turns (a service worker runs its requests on a few threads)."""

    def __init__(
        self,
        path: Path,
        threads: int = config_serving.LITERT["threads"],
        batch_rows: int = config_serving.LITERT["batch_rows"],
    ):
        self.batch_rows = batch_rows
        self.path = Path(path)
        self._interpreter = quiet_imports.litert_interpreter(self.path, threads)
        self._run = self._interpreter.get_signature_runner()
        self.dtypes = {name: detail["dtype"] for name, detail in self._run.get_input_details().items()}
        (self._output,) = self._run.get_output_details()
        self._lock = threading.Lock()

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        with self._lock:  # the runner resizes its inputs to the batch's rows when they change
            return self._run(**batch)[self._output][:, 0].copy()
