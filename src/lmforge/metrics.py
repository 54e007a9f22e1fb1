"""Metrics in the core: per-sample scores and corpus aggregates with bootstrap errors, shared by eval tasks, prompt
programs and RAG answers.

Answers are compared after `answers.normalize_answer`. Token metrics split CJK text per character (Chinese has no
spaces) and everything else into words (`answers.word_tokens`), so English and Chinese tasks are scored by the same
code. The runner calls `choice_sample_metrics` / `generation_sample_metrics` per sample, then `summarize` per task;
`lmforge compare` reuses the bootstrap.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

import numpy as np

from lmforge.answers import is_json, normalize_answer, same_answer, word_tokens

_BOOTSTRAP_BLOCK = 4_000_000  # sample indices drawn at once: ~32 MB, whatever the task size


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD's bag-of-tokens F1 (without its English-only article removal); two empty answers match."""
    pred, ref = word_tokens(prediction), word_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    return _f_measure(common / len(pred), common / len(ref))


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure: the longest common token subsequence as precision and recall; two empty texts match."""
    pred, ref = word_tokens(prediction), word_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = _lcs_length(pred, ref)
    return _f_measure(common / len(pred), common / len(ref))


def _f_measure(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _lcs_length(a: list[str], b: list[str]) -> int:
    """Longest common subsequence by the one-row dynamic programme."""
    row = [0] * (len(b) + 1)
    for x in a:
        diagonal = 0
        for j, y in enumerate(b, start=1):
            diagonal, row[j] = row[j], diagonal + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def _argmax_is_gold(values, gold: int) -> float:
    """Ties go to the first maximum, as numpy's argmax (and so lm-eval) does."""
    return float(int(np.argmax(values)) == gold)


def _per_unit(scores: list[float], lengths: list[int]) -> np.ndarray:
    """Log-likelihood per character or byte; an empty choice counts as length 1 instead of dividing by zero."""
    return np.asarray(scores, dtype=float) / np.maximum(lengths, 1)


def _mc2(scores: list[float], extra: dict) -> float:
    """TruthfulQA MC2 (lm-eval `process_results_mc2`): probability mass on the true answers over all answers."""
    if "labels" not in extra:
        raise ValueError("mc2 needs extra['labels'], 1 for each true answer and 0 for each false one")
    scores = np.asarray(scores, dtype=float)
    probs = np.exp(scores - scores.max())
    return float(probs[np.asarray(extra["labels"], dtype=bool)].sum() / probs.sum())


_ChoiceMetric = Callable[[list[float], list[str], int, dict], float]
_CHOICE: dict[str, _ChoiceMetric] = {
    "acc": lambda scores, choices, gold, extra: _argmax_is_gold(scores, gold),
    "mc1": lambda scores, choices, gold, extra: _argmax_is_gold(scores, gold),
    "acc_norm": lambda scores, choices, gold, extra: _argmax_is_gold(
        _per_unit(scores, [len(c) for c in choices]), gold),
    "acc_bytes": lambda scores, choices, gold, extra: _argmax_is_gold(
        _per_unit(scores, [len(c.encode("utf-8")) for c in choices]), gold),
    "mc2": lambda scores, choices, gold, extra: _mc2(scores, extra),
}
_GenerateMetric = Callable[[str | None, str, str], float]
_GENERATE: dict[str, _GenerateMetric] = {
    "exact_match": lambda prediction, gold, output: float(same_answer(prediction, gold)),
    "acc": lambda prediction, gold, output: float(same_answer(prediction, gold)),
    "f1": lambda prediction, gold, output: 0.0 if prediction is None else token_f1(prediction, gold),
    "rouge_l": lambda prediction, gold, output: rouge_l(output if prediction is None else prediction, gold),
    "json_valid": lambda prediction, gold, output: float(is_json(output)),
}
_CORPUS = {"f1_macro": "f1", "precision_macro": "precision", "recall_macro": "recall"}

CORPUS_METRICS = frozenset(_CORPUS)
CHOICE_METRICS = frozenset(_CHOICE) | CORPUS_METRICS  # every metric a choice task may list
GENERATE_METRICS = frozenset(_GENERATE) | CORPUS_METRICS  # every metric a generation task may list
METRICS = CHOICE_METRICS | GENERATE_METRICS


def choice_sample_metrics(
    names: list[str], scores: list[float], choices: list[str], gold: int, extra: dict
) -> dict[str, float]:
    """One multiple-choice item's scores; corpus metrics are skipped here, they need every sample."""
    return {name: _CHOICE[name](scores, choices, gold, extra) for name in _per_sample(names, _CHOICE, "choice")}


def generation_sample_metrics(names: list[str], prediction: str | None, gold: str, output: str) -> dict[str, float]:
    """One generated answer's scores; `prediction` is the extracted answer (None: none found), `output` the raw text."""
    return {name: _GENERATE[name](prediction, gold, output) for name in _per_sample(names, _GENERATE, "generate")}


def _per_sample(names: list[str], registry: dict, kind: str) -> list[str]:
    unknown = [name for name in names if name not in registry and name not in CORPUS_METRICS]
    if unknown:
        raise ValueError(f"not a metric for {kind} tasks: {', '.join(unknown)}")
    return [name for name in names if name in registry]


