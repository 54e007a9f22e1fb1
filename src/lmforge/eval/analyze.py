"""`lmforge analyze RUN`: why generation answers fail, counted by category, with examples to read.

Categories are independent tests, so one sample may count in several (a looping answer is usually also over-length
and wrong) and shares do not add up to 100%. `wrong_answer` is just "the primary metric is 0", whatever else went
wrong, so the reader can set the other categories against it.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Callable

from lmforge.answers import is_json, latin_words, script_shares, word_tokens
from lmforge.eval.report import read_results, run_label
from lmforge.reports import markdown_table, write_report

NGRAM, NGRAM_REPEATS, LINE_REPEATS = 3, 3, 2
LENGTH_RATIO, MIN_REFERENCE_CHARS = 3, 32
NON_WORD_SHARE, MIN_WORDS, CONSISTENT_OUTPUTS = 0.2, 3, 3
PRIMARY_METRICS = ("exact_match", "acc")
_SPECIAL_TOKEN = re.compile(r"<\|[^<>]*?\|>|</?s>")
_FENCE = re.compile(r"```[\w-]*")
_TAIL_CHARS, _OUTPUT_CHARS = 200, 500

Detector = Callable[[dict, set], str | None]


def primary_metric(sample: dict) -> tuple[str | None, float | None]:
    """exact_match, else acc, else the sample's first metric: the one whose 0 means "wrong"."""
    metrics = sample.get("metrics") or {}
    name = next((name for name in PRIMARY_METRICS if name in metrics), next(iter(metrics), None))
    return name, metrics.get(name)


def _repetition(sample: dict, vocab: set) -> str | None:
    """A decoding loop: a 3-gram of tokens (characters for CJK) seen >= 3 times, or a non-blank line seen twice."""
    tokens = word_tokens(sample["output"])
    gram, count = _most_common(Counter(zip(*(tokens[i:] for i in range(NGRAM)))))
    if count >= NGRAM_REPEATS:
        return f'"{" ".join(gram)}" x{count}'
    line, count = _most_common(Counter(line.strip() for line in sample["output"].splitlines() if word_tokens(line)))
    return f'line "{line}" x{count}' if count >= LINE_REPEATS else None


def _most_common(counter: Counter) -> tuple:
    return counter.most_common(1)[0] if counter else (None, 0)


def _over_length(sample: dict, vocab: set) -> str | None:
    """The answer ran on: stopped by max_new_tokens, or more than 3x the reference's characters.

    References shorter than MIN_REFERENCE_CHARS count as that long: a worked answer to "12 + 30" is not rambling.
    """
    if sample.get("finish_reason") == "length":
        return f"hit max_new_tokens ({sample.get('max_new_tokens')})"
    reference, output = sample.get("reference") or "", sample["output"]
    if reference and len(output) > LENGTH_RATIO * max(len(reference), MIN_REFERENCE_CHARS):
        return f"{len(output)} characters, reference {len(reference)}"
    return None


def _format_violation(sample: dict, vocab: set) -> str | None:
    """No answer could be extracted, or JSON was asked for and not given: right or not, the output is unusable."""
    if sample.get("prediction") is None:
        return "no answer could be extracted"
    if sample.get("json_expected") and not is_json(sample["output"]):
        return "JSON expected, output does not parse"
    return None


def _non_words(sample: dict, vocab: set) -> str | None:
    """Over 20% of the output's Latin words (at least 3) appear nowhere in the run's prompts, golds and references.

    Code fences go first: "```json" is markup, not a word.
    """
    words = latin_words(_FENCE.sub(" ", sample["output"]))
    unknown = [word for word in words if word not in vocab]
    if len(words) < MIN_WORDS or len(unknown) <= NON_WORD_SHARE * len(words):
        return None
    return f"{len(unknown) / len(words):.0%} unknown words: {', '.join(sorted(set(unknown))[:10])}"


def _wrong_language(sample: dict, vocab: set) -> str | None:
    """Asked mostly in CJK and answered mostly in Latin script, or the reverse; outputs without letters are skipped.

    The question is the sample's `query` when the runner stored it, else the prompt's last block. An answer in the
    script of its own gold/reference (a Latin name asked about in Chinese) is not flagged.
    """
    asked = _main_script(sample.get("query") or _question(sample["prompt"])) or _main_script(sample["prompt"])
    answered = _main_script(sample["output"])
    expected = _main_script(str(sample.get("reference") or sample.get("gold") or ""))
    if asked and answered and asked != answered and expected != answered:
        return f"asked in {asked}, answered in {answered}"
    return None


def _question(prompt: str) -> str:
    """The prompt's last block (after any few-shot examples), without chat-template special tokens like <|im_end|>."""
    return _SPECIAL_TOKEN.sub(" ", prompt).strip().rsplit("\n\n", 1)[-1]


def _main_script(text: str) -> str | None:
    return next((script for script, share in script_shares(text).items() if share > 0.5), None)


def _wrong_answer(sample: dict, vocab: set) -> str | None:
    """The primary metric is 0, whatever other categories the sample is in."""
    name, value = primary_metric(sample)
    return f"{name} = 0" if name is not None and value == 0 else None


