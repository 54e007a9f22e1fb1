"""PNG charts for run folders and reports (matplotlib, headless)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

# Per-glyph fallbacks for Chinese labels, used when installed (DejaVu Sans has no CJK glyphs).
_CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "Microsoft YaHei",
              "PingFang SC", "SimHei")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metric(records: list[dict], key: str, out: Path, title: str) -> Path | None:
    """Line chart of `key` against step from metrics.jsonl records; None when nothing was logged."""
    points = [(r["step"], r[key]) for r in records if key in r and "step" in r]
    return plot_curves({key: points}, out, title, "step", key, markers=False) if points else None


def plot_curves(series: dict[str, list[tuple[float, float]]], out: Path, title: str, xlabel: str, ylabel: str,
                log_x: bool = False, markers: bool = True) -> Path:
    """One line per series of (x, y) points; a legend when there is more than one."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, points in series.items():
        points = sorted(points)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o" if markers else None, label=label)
    if log_x:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_bars(labels: list[str], values: list[float], out: Path, title: str, ylabel: str = "", errors=None) -> Path:
    """Horizontal bar chart written atomically; horizontal so that 30 long labels stay readable.

    `ylabel` names the value axis; `errors` holds symmetric half-widths or (below, above) pairs per bar.
    Labels in a script no installed font covers render as boxes instead of warning once per glyph.
    """
    plt = _pyplot()
    tmp = out.with_name(out.name + ".tmp")
    with plt.rc_context({"font.family": _font_families()}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig, ax = plt.subplots(figsize=(7, 1.2 + 0.3 * max(len(labels), 1)))
        positions = np.arange(len(labels))
        bars = ax.barh(positions, values, xerr=_error_bars(errors), capsize=3)
        ax.set_yticks(positions, labels)
        ax.invert_yaxis()  # first label on top, in the order of the tables next to the chart
        ax.axvline(0, color="black", linewidth=0.8)
        if errors is None:  # values next to error bars would collide with them
            ax.bar_label(bars, fmt="%.3g", padding=3)
            ax.margins(x=0.15)
        ax.set(title=title, xlabel=ylabel)
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    tmp.replace(out)
    return out


def plot_tradeoff(points: dict[str, tuple[float, tuple[float, float], float, tuple[float, float]]], out: Path,
                  title: str, xlabel: str, ylabel: str, targets: tuple[float | None, float | None] = (None, None)
                  ) -> Path:
    """One labelled point per variant at (x, y) with its 95% intervals as error bars, written atomically;
    `targets` draws dashed lines at an x and a y a variant should reach (None: no line)."""
    plt = _pyplot()
    tmp = out.with_name(out.name + ".tmp")
    with plt.rc_context({"font.family": _font_families()}):
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for label, (x, x_ci, y, y_ci) in points.items():
            ax.errorbar([x], [y], xerr=[[x - x_ci[0]], [x_ci[1] - x]], yerr=[[y - y_ci[0]], [y_ci[1] - y]],
                        fmt="o", capsize=3, label=label)
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
        for value, line in zip(targets, (ax.axvline, ax.axhline)):
            if value is not None:
                line(value, color="grey", linestyle="--", linewidth=0.8)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    tmp.replace(out)
    return out


def _font_families() -> list[str]:
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    return ["DejaVu Sans", *(name for name in _CJK_FONTS if name in installed)]


def _error_bars(errors) -> np.ndarray | None:
    """matplotlib's xerr layout (2, n) from per-bar pairs; clipped at 0 for an interval that misses its estimate."""
    if errors is None:
        return None
    array = np.asarray(errors, dtype=float)
    return np.clip(array.T if array.ndim == 2 else array, 0, None)
