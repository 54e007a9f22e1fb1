"""`lmforge sweep RECIPE`: train one variant per data fraction (and per value of any other recipe key), evaluate
each with `lmforge eval`, and chart the metric against the amount of training data."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

from pydantic import Field, field_validator

from lmforge.config import ConfigError, Section, parse_override

log = logging.getLogger("lmforge.sweep")


class SweepConfig(Section):
    recipe: str = Field(description="training recipe file, or a shipped recipe name")
    overrides: list[str] = Field([], description="key.sub=value overrides applied to every variant")
    data_fractions: list[float] = Field([1.0], description="shares of the training data, e.g. 0.1,0.25,0.5,1.0")
    axis: list[str] = Field([], description="more axes as key=v1,v2 (e.g. lora.r=4,8,16); every combination runs")
    tasks: list[str] = Field(description="eval tasks scored for every variant (benchmark=PATH or a task YAML)")
    metric: str | None = Field(None, description="task/metric to chart (default: the first task's first metric)")
    limit: int = Field(0, ge=0, description="documents per eval subject (0: all)")
    name: str | None = Field(None, description="sweep folder name (default: sweep-<recipe name>)")
    output_dir: str = Field("runs", description="folder that holds run folders")

    @field_validator("data_fractions", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        """`--data-fractions 0.1,0.25` and `--data-fractions 0.1 0.25` both work."""
        items = value if isinstance(value, list) else [value]
        return [part for item in items for part in str(item).split(",") if part.strip()]

    @field_validator("data_fractions")
    @classmethod
    def _shares(cls, fractions: list[float]) -> list[float]:
        if not all(0 < f <= 1 for f in fractions):
            raise ValueError(f"data fractions must be in (0, 1], got {fractions}")
        return sorted(set(fractions))


def variants(cfg: SweepConfig) -> list[dict]:
    """Every combination of the axes, each as {dotted key: value}; data.fraction is the first axis."""
    axes = {"data.fraction": cfg.data_fractions}
    for spec in cfg.axis:
        key, _, values = spec.partition("=")
        if not values:
            raise ConfigError(f"axis '{spec}': write key=v1,v2,...")
        axes[key.strip()] = [parse_override(f"{key}={value}")[1] for value in values.split(",")]
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def run_sweep(cfg: SweepConfig, overwrite: bool = False) -> Path:
    """Train and evaluate every variant inside one run folder, then write sweep.json, sweep.md and sweep.png."""
    from lmforge.config import load, resolve_recipe
    from lmforge.eval.runner import load_tasks
    from lmforge.runs import Run
    from lmforge.train.config import TrainRecipe

    recipe_path = resolve_recipe(cfg.recipe)
    plan = [(updates, load(TrainRecipe, recipe_path, cfg.overrides, updates)) for updates in variants(cfg)]
    check_metric(cfg.metric, load_tasks(cfg.tasks))
    with Run(cfg.output_dir, cfg.name or f"sweep-{plan[0][1].name}", overwrite).start(cfg) as run:
        rows = [_train_and_evaluate(recipe, updates, cfg, run.dir) for updates, recipe in plan]
        write_sweep(run.dir, rows, cfg.metric or _first_metric(rows))
        return run.finish()


def _train_and_evaluate(recipe, updates: dict, cfg: SweepConfig, folder: Path) -> dict:
    from lmforge.eval.config import EvalConfig
    from lmforge.eval.report import read_results
    from lmforge.eval.runner import evaluate
    from lmforge.runs import last_record
    from lmforge.train import train

    label = ",".join(f"{key}={value}" for key, value in updates.items())
    slug = "-".join(f"{key.split('.')[-1]}{value}" for key, value in updates.items())
    log.info("sweep: training %s", label)
    model_dir = train(recipe.model_copy(update={"name": slug, "output_dir": str(folder)}))
    examples = last_record(model_dir, "data")["examples"]
    eval_dir = evaluate(EvalConfig(model=str(model_dir), tasks=cfg.tasks, limit=cfg.limit, output_dir=str(folder),
                                   name=f"eval-{slug}"))
    metrics = {f"{task}/{metric}": value["value"] for task, result in read_results(eval_dir)["tasks"].items()
               for metric, value in result["metrics"].items()}
    return {"variant": label, **updates, "examples": examples, "run": model_dir.name, **metrics}


def check_metric(metric: str | None, tasks) -> None:
    """Fail before any training when --metric names no task/metric the sweep will measure."""
    measured = [f"{task.name}/{name}" for task in tasks for name in task.metrics]
    if metric is not None and metric not in measured:
        raise ValueError(f"--metric {metric}: the sweep measures {', '.join(measured)}")


def _first_metric(rows: list[dict]) -> str:
    return next(key for key in rows[0] if "/" in key)


def write_sweep(folder: Path, rows: list[dict], metric: str) -> None:
    from lmforge.reports import markdown_table
    from lmforge.plots import plot_curves
    from lmforge.runs import atomic_write_text

    if metric not in rows[0]:
        raise ValueError(f"no metric {metric}; the sweep measured {', '.join(k for k in rows[0] if '/' in k)}")
    atomic_write_text(folder / "sweep.json", json.dumps(rows, ensure_ascii=False, indent=1))
    columns = [key for key in rows[0] if key != "variant"]
    table = markdown_table(columns, [[_cell(row[key]) for key in columns] for row in rows])
    atomic_write_text(folder / "sweep.md", f"# Sweep: {metric} against training examples\n\n{table}\n")
    sizes = [row["examples"] for row in rows]
    plot_curves(_series(rows, metric), folder / "sweep.png", f"{metric} against training data", "training examples",
                metric, log_x=max(sizes) > 10 * min(sizes))


def _series(rows: list[dict], metric: str) -> dict[str, list[tuple[float, float]]]:
    """One line per combination of the axes other than data.fraction."""
    series: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        others = ",".join(f"{k}={row[k]}" for k in row if "." in k and "/" not in k and k != "data.fraction")
        series.setdefault(others or metric, []).append((row["examples"], row[metric]))
    return series


def _cell(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
