"""Readable names of models, modes and baselines, shared by the report, the plots, the web page and the service."""

from __future__ import annotations

from pipeline import config

ARCHITECTURE_LABELS = {"autoint": "AutoInt", "autoint_mlp": "AutoInt+MLP"}
MODE_LABELS = {"two_stage": "two-stage", "reference": "reference", "tuned": "tuned", "sampled": "sampled negatives"}
BASELINE_LABELS = {
    "random": "random",
    "most_popular": "most popular",
    "positive_rate": "per-movie positive rate (smoothed)",
    "ease": "EASE (retrieval alone)",
    "als": "ALS (retrieval alone)",
}


def model_label(name: str) -> str:
    """e.g. autoint_mlp_two_stage → "AutoInt+MLP (two-stage)"."""
    for mode, suffix in sorted(config.MODES.items(), key=lambda item: -len(item[1])):
        for architecture, text in ARCHITECTURE_LABELS.items():
            if name == architecture + suffix:
                return f"{text} ({MODE_LABELS[mode]})"
    return name


def label(key: str) -> str:
    """A readable name for a model or a baseline; anything else comes back unchanged."""
    return BASELINE_LABELS.get(key) or model_label(key)
