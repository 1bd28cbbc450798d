"""The report's pictures: training curves and models against baselines. Each function takes data and a path."""

from __future__ import annotations

from pathlib import Path

from pipeline.files import atomic_path
from pipeline.labels import label

# The panels of the metrics figure: (protocol, metric).
PANELS = (
    ("reference_protocol", "ndcg@10"),
    ("reference_protocol", "hit_rate@10"),
    ("rated", "auc"),
    ("full_catalog", "recall@10"),
    ("full_catalog", "ndcg@10"),
    ("full_catalog", "hr@10"),
)


def pyplot():
    """matplotlib's pyplot without a display, imported when a picture is drawn (not when this module is)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> None:
    """Write `fig` to `path` whole (a temporary file, then renamed) and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    pyplot().close(fig)


def plot_losses(histories: dict[str, dict], path: Path) -> None:
    """One panel per model (keyed by its title): training and validation loss per epoch."""
    plt = pyplot()
    columns = min(4, len(histories))
    rows = (len(histories) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.3 * rows), squeeze=False)
    for ax in axes.ravel()[len(histories) :]:
        ax.axis("off")
    for ax, (title, history) in zip(axes.ravel(), histories.items()):
        epochs = [e["epoch"] for e in history["epochs"]]
        ax.plot(epochs, [e["loss"] for e in history["epochs"]], marker="o", label="training")
        ax.plot(epochs, [e["val_loss"] for e in history["epochs"]], marker="o", label="validation")
        loss = "list softmax cross-entropy" if history["config"].get("loss") == "listwise" else "binary cross-entropy"
        ax.set(title=title, xlabel="epoch", ylabel=loss)
        ax.legend()
    fig.tight_layout()
    save(fig, path)


def plot_metrics(results: dict, path: Path, title: str = "Models (blue) vs baselines (grey)") -> None:
    """One bar panel per (protocol, metric) of PANELS; models that have no value there are left out."""
    plt = pyplot()
    scorers = {**results["models"], **results["baselines"]}
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    for ax, (protocol, metric) in zip(axes.ravel(), PANELS):
        names = [name for name, protocols in scorers.items() if protocols.get(protocol, {}).get(metric) is not None]
        values = [scorers[name][protocol][metric] for name in names]
        colors = ["tab:blue" if name in results["models"] else "tab:gray" for name in names]
        ax.barh([label(name) for name in names], values, color=colors)
        ax.invert_yaxis()
        ax.set_title(f"{protocol.replace('_', ' ')}: {metric}")
        for y, value in enumerate(values):
            ax.text(value, y, f" {value:.3f}", va="center", fontsize=8)
        ax.set_xlim(0, max(values) * 1.25 if values and max(values) > 0 else 1)
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)


def plot_timings(timings: list[dict], path: Path) -> None:
    """Wall time per stage, longest first."""
    plt = pyplot()
    ordered = sorted(timings, key=lambda t: t["seconds"], reverse=True)
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(ordered) + 1.2))
    ax.barh([t["stage"] for t in ordered], [t["seconds"] for t in ordered], color="tab:blue")
    ax.invert_yaxis()
    for y, t in enumerate(ordered):
        ax.text(t["seconds"], y, f" {t['seconds']:.0f} s", va="center", fontsize=8)
    ax.set(xlabel="wall seconds (2 cores)", title="Time per stage")
    fig.tight_layout()
    save(fig, path)


def plot_newcomers(results: dict, path: Path, title: str) -> None:
    """Recall@10 and NDCG@10 of every newcomer scorer against k, the liked movies a newcomer gave (test users)."""
    from pipeline.evaluation.report_sections import newcomer_scorer_label

    plt = pyplot()
    ks = [int(k) for k in results["test"]]
    names = [name for name in next(iter(results["test"].values())) if name != "users"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5))
    for ax, metric in zip(axes, ("recall@10", "ndcg@10")):
        for name in names:
            baseline = name in results["baselines"]
            ax.plot(
                ks,
                [results["test"][str(k)][name][metric] for k in ks],
                marker="o",
                linestyle="--" if baseline else "-",
                linewidth=2.5 if name == "served" else 1.5,
                label=newcomer_scorer_label(name),
            )
        ax.set(xlabel="liked movies given (k)", ylabel=metric, xticks=ks, title=metric)
        ax.grid(alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    save(fig, path)
