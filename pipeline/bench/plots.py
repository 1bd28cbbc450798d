"""The benchmarks' plots: artifacts/train_bench.png (make bench-train) and artifacts/scale_bench.png
(make bench-scale), drawn from their JSON."""

from __future__ import annotations

from pathlib import Path

from pipeline import config_scale
from pipeline.evaluation.plots import pyplot, save


def synthetic_axis(axis, title: str) -> None:
    """A panel over SYNTHETIC sizes: ratings in millions on a log scale."""
    axis.set_xscale("log")
    axis.set_xlabel("SYNTHETIC ratings (millions)")
    axis.set_title(title)
    axis.grid(alpha=0.3)


def finish(figure, title: str, path: Path) -> None:
    figure.suptitle(f"{title} on SYNTHETIC MovieLens-format data (2 cores, shared machine)")
    figure.tight_layout()
    save(figure, path)


def training_at_scale(bench: dict, path: Path) -> None:
    """make bench-train's plot: rows/s and peak RSS per process by SYNTHETIC size, 1 and 2 workers."""
    plt = pyplot()
    entries = sorted(bench.get("synthetic", {}).values(), key=lambda entry: entry["ratings"])
    figure, (speed, memory) = plt.subplots(1, 2, figsize=(10, 4))

    def draw(points: list[tuple[int, dict]], label: str, memory_label: str, **style) -> None:
        millions = [ratings / 1e6 for ratings, _ in points]
        speed.plot(millions, [run["rows_per_s"] for _, run in points], label=label, **style)
        peaks = [run["peak_rss_gib"] for _, run in points]
        memory.plot(millions, [max(p) if isinstance(p, list) else p for p in peaks], label=memory_label, **style)

    for workers, marker in (("1", "o"), ("2", "s")):
        label = f"{workers} worker{'s' if workers != '1' else ''}"
        points = [(e["ratings"], e["runs"][workers]) for e in entries if workers in e["runs"]]
        draw(points, label, f"{label} (largest process)", marker=marker)
    inputs = [(e["ratings"], e["input_only"]) for e in entries if "input_only" in e]
    if inputs:
        label = f"input alone ({inputs[0][1]['model']}, no model)"
        draw(inputs, label, label, marker="^", linestyle=":")
    memory.axhline(
        config_scale.SCALE_TARGETS["peak_rss_gib_at_25m"], color="grey", linestyle="--", label="target at 25 M"
    )
    speed.set_yscale("log")
    for axis, title in ((speed, "rows/s (one epoch, streamed)"), (memory, "peak RSS per process (GiB)")):
        synthetic_axis(axis, title)
        axis.legend()
    memory.set_ylim(bottom=0)
    finish(figure, "Training at scale", path)


def stages_at_scale(bench: dict, stages: tuple[str, ...], path: Path) -> None:
    """make bench-scale's plot: each product stage's wall time and peak RSS by SYNTHETIC size."""
    plt = pyplot()
    entries = sorted(bench.get("sizes", {}).values(), key=lambda entry: entry["ratings"])
    figure, (clock, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    millions = [entry["ratings"] / 1e6 for entry in entries]
    for stage in (*stages, "ranker epoch, 2 workers"):
        points = [(m, e["stages"].get(stage, {})) for m, e in zip(millions, entries)]
        points = [(m, figures) for m, figures in points if "seconds" in figures]
        if not points:
            continue
        clock.plot([m for m, _ in points], [f["seconds"] / 60 for _, f in points], marker="o", label=stage)
        rss = [f.get("worker_peak_rss_gib") or f["peak_rss_gib"] for _, f in points]
        memory.plot([m for m, _ in points], rss, marker="o", label=stage)
    memory.axhline(config_scale.SCALE["peak_rss_target_gib"], color="grey", linestyle="--", label="target")
    for axis, title in ((clock, "wall time per stage (minutes)"), (memory, "peak RSS per stage process (GiB)")):
        synthetic_axis(axis, title)
    clock.set_yscale("log")
    memory.set_ylim(bottom=0)
    memory.legend(fontsize=7)
    finish(figure, "The product path at scale", path)
