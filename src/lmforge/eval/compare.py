"""`lmforge compare RUN_A RUN_B`: what did B (say, after fine-tuning) gain or forget relative to A?

Every metric is recomputed on the samples both runs scored (matched by id) and the 95% interval of B - A comes from a
paired bootstrap: A and B are resampled with the same indices, so item difficulty, shared by both runs, cancels out
and the interval is as narrow as the data allow. A change counts only when it is larger than `threshold` and its
interval excludes zero.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lmforge.eval.report import read_results, run_label
from lmforge.reports import markdown_table, write_report
from lmforge.metrics import aggregate, bootstrap_aggregates

VERDICTS = ("improved", "regressed", "unchanged")


def compare_results(a: dict, b: dict, threshold: float = 0.01, iters: int = 1000, seed: int = 1234) -> dict:
    """Rows of (task, metric, A, B, delta, CI, n, verdict) for each task and metric in both runs, plus notes."""
    rows, notes = [], []
    for task in a["tasks"]:
        if task not in b["tasks"]:
            notes.append(f"{task}: only in A")
            continue
        task_rows, note = _compare_task(task, a["tasks"][task], b["tasks"][task], threshold, iters, seed)
        rows += task_rows
        notes += [note] if note else []
    notes += [f"{task}: only in B" for task in b["tasks"] if task not in a["tasks"]]
    return {"a": run_label(a), "b": run_label(b), "threshold": threshold, "rows": rows, "notes": notes,
            "summary": {verdict: sum(row["verdict"] == verdict for row in rows) for verdict in VERDICTS}}


def _compare_task(task: str, a: dict, b: dict, threshold: float, iters: int, seed: int) -> tuple[list[dict], str]:
    """The task's rows on the samples both runs hold, and a note when that is not all of them."""
    b_by_id = {sample["id"]: sample for sample in b["samples"]}
    pairs = [(sample, b_by_id[sample["id"]]) for sample in a["samples"] if sample["id"] in b_by_id]
    if not pairs:
        return [], f"{task}: no sample ids in common, skipped"
    samples_a, samples_b = [pair[0] for pair in pairs], [pair[1] for pair in pairs]
    rows = [_compare_metric(task, metric, samples_a, samples_b, threshold, iters, seed)
            for metric in a["metrics"] if metric in b["metrics"]]
    partial = len(pairs) < max(len(a["samples"]), len(b["samples"]))
    note = f"{task}: compared on the {len(pairs)} samples in common (A {len(a['samples'])}, B {len(b['samples'])})"
    return rows, (note if partial else "")


def _compare_metric(task: str, metric: str, samples_a: list[dict], samples_b: list[dict],
                    threshold: float, iters: int, seed: int) -> dict:
    change = paired_change(metric, samples_a, samples_b, iters, seed)
    return {"task": task, "metric": metric, **change, "verdict": verdict(change["delta"], *change["ci"], threshold)}


def paired_change(metric: str, samples_a: list[dict], samples_b: list[dict], iters: int = 1000,
                  seed: int = 1234) -> dict:
    """B - A on samples aligned item by item, with its 95% paired-bootstrap interval."""
    value_a, value_b = aggregate(metric, samples_a), aggregate(metric, samples_b)
    # Same length and seed, so the same resample indices for A and B: a paired bootstrap.
    deltas = bootstrap_aggregates(metric, samples_b, iters, seed) - bootstrap_aggregates(metric, samples_a, iters, seed)
    low, high = (float(bound) for bound in np.percentile(deltas, [2.5, 97.5]))
    return {"a": value_a, "b": value_b, "delta": value_b - value_a, "ci": [low, high], "n": len(samples_a)}


def verdict(delta: float, low: float, high: float, threshold: float) -> str:
    if delta > threshold and low > 0:
        return "improved"
    if delta < -threshold and high < 0:
        return "regressed"
    return "unchanged"


def comparison_markdown(comparison: dict) -> str:
    rows = [[row["task"], row["metric"], f"{row['a']:.4f}", f"{row['b']:.4f}", f"{row['delta']:+.4f}",
             f"[{row['ci'][0]:+.4f}, {row['ci'][1]:+.4f}]", row["n"], _emphasised(row["verdict"])]
            for row in comparison["rows"]]
    summary = ", ".join(f"{count} {verdict}" for verdict, count in comparison["summary"].items())
    lines = [f"# Comparison: A = {comparison['a']}, B = {comparison['b']}", "",
             f"delta = B - A on the samples both runs scored, with a 95% paired-bootstrap interval; a change counts "
             f"when |delta| > {comparison['threshold']} and the interval excludes 0.", "",
             markdown_table(["task", "metric", "A", "B", "delta", "95% CI", "n", "verdict"], rows), "",
             f"Summary: {summary}."]
    if comparison["notes"]:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in comparison["notes"]]
    return "\n".join(lines) + "\n"


def _emphasised(verdict: str) -> str:
    """Regressions in bold: they are what a forgetting check is read for."""
    return f"**{verdict}**" if verdict == "regressed" else verdict


def compare_runs(run_a: Path, run_b: Path, out: Path | None = None, threshold: float = 0.01) -> tuple[dict, str]:
    """Compare two eval runs; with `out`, also write comparison.json, .md and .png (deltas with their intervals)."""
    comparison = compare_results(read_results(run_a), read_results(run_b), threshold)
    markdown = comparison_markdown(comparison)
    if out is not None:
        rows = comparison["rows"]
        bars = {"labels": [f"{row['task']} / {row['metric']}" for row in rows],
                "values": [row["delta"] for row in rows],
                "errors": [(row["delta"] - row["ci"][0], row["ci"][1] - row["delta"]) for row in rows],
                "title": f"B - A\nA = {comparison['a']}\nB = {comparison['b']}", "ylabel": "delta (95% CI)"}
        write_report(Path(out), "comparison", comparison, markdown, bars)
    return comparison, markdown
