"""`lmforge eval` against lm-evaluation-harness on the same model, data and hardware, side by side in one process.

Two tasks:
- CMMLU (real files from ../shared/benchmarks/cmmlu, a few subjects, 5-shot): one-token choices " A".." D";
- ARC layout (AI2 jsonl written from the toy world's multiple choice, 25-shot like the Open LLM Leaderboard):
  multi-token answer texts, where lm-eval re-encodes the shared prompt once per choice.

lm-eval runs its own prompt definitions: its installed cmmlu subject YAMLs and arc_easy YAML, pointed at the same
data through `dataset_path: json`. Few-shot examples are the first k of the dev/train split in both tools. Prints
wall time per tool, the speed ratio, and how many per-sample predictions agree.

    python benchmarks/eval_speed.py [--model DIR] [--subjects N] [--batch-size N]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
CMMLU = ROOT.parent / "shared" / "benchmarks" / "cmmlu"


def build_model(work: Path, preset: str) -> Path:
    """A randomly initialised preset with a BPE tokenizer trained on the benchmark text (Chinese and English)."""
    import torch

    from lmforge.models import build_from_preset
    from lmforge.tokenizer import train_bpe

    texts = [row for path in sorted(CMMLU.glob("*/*.csv")) for row in path.read_text(encoding="utf-8").splitlines()]
    texts += [line for line in (work / "world" / "pretrain.jsonl").read_text(encoding="utf-8").splitlines()]
    tokenizer = train_bpe(texts, vocab_size=8000)
    torch.manual_seed(0)
    model = build_from_preset(preset, tokenizer)
    out = work / "model"
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def write_arc(work: Path, train_rows: int = 30) -> Path:
    """The toy world's multiple choice in the AI2 ARC jsonl layout: the first rows are the few-shot train split."""
    from lmforge.world import write_world

    write_world(0, work / "world", "demo")
    rows = [json.loads(line) for line in (work / "world" / "mc" / "world_test.jsonl").read_text("utf-8").splitlines()]
    records = [{"id": row["id"], "answerKey": row["answer"],
                "question": {"stem": row["question"],
                             "choices": [{"text": text, "label": "ABCD"[i]} for i, text in enumerate(row["choices"])]}}
               for row in rows]
    folder = work / "arc"
    folder.mkdir()
    for name, part in (("World-Train.jsonl", records[:train_rows]), ("World-Test.jsonl", records[train_rows:])):
        (folder / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), "utf-8")
    return folder


def lm_eval_tasks(work: Path, subjects: list[str], arc: Path) -> Path:
    """Task YAMLs that include lm-eval's own definitions and only swap the dataset for local files.

    CMMLU CSVs become JSONL first: lm-eval's CSV loader re-types cells through pandas (\"1.50\" -> 1.5), which
    would change the prompts rather than test the scoring.
    """
    import lm_eval

    installed = Path(lm_eval.__file__).parent / "tasks"
    folder = work / "lm_eval_tasks"
    folder.mkdir()
    for subject in subjects:
        files = {}
        for split in ("dev", "test"):
            with open(CMMLU / split / f"{subject}.csv", encoding="utf-8", newline="") as f:
                rows = list(csv.DictReader(f))
            files[split] = work / "cmmlu_jsonl" / f"{subject}_{split}.jsonl"
            files[split].parent.mkdir(exist_ok=True)
            files[split].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
        (folder / f"lf_cmmlu_{subject}.yaml").write_text(json.dumps({
            "include": str(installed / "cmmlu" / f"cmmlu_{subject}.yaml"), "task": f"lf_cmmlu_{subject}",
            "dataset_path": "json", "dataset_name": None,
            "dataset_kwargs": {"data_files": {k: str(v) for k, v in files.items()}},
        }, ensure_ascii=False), "utf-8")
    (folder / "lf_arc.yaml").write_text(json.dumps({
        "include": str(installed / "arc" / "arc_easy.yaml"), "task": "lf_arc", "tag": [],
        "dataset_path": "json", "dataset_name": None,
        "dataset_kwargs": {"data_files": {"train": str(arc / "World-Train.jsonl"), "test": str(arc / "World-Test.jsonl")}},
        "validation_split": None, "fewshot_split": "train", "fewshot_config": {"sampler": "first_n"},
        "doc_to_text": "Question: {{question.stem}}\nAnswer:",
        "doc_to_choice": "{{question.choices | map(attribute='text') | list}}",
        "doc_to_target": "{{(question.choices | map(attribute='label') | list).index(answerKey)}}",
    }, ensure_ascii=False), "utf-8")
    return folder


