"""TensorFlow, DeepCTR and LiteRT's interpreter, without their start-up chatter.

TensorFlow 2.21 writes C++ log lines (oneDNN, CUDA, CPU features) to stderr while it is imported,
whatever TF_CPP_MIN_LOG_LEVEL says; DeepCTR's import starts a thread that asks PyPI for a newer
version and, offline, prints to stdout (which would break `--json`). Python errors still raise.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import threading

from pipeline import config  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

_lock = threading.Lock()


@contextlib.contextmanager
def c_stderr_silenced():
    """File descriptor 2 pointed at /dev/null for the block: C++ log lines vanish, Python errors still raise."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def tensorflow():
    """The tensorflow module; the first import has file descriptor 2 pointed at /dev/null."""
    with _lock:
        if "tensorflow" not in sys.modules:
            with c_stderr_silenced():
                importlib.import_module("tensorflow")
    return sys.modules["tensorflow"]


def litert_interpreter(path, threads: int):
    """ai-edge-litert's Interpreter of the .tflite file at `path`, its tensors allocated. LiteRT's C++ side
    prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on stderr when it allocates them (the
    first time in a process), which would end up in every `make recommend`; it is silenced."""
    from ai_edge_litert.interpreter import Interpreter  # 0.2 s to import: only where a LiteRT file is used

    with _lock, c_stderr_silenced():
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
    return interpreter


def deepctr():
    """The deepctr package, imported with its PyPI version check replaced by a no-op.

    deepctr/__init__.py runs `check_version(__version__)` from deepctr.utils. The package object is
    created without running its __init__, deepctr.utils is imported and its check_version swapped,
    and only then __init__ runs, so it calls the no-op. Nothing outside DeepCTR is touched.
    """
    tensorflow()
    with _lock:
        if "deepctr" not in sys.modules:
            spec = importlib.util.find_spec("deepctr")
            package = importlib.util.module_from_spec(spec)
            sys.modules["deepctr"] = package
            try:
                utils = importlib.import_module("deepctr.utils")
                utils.check_version = lambda version: None
                spec.loader.exec_module(package)
            except BaseException:
                sys.modules.pop("deepctr", None)
                raise
    return sys.modules["deepctr"]
