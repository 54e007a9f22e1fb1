"""Peak memory and step time of DPO: LoRA with the adapter-disabled reference against full fine-tuning with a
frozen copy of the start model as the reference, side by side in one run of this script.

Model: the `mini` preset, randomly initialised (seed 0) with a 4096-token byte-level BPE tokenizer
(lmforge.tokenizer.train_bpe) trained on the toy world's `pretrain.jsonl`, chatml template, saved once; every run
loads those same weights from disk. Data: the toy world's `preference.jsonl` (156 prompt/chosen/rejected pairs),
chatml-formatted; at the default --max-length 128 the longer (mostly rejected) answers are cut at the end (about 8%
of the tokens; 256 keeps nearly all of them, at about 1.4x the step time).

Each run is its own `lmforge train` subprocess (`python -m lmforge.cli train`), so the resident memory it reports
is that process's alone; the recipe is stage dpo with the sigmoid loss and dpo.reference auto, which is `adapter`
under finetuning=lora (the policy with its adapters switched off, no second model) and `copy` under finetuning=full
(a frozen copy of the start model). Both configurations use the same data, max_length, --steps optimizer steps,
--batch-size, learning rate, seed and model.dtype (--dtype, default lmforge's own `auto`); no checkpoint is saved
during training. The runs alternate (lora, full, lora, full, ... for --repeats rounds) so that a noisy machine
slows both alike, and each figure is the median over a configuration's runs.

Figures, all read from the finished run folder (`lmforge.runs.last_record`) and its run.log:
- trainable parameters and state MiB: the `parameters` record; state = the policy's weights plus an fp32 gradient
  and two fp32 AdamW moments per trainable parameter (the copied reference's weights are not in it);
- peak and rise MiB: the `final` record's peak_memory_mb and memory_rise_mb, measured around `trainer.train` only:
  on a CPU the process RSS sampled every 50 ms, on a GPU the CUDA allocator's peak. The peak is absolute, so it
  includes the frozen copy (built before training starts); the rise over the start of training does not, but it
  includes gradients, optimizer state and activations;
- s/step: the final runtime_s (the Trainer's train_runtime, rounded to 0.1 s) / steps; each step includes the
  reference forward passes, done by the policy itself under LoRA and by the frozen copy under full DPO.
The ratios LoRA/full are printed for peak memory, rise and step time. Each run also shows the share of all cores
that other processes used meanwhile (machine busy CPU time less this script's children's, psutil and getrusage):
step times measured next to a busy neighbour are not to be trusted.

    python benchmarks/dpo_memory.py [--steps 20] [--batch-size 8] [--repeats 1] [--dtype auto] [--max-length 128]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

CONFIGS = ("lora", "full")
SEED = 0


def build_inputs(work: Path) -> tuple[Path, Path, int]:
    """The saved `mini` model, the preference file and the model's parameter count."""
    import torch

    from lmforge.models import build_from_preset, save_model, set_stop_tokens
    from lmforge.templates import BUILTIN_TEMPLATES
    from lmforge.tokenizer import train_bpe
    from lmforge.world import synth_world

    synth_world(SEED, work / "world", "demo")
    with open(work / "world" / "pretrain.jsonl", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    tokenizer = train_bpe(texts, vocab_size=4096)
    tokenizer.chat_template = BUILTIN_TEMPLATES["chatml"]
    torch.manual_seed(SEED)
    model = build_from_preset("mini", tokenizer)
    set_stop_tokens(model, tokenizer, [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")])
    save_model(model, tokenizer, work / "mini")
    return work / "mini", work / "world" / "preference.jsonl", sum(p.numel() for p in model.parameters())


def write_recipe(work: Path, model: Path, data: Path, args) -> Path:
    import yaml

    recipe = {
        "stage": "dpo", "name": "unused", "output_dir": str(work / "runs"),
        "model": {"path": str(model), "dtype": args.dtype},
        "data": {"train": str(data), "max_length": args.max_length},
        "dpo": {"loss": "sigmoid", "reference": "auto"},
        "train": {"max_steps": args.steps, "batch_size": args.batch_size, "lr": 1.0e-4, "seed": SEED,
                  "logging_steps": args.steps, "save_steps": args.steps + 1000},
    }
    path = work / "dpo-bench.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def train_once(recipe: Path, work: Path, finetuning: str, index: int) -> dict:
    """One `lmforge train` subprocess; its figures from the finished run folder."""
    from lmforge.runs import last_record

    name = f"{finetuning}-{index}"
    command = [sys.executable, "-m", "lmforge.cli", "train", str(recipe), f"name={name}", f"finetuning={finetuning}"]
    before = cpu_snapshot()
    done = subprocess.run(command, capture_output=True, text=True)
    other_cpu = other_cpu_share(before, cpu_snapshot())
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-4000:]}{done.stderr[-8000:]}")
    run_dir = work / "runs" / name
    final, parameters = last_record(run_dir, "final"), last_record(run_dir, "parameters")
    return {"trainable": parameters["trainable"], "state_mb": parameters["state_mb"],
            "peak_mb": final["peak_memory_mb"], "rise_mb": final["memory_rise_mb"],
            "s_per_step": final["runtime_s"] / final["steps"], "steps": final["steps"],
            "reference": reference_line(run_dir / "run.log"), "other_cpu": other_cpu}


def cpu_snapshot() -> tuple[float, float, float]:
    """Wall time, busy CPU seconds of the whole machine (steal included: a busy neighbour VM), and CPU seconds of
    this script's finished children."""
    import psutil

    times, children = psutil.cpu_times(), resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = sum(getattr(times, field, 0.0) for field in ("user", "nice", "system", "irq", "softirq", "steal"))
    return time.monotonic(), busy, children.ru_utime + children.ru_stime


def other_cpu_share(before: tuple, after: tuple) -> float:
    """The share of all cores that other processes kept busy meanwhile (a noisy machine skews step times)."""
    wall, busy, own = (b - a for a, b in zip(before, after))
    return max(0.0, busy - own) / (wall * (os.cpu_count() or 1))


def reference_line(log: Path) -> str:
    lines = [line for line in log.read_text(encoding="utf-8").splitlines() if "reference: " in line]
    return lines[-1].split("reference: ", 1)[1] if lines else "(no reference line in run.log)"


def alternate_runs(recipe: Path, work: Path, repeats: int) -> dict[str, list[dict]]:
    """lora, full, lora, full, ...: both configurations share whatever the machine is doing meanwhile."""
    runs: dict[str, list[dict]] = {config: [] for config in CONFIGS}
    for index in range(repeats):
        for config in CONFIGS:
            runs[config].append(train_once(recipe, work, config, index))
            last = runs[config][-1]
            print(f"  {config} run {index + 1}/{repeats}: peak {last['peak_mb']:,.0f} MiB, {last['s_per_step']:.3f} "
                  f"s/step, other processes used {last['other_cpu']:.0%} of the CPU", flush=True)
    return runs


def medians(runs: list[dict]) -> dict:
    figures = {key: statistics.median(run[key] for run in runs)
               for key in ("trainable", "state_mb", "peak_mb", "rise_mb", "s_per_step", "other_cpu")}
    return {**figures, "steps": runs[0]["steps"], "reference": runs[0]["reference"]}


def print_table(results: dict[str, dict]) -> None:
    print(f"\n{'configuration':30} {'trainable':>11} {'state MiB':>10} {'peak MiB':>9} {'rise MiB':>9} {'s/step':>7}")
    labels = {"lora": "LoRA-DPO, adapter reference", "full": "full DPO, copied reference"}
    for config, r in results.items():
        print(f"{labels[config]:30} {r['trainable']:11,.0f} {r['state_mb']:10,.1f} {r['peak_mb']:9,.0f} "
              f"{r['rise_mb']:9,.0f} {r['s_per_step']:7.3f}")
    lora, full = results["lora"], results["full"]
    print(f"\nLoRA/full: peak memory {lora['peak_mb'] / full['peak_mb']:.2f}x, rise "
          f"{lora['rise_mb'] / full['rise_mb']:.2f}x, step time {lora['s_per_step'] / full['s_per_step']:.2f}x")
    for config, r in results.items():
        print(f"{config} reference: {r['reference']}")


def device_line(dtype: str) -> str:
    import torch

    from lmforge.models import fast_cpu_bf16

    if torch.cuda.is_available():
        return f"device: {torch.cuda.get_device_name(0)}, model.dtype={dtype}"
    autocast = " (bf16 autocast, fp32 weights)" if dtype == "auto" and fast_cpu_bf16() else ""
    return (f"device: cpu, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
            f"model.dtype={dtype}{autocast}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1, help="runs per configuration, alternating")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model, data, parameters = build_inputs(work)
        with open(data, encoding="utf-8") as f:
            pairs = sum(1 for line in f if line.strip())
        print(f"{device_line(args.dtype)}\nmini preset ({parameters / 1e6:.1f}M parameters), {pairs} preference pairs, "
              f"max_length {args.max_length}, {args.steps} steps of batch {args.batch_size}, median of "
              f"{args.repeats} run(s) per configuration")
        recipe = write_recipe(work, model, data, args)
        results = {config: medians(runs) for config, runs in alternate_runs(recipe, work, args.repeats).items()}
    print_table(results)
    print("s/step = runtime_s / steps, reference forward passes included (the frozen copy's, for full DPO)")


if __name__ == "__main__":
    main()