def run_lmforge(model: Path, spec: str, shots: int, subjects: list[str], work: Path, name: str) -> tuple[float, dict]:
    from lmforge.eval.config import EvalConfig
    from lmforge.eval.runner import evaluate

    cfg = EvalConfig(model=str(model), tasks=[spec], subjects=subjects, num_fewshot=shots, output_dir=str(work),
                     name=name, dtype="float32")
    start = time.perf_counter()
    run = evaluate(cfg)
    seconds = time.perf_counter() - start
    return seconds, json.loads((run / "results.json").read_text(encoding="utf-8"))


def run_lm_eval(model: Path, tasks: list[str], shots: int, include: Path, batch_size: int) -> tuple[float, dict]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    start = time.perf_counter()
    out = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={model},dtype=float32", tasks=tasks,
                                  task_manager=TaskManager(include_path=str(include)), num_fewshot=shots,
                                  batch_size=batch_size, device="cpu", log_samples=True)
    return time.perf_counter() - start, out["samples"]


def agreement(ours: list[dict], theirs: list[dict]) -> tuple[int, int, float]:
    """(agreeing predictions, samples, largest log-likelihood difference) over samples in the same order."""
    theirs = sorted(theirs, key=lambda s: s["doc_id"])
    same, worst = 0, 0.0
    for mine, other in zip(ours, theirs, strict=True):
        scores = [float(resp[0]) for resp in other["filtered_resps"]]
        same += mine["prediction"] == max(range(len(scores)), key=scores.__getitem__)
        worst = max(worst, *(abs(a - b) for a, b in zip(mine["scores"], scores)))
    return same, len(ours), worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="local HF model directory (default: a random-weight preset)")
    parser.add_argument("--preset", default="mini", help="preset for the random-weight model (default: mini)")
    parser.add_argument("--subjects", type=int, default=4, help="CMMLU subjects, alphabetical (default: 4)")
    parser.add_argument("--cmmlu-shots", type=int, default=5)
    parser.add_argument("--arc-shots", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=16, help="lm-eval batch size (default: 16)")
    args = parser.parse_args()
    if not CMMLU.is_dir():
        sys.exit(f"CMMLU files not found at {CMMLU}")
    import torch

    print(f"torch threads: {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        arc = write_arc(work)
        model = Path(args.model) if args.model else build_model(work, args.preset)
        subjects = sorted(p.stem for p in (CMMLU / "test").glob("*.csv"))[: args.subjects]
        include = lm_eval_tasks(work, subjects, arc)
        rows = []
        for label, spec, shots, theirs_tasks in (
            (f"CMMLU {len(subjects)} subjects, {args.cmmlu_shots}-shot", f"cmmlu={CMMLU}", args.cmmlu_shots,
             [f"lf_cmmlu_{s}" for s in subjects]),
            (f"ARC layout (world MC), {args.arc_shots}-shot", f"arc={arc}", args.arc_shots, ["lf_arc"]),
        ):
            ours_s, results = run_lmforge(model, spec, shots, subjects, work, f"eval-{len(rows)}")
            theirs_s, samples = run_lm_eval(model, theirs_tasks, shots, include, args.batch_size)
            [task] = results["tasks"].values()
            by_subject = {t: [s for s in task["samples"] if s["subject"] == t.removeprefix("lf_cmmlu_")]
                          for t in theirs_tasks} if len(theirs_tasks) > 1 else {theirs_tasks[0]: task["samples"]}
            counts = [agreement(by_subject[t], samples[t]) for t in theirs_tasks]
            same, total, worst = sum(c[0] for c in counts), sum(c[1] for c in counts), max(c[2] for c in counts)
            rows.append((label, total, ours_s, theirs_s, same, worst))
    print(f"\n{'task':42} {'docs':>5} {'lmforge s':>10} {'lm-eval s':>10} {'speed-up':>9} {'agree':>8} {'max |dLL|':>10}")
    for label, total, ours_s, theirs_s, same, worst in rows:
        print(f"{label:42} {total:5d} {ours_s:10.1f} {theirs_s:10.1f} {theirs_s / ours_s:8.2f}x "
              f"{same / total:7.1%} {worst:10.2e}")


if __name__ == "__main__":
    main()