DETECTORS: dict[str, Detector] = {
    "repetition": _repetition,
    "over_length": _over_length,
    "format_violation": _format_violation,
    "non_words": _non_words,
    "wrong_language": _wrong_language,
    "wrong_answer": _wrong_answer,
}


def analyze_results(results: dict, max_examples: int = 3) -> dict:
    """Category counts, shares and examples per generation task and over all of them."""
    tasks = {name: task for name, task in results["tasks"].items() if task["kind"] == "generate"}
    if not tasks:
        raise ValueError("the run has no generation tasks to analyse")
    vocab = _vocabulary(results)
    findings = {name: [(name, sample, _categorize(sample, vocab)) for sample in task["samples"]]
                for name, task in tasks.items()}
    return {
        "model": results.get("model"),
        "adapter": results.get("adapter"),
        "categories": list(DETECTORS),
        "overall": _tally([f for task_findings in findings.values() for f in task_findings], 0),
        "tasks": {name: _tally(task_findings, max_examples) for name, task_findings in findings.items()},
    }


def _vocabulary(results: dict) -> set[str]:
    """The words an answer can be expected to use: those of the run's prompts, golds and references, and those the
    model itself writes in at least CONSISTENT_OUTPUTS outputs (its answer style: "First", "Then"); a misspelling
    or a made-up word is rarer than that."""
    samples = [sample for task in results["tasks"].values() for sample in task["samples"]]
    known = {word for sample in samples for key in ("prompt", "gold", "reference")
             for word in latin_words(str(sample.get(key) or ""))}
    used = Counter(word for sample in samples for word in set(latin_words(sample.get("output") or "")))
    return known | {word for word, outputs in used.items() if outputs >= CONSISTENT_OUTPUTS}


def _categorize(sample: dict, vocab: set) -> dict[str, str]:
    """Category -> evidence (why the sample is in it), for each category the sample falls into."""
    return {category: evidence for category, detect in DETECTORS.items() if (evidence := detect(sample, vocab))}


def _tally(findings: list[tuple[str, dict, dict]], max_examples: int) -> dict:
    n = len(findings)
    scores = [value for _, sample, _ in findings if (value := primary_metric(sample)[1]) is not None]
    categories = {}
    for category in DETECTORS:
        hits = [(task, sample, found[category]) for task, sample, found in findings if category in found]
        categories[category] = {"count": len(hits), "share": len(hits) / n if n else 0.0,
                                "examples": [_example(*hit) for hit in hits[:max_examples]]}
    return {"n": n, "accuracy": sum(scores) / len(scores) if scores else None, "categories": categories}


def _example(task: str, sample: dict, evidence: str) -> dict:
    output = sample["output"]
    return {"task": task, "id": sample["id"], "evidence": evidence, "prompt_tail": sample["prompt"][-_TAIL_CHARS:],
            "output": output if len(output) <= _OUTPUT_CHARS else output[:_OUTPUT_CHARS] + "…",
            "gold": sample.get("gold")}


def analysis_markdown(analysis: dict) -> str:
    """One table of counts (shares) per category, all tasks and each task, then examples per task."""
    columns = {"all tasks": analysis["overall"], **analysis["tasks"]}
    rows = [[category] + [_count(tally["categories"][category]) for tally in columns.values()]
            for category in analysis["categories"]]
    rows.append(["accuracy"] + [_fmt(tally["accuracy"]) for tally in columns.values()])
    lines = [f"# Error analysis: {run_label(analysis)}", "",
             "Accuracy is the primary metric (exact_match, else acc, else the first); a sample can fall into several "
             "categories, so shares do not add up to 100%.", "",
             markdown_table(["category"] + [f"{name} (n={tally['n']})" for name, tally in columns.items()], rows)]
    for name, task in analysis["tasks"].items():
        lines += ["", f"## {name}: examples"]
        for category, found in task["categories"].items():
            if found["examples"]:
                lines += ["", f"### {category}", ""] + [_example_lines(example) for example in found["examples"]]
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _count(found: dict) -> str:
    return f"{found['count']} ({found['share']:.1%})"


def _example_lines(example: dict) -> str:
    return (f"- `{example['id']}`: {example['evidence']}\n  - prompt: {_code(example['prompt_tail'])}\n"
            f"  - output: {_code(example['output'])}\n  - gold: {_code(str(example['gold']))}")


def _code(text: str) -> str:
    """Inline code on one line, whatever backticks or newlines the text holds."""
    return "`` " + text.replace("\n", "⏎").replace("``", "` `") + " ``"


def analyze_run(run_dir: Path) -> Path:
    """Write analysis.json, analysis.md and analysis.png (overall category shares) into the run; returns the .md."""
    analysis = analyze_results(read_results(run_dir))
    overall = analysis["overall"]["categories"]
    bars = {"labels": list(overall), "values": [found["share"] for found in overall.values()],
            "title": f"Error categories: {run_label(analysis)}", "ylabel": "share of generation samples"}
    return write_report(Path(run_dir), "analysis", analysis, analysis_markdown(analysis), bars)