def classification_report(samples: list[dict]) -> dict:
    """Per-class precision/recall/F1/support and their unweighted (macro) means over the gold classes.

    A prediction outside the gold classes (an unparseable or free-form generation) is simply wrong: it costs the
    gold class recall but adds no class of its own, so stray outputs cannot dilute the macro average.
    """
    gold, pred, classes = _class_codes(samples)
    table = _per_class(gold, pred, len(classes))
    per_class = {
        label: {"precision": float(table["precision"][i]), "recall": float(table["recall"][i]),
                "f1": float(table["f1"][i]), "support": int(table["support"][i])}
        for i, label in enumerate(classes)
    }
    return {"per_class": per_class, "macro": _macro(table)}


def _class_label(sample: dict, key: str) -> str | None:
    """choices[index] for choice tasks (prediction and gold are indices), the normalised string for generations."""
    value = sample.get(key)
    if value is None:
        return None
    if sample.get("choices") and isinstance(value, int):
        return sample["choices"][value]
    return normalize_answer(str(value))


def _class_codes(samples: list[dict]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Gold and predicted labels as indices into the sorted gold classes; -1 for a prediction outside them."""
    gold = [_class_label(sample, "gold") for sample in samples]
    classes = sorted(set(gold))
    index = {label: i for i, label in enumerate(classes)}
    pred = [index.get(_class_label(sample, "prediction"), -1) for sample in samples]
    return np.array([index[label] for label in gold], dtype=int), np.array(pred, dtype=int), classes


def _per_class(gold: np.ndarray, pred: np.ndarray, k: int) -> dict[str, np.ndarray]:
    support = np.bincount(gold, minlength=k)
    predicted = np.bincount(pred[pred >= 0], minlength=k)
    hits = np.bincount(gold[gold == pred], minlength=k)
    precision = np.divide(hits, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=precision + recall > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def _macro(table: dict[str, np.ndarray]) -> dict[str, float]:
    """Means over the classes present in gold, so a bootstrap resample that misses a rare class is not scored on it."""
    present = table["support"] > 0
    return {key: float(table[key][present].mean()) for key in ("precision", "recall", "f1")}


def _statistic(name: str, samples: list[dict]) -> Callable[[np.ndarray], np.ndarray]:
    """`aggregate(name)` for each row of sample indices; values and labels are read once, resamples are numpy work."""
    if not samples:
        raise ValueError(f"no samples to compute {name} on")
    if name in _CORPUS:
        gold, pred, classes = _class_codes(samples)
        return lambda rows: np.array([_macro(_per_class(gold[r], pred[r], len(classes)))[_CORPUS[name]] for r in rows])
    values = np.array([sample["metrics"][name] for sample in samples], dtype=float)
    return lambda rows: values[rows].mean(axis=1)


def aggregate(name: str, samples: list[dict]) -> float:
    """A task-level value: the mean of a per-sample metric, or the macro average for the classification metrics."""
    return float(_statistic(name, samples)(np.arange(len(samples))[None])[0])


def bootstrap_aggregates(name: str, samples: list[dict], iters: int = 1000, seed: int = 1234) -> np.ndarray:
    """`aggregate` on `iters` resamples drawn with replacement.

    The draws depend only on (len(samples), iters, seed): two aligned sample lists bootstrapped with the same seed
    are resampled with the same indices, which is what makes compare.py's bootstrap paired.
    """
    statistic = _statistic(name, samples)
    n = len(samples)
    rng = np.random.default_rng(seed)
    rows = max(1, _BOOTSTRAP_BLOCK // n)
    return np.concatenate(
        [statistic(rng.integers(0, n, size=(min(rows, iters - start), n))) for start in range(0, iters, rows)]
    )


def bootstrap_stderr(name: str, samples: list[dict], iters: int = 1000, seed: int = 1234) -> float:
    """Standard error by bootstrap (ddof=1, as lm-eval); it also covers macro F1, which has no closed form."""
    if len(samples) < 2:
        return 0.0
    return float(np.std(bootstrap_aggregates(name, samples, iters, seed), ddof=1))


def bootstrap_interval(name: str, samples: list[dict], iters: int = 1000, seed: int = 1234) -> list[float]:
    """The 95% percentile-bootstrap interval of `aggregate`."""
    return [float(bound) for bound in np.percentile(bootstrap_aggregates(name, samples, iters, seed), [2.5, 97.5])]


def summarize(names: list[str], samples: list[dict], iters: int = 1000) -> dict:
    """A task's results.json fields: metrics with stderr, per-class details for classification, per-subject values."""
    summary: dict = {
        "metrics": {name: {"value": aggregate(name, samples), "stderr": bootstrap_stderr(name, samples, iters)}
                    for name in names}
    }
    if CORPUS_METRICS.intersection(names):
        summary["details"] = classification_report(samples)
    subjects = sorted({sample.get("subject") for sample in samples} - {None, ""})
    if subjects:
        summary["subjects"] = {subject: _subject_values(names, [s for s in samples if s.get("subject") == subject])
                               for subject in subjects}
    return summary


def _subject_values(names: list[str], samples: list[dict]) -> dict:
    return {**{name: aggregate(name, samples) for name in names}, "n": len(samples)}
