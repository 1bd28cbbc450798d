"""TensorFlow and DeepCTR, imported without their start-up chatter.

TensorFlow 2.21 writes C++ log lines (oneDNN, CUDA, CPU features) to stderr while it is imported,
whatever TF_CPP_MIN_LOG_LEVEL says; DeepCTR's import starts a thread that asks PyPI for a newer
version and, offline, prints to stdout (which would break `--json`). Python errors still raise.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading

from pipeline import config  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

_lock = threading.Lock()


def tensorflow():
    """The tensorflow module; the first import has file descriptor 2 pointed at /dev/null."""
    with _lock:
        if "tensorflow" not in sys.modules:
            sys.stderr.flush()
            saved = os.dup(2)
            try:
                with open(os.devnull, "w") as devnull:
                    os.dup2(devnull.fileno(), 2)
                    importlib.import_module("tensorflow")
            finally:
                os.dup2(saved, 2)
                os.close(saved)
    return sys.modules["tensorflow"]


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
