"""SFT training throughput: `lmforge train` (packed and unpacked) against TRL's SFTTrainer, side by side in one process.

Data: the toy world's `sft_train.jsonl` (short chat turns, nearly all under 128 tokens) plus a few long "copy these
notes" conversations of 256 tokens up to max_length (1024), so that row length and per-batch padding matter; none is
longer than max_length, so nothing is truncated and every run sees the same tokens. A held-out slice of
`sft_train.jsonl` is kept apart for scoring. Tokenizer: a 4096-token byte-level BPE (lmforge.tokenizer.train_bpe)
trained on the world text, with the chatml template. Model: the `mini` preset, saved once; every run loads those
same initial weights from disk.

Runs, each one epoch over the same examples (so the same real-token budget) and the same number of real tokens
per optimizer step (--tokens-per-step, 1024 by default), with the same learning rate, linear schedule without
warmup, weight decay 0 and seed; the two runs with one example per row (lmforge unpacked, TRL) draw identical
batches:
- lmforge packed: `lmforge.train.train`, stage sft, data.packing=true (padding-free best-fit packing into rows of up
  to max_length tokens, nearly full), one row per step when tokens-per-step equals max_length;
- lmforge unpacked: the same with data.packing=false (one example per row, padded per batch), as many examples per
  step as make tokens-per-step on average;
- TRL: `SFTTrainer` with SFTConfig defaults apart from output_dir, max_length, batch size (the unpacked one),
  learning rate, one epoch, seed and report_to=none. Its defaults pad per batch, train on every token
  (assistant_only_loss=False), use bf16 autocast and gradient checkpointing; `--trl-matched` adds a TRL run with
  bf16=False and gradient_checkpointing=False, to tell those two defaults apart from the data layout.
lmforge's own default precision applies (model.dtype=auto: bf16 autocast with fp32 master weights on CPUs with
native bf16 matmuls, as TRL's default, else fp32). Equal tokens per step means about as many optimizer steps for
every run, so the losses at equal tokens compare optimisation at the same budget.

Measurement. transformers' `Trainer.training_step` (which both lmforge's Trainer and SFTTrainer go through) is wrapped
to record each step's batch, and a global optimizer-step hook marks when the last update finished. The timed window
runs from the start of the first training step to the end of the last optimizer step: model loading, tokenization,
packing, the final save and the scoring are outside it, for every run alike; per-step logging, the data loader and
each trainer's own metrics are inside.
- real tokens: non-padding input tokens (the pad token never occurs in the data);
- processed tokens: every position in the batch tensors, padding included;
- model FLOP/s: 6 * parameters * real tokens / seconds, parameters counted once with tied embeddings (the LM head
  matmul); attention score FLOPs (and the masked-out work between packed examples) are not included; shares of peak
  are against the best fp32 and bf16 2048x2048 torch.matmul rates on the same threads (a run that autocasts to
  bf16 is bounded by the bf16 one);
- peak RSS: process resident memory sampled every 20 ms during the whole run (loading included), and its rise over
  the RSS before the run; freed memory is handed back to the OS (malloc_trim) between runs;
- other CPU: the share of all cores that other processes used during the run, to flag a noisy machine;
- loss at equal tokens: steps are put in quarters of the shared real-token budget by the cumulative real tokens after
  each step, and each quarter shows the mean training loss weighted by loss tokens. lmforge scores reply tokens only
  and TRL's default every token, so those numbers are not the same quantity; the comparable one is the held-out
  reply-token loss, computed the same way for each final model (and for the initial weights).

    python benchmarks/train_throughput.py [--examples N] [--long N] [--tokens-per-step N] [--lr LR] [--trl-matched]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

IGNORE_INDEX = -100
QUARTERS = 4


@dataclass
class Step:
    real: int
    processed: int
    loss_tokens: int
    loss: float


@dataclass
class Result:
    name: str
    steps: list[Step]
    seconds: float
    peak_rss: int
    rss_rise: int
    other_cpu: float
    heldout: float = math.nan
    notes: list[str] = field(default_factory=list)

    @property
    def real(self) -> int:
        return sum(s.real for s in self.steps)

    @property
    def processed(self) -> int:
        return sum(s.processed for s in self.steps)


# ---------------------------------------------------------------- data, tokenizer, model


def world_texts(world: Path) -> list[str]:
    from lmforge.tokenizer import record_texts

    texts = []
    for name in ("pretrain.jsonl", "sft_train.jsonl"):
        for line in (world / name).read_text(encoding="utf-8").splitlines():
            texts += record_texts(json.loads(line))
    return texts


def build_tokenizer(world: Path, out: Path, vocab_size: int):
    from lmforge.templates import BUILTIN_TEMPLATES
    from lmforge.tokenizer import train_bpe

    tokenizer = train_bpe(world_texts(world), vocab_size=vocab_size)
    tokenizer.chat_template = BUILTIN_TEMPLATES["chatml"]
    tokenizer.save_pretrained(out)
    return tokenizer


def chat_length(tokenizer, record: dict) -> int:
    return len(tokenizer.apply_chat_template(record["messages"], tokenize=True, return_dict=True)["input_ids"])


def copy_notes(notes: list[str]) -> dict:
    text = "\n".join(notes)
    return {"messages": [{"role": "user", "content": f"Copy these notes word for word:\n{text}"},
                         {"role": "assistant", "content": text}]}


def long_conversations(world: Path, tokenizer, count: int, max_length: int, seed: int) -> list[dict]:
    """"Copy these notes" conversations (notes: world documents) whose lengths spread from about 256 tokens up to
    max_length, never over it: nothing is truncated, so every run trains on the same tokens."""
    docs = [json.loads(line)["text"] for line in (world / "pretrain.jsonl").read_text("utf-8").splitlines()]
    rng = random.Random(seed)
    records = []
    for i in range(count):
        target = 256 + (max_length - 256) * i // max(count - 1, 1)
        notes = [rng.choice(docs)]
        while True:
            grown = notes + [rng.choice(docs)]
            if chat_length(tokenizer, copy_notes(grown)) > target:
                break
            notes = grown
        records.append(copy_notes(notes))
    return records


def build_data(world: Path, tokenizer, args) -> tuple[list[dict], list[dict]]:
    """(training conversations, held-out conversations): long ones spread evenly among the short ones."""
    rows = [json.loads(line) for line in (world / "sft_train.jsonl").read_text("utf-8").splitlines()]
    heldout, pool = rows[-args.eval_examples:], rows[: -args.eval_examples]
    if args.examples > len(pool):
        sys.exit(f"--examples {args.examples}: only {len(pool)} short examples are left after the held-out slice")
    train = pool[: args.examples]
    for i, record in enumerate(long_conversations(world, tokenizer, args.long, args.max_length, args.seed)):
        train.insert((i + 1) * len(train) // (args.long + 1), record)
    return train, heldout


def build_model(out: Path, tokenizer, preset: str, max_length: int, seed: int) -> int:
    """Random initial weights saved to `out`; returns the parameter count (tied embeddings counted once)."""
    import torch

    from lmforge.models import build_from_preset, count_parameters

    torch.manual_seed(seed)
    model = build_from_preset(preset, tokenizer, max_length)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return count_parameters(model)


def describe_lengths(tokenizer, records: list[dict]) -> str:
    lengths = sorted(chat_length(tokenizer, r) for r in records)
    under = sum(n < 128 for n in lengths) / len(lengths)
    return (f"{len(lengths)} conversations, {sum(lengths)} tokens; length median {statistics.median(lengths):.0f}, "
            f"p90 {lengths[int(0.9 * len(lengths))]}, max {lengths[-1]}; {under:.1%} under 128 tokens")


# ---------------------------------------------------------------- measurement


def matmul_peak(dtype_name: str, size: int = 2048, repeats: int = 8) -> float:
    """Best FLOP/s of one size x size torch.matmul over several tries."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.matmul(a, b)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


