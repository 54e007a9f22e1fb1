"""Forgetting check inside a training run: the same tasks scored before and after training, then compared."""

from __future__ import annotations

from pathlib import Path

from lmforge.eval.task import Task


class RetentionCheck:
    """Loads the tasks up front, so a bad task file fails before training starts rather than after it."""

    def __init__(self, section, model_label: str, folder: Path):
        from lmforge.eval.config import EvalConfig
        from lmforge.eval.runner import load_tasks

        self.tasks: list[Task] = load_tasks(section.retention_tasks)
        self.cfg = EvalConfig(model=model_label, tasks=section.retention_tasks, limit=section.limit,
                              num_fewshot=section.num_fewshot)
        self.model_label = model_label
        self.threshold = section.threshold
        self.folder = folder
        self.before: dict | None = None

    def measure_before(self, model, tokenizer) -> None:
        self.before = self._measure(model, tokenizer, "before")

    def report_after(self, model, tokenizer) -> str:
        """Markdown comparison of the trained model against the results measured before training."""
        from lmforge.eval.compare import compare_results, comparison_markdown

        comparison = compare_results(self.before, self._measure(model, tokenizer, "after"), self.threshold)
        return comparison_markdown(comparison)

    def _measure(self, model, tokenizer, label: str) -> dict:
        """Evaluate the in-memory model and keep its results under retention/<label>/."""
        from lmforge.eval.runner import evaluate_tasks, write_results

        training = model.training
        model.eval()
        cfg = self.cfg.model_copy(update={"model": f"{self.model_label} ({label} training)"})
        results = evaluate_tasks(model, tokenizer, self.tasks, cfg)
        model.train(training)
        (self.folder / label).mkdir(parents=True, exist_ok=True)
        write_results(self.folder / label, results)
        return results
