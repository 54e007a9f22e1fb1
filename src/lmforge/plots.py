"""PNG charts for run folders and reports (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metric(records: list[dict], key: str, out: Path, title: str) -> Path | None:
    """Line chart of `key` against step from metrics.jsonl records; None when nothing was logged."""
    points = [(r["step"], r[key]) for r in records if key in r and "step" in r]
    if not points:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([p[0] for p in points], [p[1] for p in points])
    ax.set(xlabel="step", ylabel=key, title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