class StepRecorder:
    """Records every training step's batch and loss, and the window from the first step to the last update."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id
        self.steps: list[Step] = []
        self.start: float | None = None
        self.end: float | None = None

    def __enter__(self) -> "StepRecorder":
        from torch.optim.optimizer import register_optimizer_step_post_hook
        from transformers import Trainer

        self._original = original = Trainer.training_step
        recorder = self

        def training_step(trainer, model, inputs, *args, **kwargs):
            if recorder.start is None:
                recorder.start = time.perf_counter()
            ids, labels = inputs["input_ids"], inputs["labels"]
            loss = original(trainer, model, inputs, *args, **kwargs)
            recorder.steps.append(Step(int((ids != recorder.pad_id).sum()), ids.numel(),
                                       int((labels[:, 1:] != IGNORE_INDEX).sum()), float(loss)))
            return loss

        Trainer.training_step = training_step
        self._hook = register_optimizer_step_post_hook(self._mark_update)
        return self

    def _mark_update(self, optimizer, args, kwargs) -> None:
        self.end = time.perf_counter()

    def __exit__(self, *exc) -> None:
        from transformers import Trainer

        Trainer.training_step = self._original
        self._hook.remove()

    @property
    def seconds(self) -> float:
        return self.end - self.start


class Monitor:
    """While the block runs: this process's peak resident memory (sampled every 20 ms) and its rise over the start,
    and the share of all CPUs that other processes used (noise from whatever else runs on the machine)."""

    def __init__(self, interval: float = 0.02):
        import psutil

        self.interval = interval
        self.process = psutil.Process()
        self._stop = threading.Event()

    def _rss(self) -> int:
        return self.process.memory_info().rss

    def _cpu_seconds(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> "Monitor":
        import psutil

        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand memory freed by earlier runs back to the OS
        except OSError:
            pass
        self.base = self.peak = self._rss()
        psutil.cpu_percent()
        self._start, self._own = time.perf_counter(), self._cpu_seconds()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import psutil

        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        all_busy = psutil.cpu_percent() / 100
        own = (self._cpu_seconds() - self._own) / ((time.perf_counter() - self._start) * psutil.cpu_count())
        self.other_cpu = max(0.0, all_busy - own)


def heldout_loss(model, tokenizer, records: list[dict], batch_size: int = 16) -> float:
    """Mean cross-entropy over assistant-reply tokens (end-of-turn included) of the held-out conversations."""
    import torch
    import torch.nn.functional as F

    from lmforge.templates import encode_chat

    encoded = [encode_chat(tokenizer, r["messages"], tokenizer.chat_template) for r in records]
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(encoded), batch_size):
            batch = encoded[i : i + batch_size]
            width = max(len(e.input_ids) for e in batch)
            ids = torch.tensor([e.input_ids + [tokenizer.pad_token_id] * (width - len(e.input_ids)) for e in batch])
            labels = torch.tensor([e.labels + [IGNORE_INDEX] * (width - len(e.labels)) for e in batch])
            logits = model(input_ids=ids, attention_mask=(ids != tokenizer.pad_token_id).long()).logits.float()
            total += F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(),
                                     ignore_index=IGNORE_INDEX, reduction="sum").item()
            count += int((labels[:, 1:] != IGNORE_INDEX).sum())
    return total / count


# ---------------------------------------------------------------- the runs


def run_lmforge(name: str, packing: bool, rows: int, init: Path, train_file: Path, work: Path, args,
                heldout: list[dict]) -> Result:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmforge.config import load
    from lmforge.train import train
    from lmforge.train.config import TrainRecipe

    recipe = load(TrainRecipe, updates={
        "stage": "sft", "name": name, "output_dir": str(work / "runs"), "model.path": str(init),
        "data.train": str(train_file), "data.max_length": args.max_length, "data.packing": packing,
        "data.template": "chatml", "train.epochs": 1, "train.batch_size": rows, "train.lr": args.lr,
        "train.scheduler": "linear", "train.warmup_ratio": 0.0, "train.weight_decay": 0.0, "train.seed": args.seed,
    })
    tokenizer = AutoTokenizer.from_pretrained(init)
    with Monitor() as monitor, StepRecorder(tokenizer.pad_token_id) as steps:
        run_dir = train(recipe)
    model = AutoModelForCausalLM.from_pretrained(run_dir, dtype="float32")
    return Result(name, steps.steps, steps.seconds, monitor.peak, monitor.peak - monitor.base, monitor.other_cpu,
                  heldout_loss(model, AutoTokenizer.from_pretrained(run_dir), heldout))


def run_trl(name: str, rows: int, init: Path, train_records: list[dict], work: Path, args, heldout: list[dict],
            matched: bool) -> Result:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(init)
    overrides = {"bf16": False, "gradient_checkpointing": False} if matched else {}
    config = SFTConfig(output_dir=str(work / name), max_length=args.max_length, num_train_epochs=1,
                       per_device_train_batch_size=rows, learning_rate=args.lr, seed=args.seed,
                       report_to="none", use_cpu=True, **overrides)
    dataset = Dataset.from_list([{"messages": r["messages"]} for r in train_records])
    with Monitor() as monitor, StepRecorder(tokenizer.pad_token_id) as steps:
        trainer = SFTTrainer(model=str(init), args=config, train_dataset=dataset, processing_class=tokenizer)
        trainer.train()
    notes = [f"bf16={config.bf16}", f"gradient_checkpointing={config.gradient_checkpointing}",
             f"assistant_only_loss={config.assistant_only_loss}", f"packing={config.packing}",
             f"padding_free={config.padding_free}"]
    return Result(name, steps.steps, steps.seconds, monitor.peak, monitor.peak - monitor.base, monitor.other_cpu,
                  heldout_loss(trainer.model.float(), tokenizer, heldout), notes)


# ---------------------------------------------------------------- report


def quarter_losses(steps: list[Step], budget: int) -> list[float]:
    """Loss-token-weighted mean training loss of the steps ending in each quarter of the real-token budget."""
    sums, weights, seen = [0.0] * QUARTERS, [0] * QUARTERS, 0
    for step in steps:
        seen += step.real
        quarter = min(QUARTERS - 1, max(0, math.ceil(QUARTERS * seen / budget) - 1))
        sums[quarter] += step.loss * step.loss_tokens
        weights[quarter] += step.loss_tokens
    return [s / w if w else math.nan for s, w in zip(sums, weights)]


def report(results: list[Result], params: int, peak32: float, peak16: float, baseline: float) -> None:
    print(f"\n{'run':24} {'steps':>5} {'real tok':>9} {'processed':>9} {'pad':>6} {'train s':>8} {'real tok/s':>10} "
          f"{'GFLOP/s':>8} {'%fp32pk':>7} {'%bf16pk':>7} {'peak RSS':>9} {'RSS rise':>9} {'other CPU':>9}")
    for r in results:
        rate = r.real / r.seconds
        flops = 6 * params * rate
        print(f"{r.name:24} {len(r.steps):5d} {r.real:9d} {r.processed:9d} {1 - r.real / r.processed:6.1%} "
              f"{r.seconds:8.1f} {rate:10.1f} {flops / 1e9:8.2f} {flops / peak32:7.1%} {flops / peak16:7.1%} "
              f"{r.peak_rss / 2**20:7.0f}Mi {r.rss_rise / 2**20:7.0f}Mi {r.other_cpu:9.1%}")
    budget = results[0].real
    if any(r.real != budget for r in results):
        print("WARNING: the runs saw different numbers of real tokens")
    print(f"\nloss at equal real tokens (quarters of {budget} real tokens; lmforge: reply tokens, TRL default: all "
          f"tokens), and held-out reply-token loss (initial weights: {baseline:.3f})")
    print(f"{'run':24} " + " ".join(f"{f'Q{q + 1} loss':>8}" for q in range(QUARTERS)) + f" {'held-out':>9}")
    for r in results:
        print(f"{r.name:24} " + " ".join(f"{loss:8.3f}" if loss == loss else f"{'-':>8}"
                                          for loss in quarter_losses(r.steps, budget))
              + f" {r.heldout:9.3f}")
    for r in results:
        if r.notes:
            print(f"{r.name} settings: {', '.join(r.notes)}")
    noisy = [r.name for r in results if r.other_cpu > 0.1]
    if noisy:
        print(f"WARNING: other processes used over 10% of the CPUs during {', '.join(noisy)}: timings are noisy")
    trl = next(r for r in results if r.name == "trl-default")
    print(f"\nfp32 matmul peak {peak32 / 1e9:.1f} GFLOP/s, bf16 {peak16 / 1e9:.1f} GFLOP/s; "
          f"{params / 1e6:.2f}M parameters; model FLOPs = 6 * params * real tokens (attention scores excluded)")
    for r in results:
        if r is not trl:
            print(f"real tokens/s  {r.name} / trl-default: {(r.real / r.seconds) / (trl.real / trl.seconds):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=1000, help="short training conversations (default: 1000)")
    parser.add_argument("--long", type=int, default=16,
                        help="long conversations (256 to max_length tokens) added (default: 16)")
    parser.add_argument("--eval-examples", type=int, default=128, help="held-out conversations (default: 128)")
    parser.add_argument("--tokens-per-step", type=int, default=1024,
                        help="real tokens per optimizer step for every run (default: 1024)")
    parser.add_argument("--lr", type=float, default=5e-4, help="learning rate for every run (default: 5e-4)")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--trl-matched", action="store_true",
                        help="add a TRL run without bf16 and gradient checkpointing")
    args = parser.parse_args()
    import torch
    from transformers import AutoModelForCausalLM

    from lmforge.world import write_world

    with tempfile.TemporaryDirectory(prefix="lmforge-train-throughput-") as tmp:
        work = Path(tmp)
        write_world(0, work / "world", "demo")
        tokenizer = build_tokenizer(work / "world", work / "tokenizer", args.vocab_size)
        train_records, heldout = build_data(work / "world", tokenizer, args)
        train_file = work / "sft.jsonl"
        train_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in train_records), "utf-8")
        params = build_model(work / "init", tokenizer, args.preset, args.max_length, args.seed)
        baseline = heldout_loss(AutoModelForCausalLM.from_pretrained(work / "init"), tokenizer, heldout)
        peak32, peak16 = matmul_peak("float32"), matmul_peak("bfloat16")
        mean_length = statistics.mean(chat_length(tokenizer, r) for r in train_records)
        packed_rows = max(1, round(args.tokens_per_step / args.max_length))
        example_rows = max(1, round(args.tokens_per_step / mean_length))
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; preset {args.preset}; lr {args.lr}, "
              f"max_length {args.max_length}, one epoch; about {args.tokens_per_step} real tokens per step: "
              f"{packed_rows} packed row(s), or {example_rows} examples of {mean_length:.1f} tokens on average")
        print(f"train data: {describe_lengths(tokenizer, train_records)}")
        print(f"held-out: {describe_lengths(tokenizer, heldout)}", flush=True)
        init = work / "init"
        results = [run_lmforge("lmforge-packed", True, packed_rows, init, train_file, work, args, heldout),
                   run_lmforge("lmforge-unpacked", False, example_rows, init, train_file, work, args, heldout),
                   run_trl("trl-default", example_rows, init, train_records, work, args, heldout, matched=False)]
        if args.trl_matched:
            results.append(run_trl("trl-fp32-no-ckpt", example_rows, init, train_records, work, args, heldout,
                                   matched=True))
    report(results, params, peak32, peak16, baseline)


if __name__ == "__main__":
    main()
