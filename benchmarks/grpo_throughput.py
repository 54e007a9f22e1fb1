"""GRPO throughput: lmforge's grpo stage against TRL's GRPOTrainer (HF generate, no vLLM), side by side in one process.

Model: a preset (default `micro`, about 5M parameters), randomly initialised (--seed) with a 4096-token byte-level BPE
tokenizer (lmforge.tokenizer.train_bpe) trained on the toy world's text, chatml template, end-of-turn `<|im_end|>` and
EOS as stop tokens, saved once; both runs load those same weights from disk. Prompts: the first
(--warmup + --steps) x --prompts-per-step records of the toy world's `rl_prompts.jsonl` (facts and arithmetic, English
and Chinese, with gold answers) after a seeded shuffle, so one epoch is exactly the run and both sides see the same
prompts (each in its own seeded order). Both render them with the same chat template; the script checks that both
tokenise every prompt to the same ids.

Both runs use the same settings: --prompts-per-step prompts per optimizer step, --group-size completions per prompt,
at most --max-new-tokens new tokens, temperature 1.0 (top_p 1, top_k 0), KL weight --beta (0.04, lmforge's default;
TRL's default is 0.0, so it is set here: both keep a frozen copy of the start model as the KL reference), learning
rate --lr with a linear schedule and no warm-up, weight decay 0, clipping at 1.0, no eval, no checkpoint, fp32 on the
CPU, one optimizer step per sampled batch (no gradient accumulation, one PPO iteration), and the same reward: an
exact-match function with TRL's signature `fn(prompts, completions, **columns)` (REWARD_SOURCE below, which calls
lmforge.rewards.exact_match), written to `reward.py` in the work folder: lmforge's recipe names it as a user reward
(`reward.py:shared_reward`) and TRL is given the function lmforge resolves from that name. Group-normalised
advantages and a loss averaged over all completion tokens of the batch on both sides (TRL's default loss_type dapo,
scale_rewards group). A randomly initialised model earns no reward, so the
advantages are zero; the timings do not depend on that (every forward and backward pass still runs).
- lmforge: `lmforge.train.train` with a TrainRecipe stage=grpo: it samples through lmforge's continuous-batching engine
  on the very model being trained; train.batch_size = prompts per step.
- TRL: GRPOConfig defaults apart from the settings above (per_device_train_batch_size = prompts x group size, since TRL
  counts completions; num_generations = group size; max_completion_length; beta; learning_rate; max_steps;
  bf16=False for fp32; use_cpu; report_to none; save_strategy no). TRL's own default gradient_checkpointing=True
  stays; --trl-matched adds a second TRL run with gradient_checkpointing=False.

Measurement, the same for both (wrappers installed by this script, nothing changed in either library):
- steps end at each optimizer step (a global torch optimizer-step hook); the first --warmup steps (default 1) are
  excluded, and the timed window runs from the end of the last warm-up step to the end of the last step (the final
  log line, the save and the model loading are outside it for both);
- rollout: sampling plus reward scoring. lmforge: time inside `GrpoTrainer._rollout` (engine sampling, the padded
  tensors, rewards). TRL: time inside `GRPOTrainer._generate` (chat template and tokenisation of the prompts, HF
  `generate`, decoding) plus `GRPOTrainer._calculate_rewards`. TRL's reference-model forward pass, which it runs
  inside `_generate_and_score_completions`, counts as training, as lmforge's does (in its compute_loss);
- sampling: the sampling call alone (lmforge `Engine.generate`, TRL `GRPOTrainer._generate_single_turn`);
- train: window wall time minus rollout (policy and reference forward, backward, optimizer, the Trainer's own
  bookkeeping);
- completion tokens: per completion, the sampled tokens including the stop token when one ended it (the tokens
  trained on), on both sides; prompt tokens likewise;
- other CPU: the share of all cores that other processes used from the end of the warm-up to the end of the run
  (psutil): timings measured next to a busy neighbour are not to be trusted. With --repeats N the configurations
  run alternately N times and each row of the table is that configuration's median run. On a machine whose cores
  are busy with other work, --threads 1 gives far steadier figures than torch's default of one thread per core
  (its threads wait for each other at every operation).

    python benchmarks/grpo_throughput.py [--steps 5] [--warmup 1] [--prompts-per-step 4] [--group-size 8]
                                         [--max-new-tokens 32] [--preset micro] [--beta 0.04] [--lr 1e-5]
                                         [--threads N] [--repeats 1] [--trl-matched]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

WORLD_SEED = 0
VOCAB_SIZE = 4096
MAX_LENGTH = 256  # lmforge's data.max_length: every prompt here is far shorter


REWARD_SOURCE = '''"""The benchmark's reward, with TRL's signature fn(prompts, completions, **columns)."""

from lmforge.rewards import exact_match


def shared_reward(prompts, completions, answer, **columns):
    """Exact match of the final answer with the `answer` column (lmforge.rewards.exact_match). TRL hands
    conversational completions as [{"role": "assistant", "content": ...}], lmforge as text."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return exact_match(prompts, texts, answer=answer)
'''


def write_reward(work: Path) -> str:
    """The reward as a user function `reward.py:shared_reward`: lmforge's recipe names it, and TRL gets the very
    function lmforge resolves from that name (lmforge.rewards.resolve_reward)."""
    path = work / "reward.py"
    path.write_text(REWARD_SOURCE, encoding="utf-8")
    return f"{path}:shared_reward"


# ---------------------------------------------------------------- model and prompts


def build_inputs(work: Path, args) -> tuple[Path, Path, list[dict], int]:
    """The saved model directory, the lmforge prompt file, the same records and the parameter count."""
    import torch

    from lmforge.models import build_from_preset, count_parameters, save_model, set_stop_tokens
    from lmforge.templates import BUILTIN_TEMPLATES
    from lmforge.tokenizer import record_texts, train_bpe
    from lmforge.world import synth_world

    world = work / "world"
    synth_world(WORLD_SEED, world, "demo")
    texts = [text for name in ("pretrain.jsonl", "sft_train.jsonl")
             for line in (world / name).read_text("utf-8").splitlines() for text in record_texts(json.loads(line))]
    tokenizer = train_bpe(texts, vocab_size=VOCAB_SIZE)
    tokenizer.chat_template = BUILTIN_TEMPLATES["chatml"]
    torch.manual_seed(args.seed)
    model = build_from_preset(args.preset, tokenizer, MAX_LENGTH)
    set_stop_tokens(model, tokenizer, [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")])
    save_model(model, tokenizer, work / "model")

    records = [json.loads(line) for line in (world / "rl_prompts.jsonl").read_text("utf-8").splitlines()]
    random.Random(args.seed).shuffle(records)
    wanted = (args.warmup + args.steps) * args.prompts_per_step
    if wanted > len(records):
        sys.exit(f"{wanted} prompts wanted, the world has {len(records)}")
    records = records[:wanted]
    prompts = work / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    return work / "model", prompts, records, count_parameters(model)


def check_prompt_tokens(model_dir: Path, records: list[dict]) -> str:
    """Both sides must feed the model the same prompt ids: lmforge's encode_prompt against the tokenizer's
    apply_chat_template with the generation prompt (what TRL's _tokenize_prompts calls)."""
    from transformers import AutoTokenizer

    from lmforge.templates import encode_prompt

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    differ, lengths = 0, []
    for record in records:
        messages = [{"role": "user", "content": record["prompt"]}]
        ours = encode_prompt(tokenizer, messages, tokenizer.chat_template)
        theirs = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                               return_dict=True)["input_ids"]
        differ += list(ours) != list(theirs)
        lengths.append(len(ours))
    same = "identical for every prompt" if not differ else f"DIFFERENT for {differ} of {len(records)} prompts"
    return f"prompt tokens: mean {sum(lengths) / len(lengths):.1f}, lmforge and TRL tokenisation {same}"


# ---------------------------------------------------------------- measurement


@dataclass
class Clock:
    """Optimizer-step ends, and seconds per named phase, completion and prompt tokens, per step (the step a phase
    belongs to is the number of optimizer steps finished when it started)."""

    warmup: int
    start: float | None = None
    ends: list[float] = field(default_factory=list)
    phases: dict[int, dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    completions: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    prompts: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    cpu: list[tuple[float, float, float]] = field(default_factory=list)

    def begin(self) -> int:
        if self.start is None:
            self.start = time.perf_counter()
            if self.warmup == 0:
                self.cpu.append(cpu_snapshot())
        return len(self.ends)

    def timed(self, phase: str, function):
        """`function` wrapped to add its time to `phase` of the current step."""
        clock = self

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            step = clock.begin()
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                clock.phases[step][phase] += time.perf_counter() - start

        return wrapper

    def step_done(self, optimizer, args, kwargs) -> None:
        self.ends.append(time.perf_counter())
        if len(self.ends) == self.warmup:
            self.cpu.append(cpu_snapshot())

    def result(self, name: str, prompts_per_step: int, group: int, notes: list[str]) -> "Result":
        self.cpu.append(cpu_snapshot())
        steps = len(self.ends) - self.warmup
        if steps < 1:
            sys.exit(f"{name}: only {len(self.ends)} optimizer steps ran, {self.warmup} of them warm-up")
        begin = self.ends[self.warmup - 1] if self.warmup else self.start
        timed = range(self.warmup, len(self.ends))
        total = {phase: sum(self.phases[step][phase] for step in timed) for phase in ("rollout", "sampling", "reward")}
        completions = [n for step in timed for n in self.completions[step]]
        prompts = [n for step in timed for n in self.prompts[step]]
        first = self.ends[0] - self.start
        return Result(name, steps, steps * prompts_per_step, group, self.ends[-1] - begin, total["rollout"],
                      total["sampling"], total["reward"], completions, prompts, first,
                      other_cpu_share(self.cpu[0], self.cpu[-1]), notes)


@dataclass
class Result:
    name: str
    steps: int
    prompts: int
    group: int
    wall: float
    rollout: float
    sampling: float
    reward: float
    completion_tokens: list[int]
    prompt_tokens: list[int]
    first_step: float
    other_cpu: float
    notes: list[str]

    @property
    def prompts_per_s(self) -> float:
        return self.prompts / self.wall

    @property
    def train(self) -> float:
        return self.wall - self.rollout


def cpu_snapshot() -> tuple[float, float, float]:
    """Wall time, busy CPU seconds of the whole machine (steal included) and this process's CPU seconds."""
    import psutil

    times, own = psutil.cpu_times(), psutil.Process().cpu_times()
    busy = sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))
    return time.perf_counter(), busy, own.user + own.system


def other_cpu_share(before: tuple, after: tuple) -> float:
    wall, busy, own = (b - a for a, b in zip(before, after))
    return max(0.0, busy - own) / (wall * (os.cpu_count() or 1)) if wall > 0 else 0.0


@contextlib.contextmanager
def patched(*replacements: tuple[object, str, object]):
    """Set attributes for the duration of the block, then put the originals back."""
    originals = [(owner, name, owner.__dict__[name]) for owner, name, _ in replacements]
    try:
        for owner, name, value in replacements:
            setattr(owner, name, value)
        yield
    finally:
        for owner, name, value in originals:
            setattr(owner, name, value)


@contextlib.contextmanager
def optimizer_steps(clock: Clock):
    from torch.optim.optimizer import register_optimizer_step_post_hook

    handle = register_optimizer_step_post_hook(clock.step_done)
    try:
        yield
    finally:
        handle.remove()


# ---------------------------------------------------------------- the runs


def run_lmforge(model_dir: Path, prompt_file: Path, work: Path, args, index: int = 0) -> Result:
    from lmforge.config import load
    from lmforge.engine.core import Engine
    from lmforge.train import train
    from lmforge.train.config import TrainRecipe
    from lmforge.train.rl import GrpoTrainer

    recipe = load(TrainRecipe, updates={
        "stage": "grpo", "name": f"lmforge-grpo-{index}", "output_dir": str(work / "runs"),
        "model.path": str(model_dir), "model.dtype": "float32", "model.device": "cpu",
        "data.train": str(prompt_file), "data.max_length": MAX_LENGTH,
        "grpo.group_size": args.group_size, "grpo.max_new_tokens": args.max_new_tokens, "grpo.temperature": 1.0,
        "grpo.beta": args.beta, "grpo.rewards": [{"name": args.reward}],
        "train.max_steps": args.warmup + args.steps, "train.batch_size": args.prompts_per_step, "train.lr": args.lr,
        "train.scheduler": "linear", "train.warmup_ratio": 0.0, "train.weight_decay": 0.0, "train.seed": args.seed,
        "train.logging_steps": args.warmup + args.steps, "train.save_steps": 10**6,
    })
    clock = Clock(args.warmup)
    original_rollout = GrpoTrainer.__dict__["_rollout"]

    def rollout(trainer, model, inputs):
        step = clock.begin()
        result = original_rollout(trainer, model, inputs)
        clock.completions[step] += result.completion_mask.sum(-1).tolist()
        clock.prompts[step] += [len(ids) for ids in inputs["prompt_ids"]]
        return result

    with patched((GrpoTrainer, "_rollout", clock.timed("rollout", rollout)),
                 (GrpoTrainer, "_score", clock.timed("reward", GrpoTrainer.__dict__["_score"])),
                 (Engine, "generate", clock.timed("sampling", Engine.__dict__["generate"]))), optimizer_steps(clock):
        train(recipe)
    notes = [f"model.dtype={recipe.model.dtype}", f"reference={recipe.reference_source}",
             f"scale_rewards={recipe.grpo.scale_rewards}", "engine: continuous batching, no prefix cache"]
    return clock.result("lmforge", args.prompts_per_step, args.group_size, notes)


def run_trl(name: str, model_dir: Path, records: list[dict], work: Path, args, matched: bool) -> Result:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from lmforge.rewards import resolve_reward

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    steps = args.warmup + args.steps
    overrides = {"gradient_checkpointing": False} if matched else {}
    config = GRPOConfig(
        output_dir=str(work / name), per_device_train_batch_size=args.prompts_per_step * args.group_size,
        num_generations=args.group_size, max_completion_length=args.max_new_tokens, temperature=1.0,
        beta=args.beta, learning_rate=args.lr, max_steps=steps, lr_scheduler_type="linear", warmup_steps=0,
        weight_decay=0.0, max_grad_norm=1.0, seed=args.seed, bf16=False, use_cpu=True, report_to="none",
        save_strategy="no", eval_strategy="no", logging_steps=steps, use_vllm=False,
        model_init_kwargs={"dtype": "float32"}, **overrides,
    )
    dataset = Dataset.from_list([{**{k: v for k, v in r.items() if k != "prompt"},
                                  "prompt": [{"role": "user", "content": r["prompt"]}]} for r in records])
    clock = Clock(args.warmup)
    original_generate = GRPOTrainer.__dict__["_generate"]
    original_rewards = GRPOTrainer.__dict__["_calculate_rewards"]

    def generate(trainer, prompts):
        step = clock.begin()
        out = original_generate(trainer, prompts)
        clock.prompts[step] += [len(ids) for ids in out[0]]
        clock.completions[step] += [len(ids) for ids in out[1]]
        return out

    def rewards(trainer, *a, **k):
        start = time.perf_counter()
        try:
            return original_rewards(trainer, *a, **k)
        finally:  # part of the rollout too
            clock.phases[len(clock.ends)]["rollout"] += time.perf_counter() - start

    with patched((GRPOTrainer, "_generate", clock.timed("rollout", generate)),
                 (GRPOTrainer, "_calculate_rewards", clock.timed("reward", rewards)),
                 (GRPOTrainer, "_generate_single_turn",
                  clock.timed("sampling", GRPOTrainer.__dict__["_generate_single_turn"]))), optimizer_steps(clock):
        trainer = GRPOTrainer(model=str(model_dir), reward_funcs=resolve_reward(args.reward), args=config,
                              train_dataset=dataset, processing_class=tokenizer)
        trainer.train()
    notes = [f"bf16={config.bf16}", f"gradient_checkpointing={config.gradient_checkpointing}",
             f"loss_type={config.loss_type}", f"scale_rewards={config.scale_rewards}",
             f"reference={'frozen copy' if trainer.ref_model is not None else 'none'}", "HF generate"]
    return clock.result(name, args.prompts_per_step, args.group_size, notes)


# ---------------------------------------------------------------- report


def median_run(results: list[Result]) -> Result:
    """The run with the median prompts per second (the lower one of the middle two for an even count)."""
    return sorted(results, key=lambda r: r.prompts_per_s)[(len(results) - 1) // 2]


def report(results: list[Result], repeats: int) -> None:
    def mean(values):
        return sum(values) / len(values) if values else float("nan")

    print(f"\n{'run':17} {'steps':>5} {'prompts':>7} {'wall s':>7} {'prompts/s':>9} {'rollout s':>15} "
          f"{'sampling s':>10} {'reward s':>8} {'train s':>15} {'prompt tok':>10} {'compl tok':>9} "
          f"{'compl tok/s':>11} {'warm-up s':>9} {'other CPU':>9}")
    for r in results:
        print(f"{r.name:17} {r.steps:5d} {r.prompts:7d} {r.wall:7.2f} {r.prompts_per_s:9.2f} "
              f"{r.rollout:7.2f} ({r.rollout / r.wall:4.0%}) {r.sampling:10.2f} {r.reward:8.2f} "
              f"{r.train:7.2f} ({r.train / r.wall:4.0%}) {mean(r.prompt_tokens):10.1f} "
              f"{mean(r.completion_tokens):9.1f} {sum(r.completion_tokens) / r.wall:11.1f} {r.first_step:9.2f} "
              f"{r.other_cpu:9.0%}")
    if repeats > 1:
        print(f"(each row: the median of {repeats} runs by prompts/s)")
    print("\nrollout = sampling + rewards (+ tokenising and decoding on TRL's side); train = wall - rollout;\n"
          "compl tok = mean tokens per completion, stop token included; warm-up s = the first step (excluded)")
    for r in results:
        print(f"{r.name} settings: {', '.join(r.notes)}")
    ours = next(r for r in results if r.name == "lmforge")
    for r in results:
        if r is not ours:
            print(f"lmforge / {r.name}: prompts/s {ours.prompts_per_s / r.prompts_per_s:.2f}x, sampling "
                  f"{r.sampling / ours.sampling:.2f}x faster, rollout {r.rollout / ours.rollout:.2f}x faster, "
                  f"train part {r.train / ours.train:.2f}x faster")
    noisy = [r.name for r in results if r.other_cpu > 0.1]
    if noisy:
        print(f"WARNING: other processes used over 10% of the CPUs during {', '.join(noisy)}: timings are noisy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5, help="timed optimizer steps per run (default: 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed optimizer steps first (default: 1)")
    parser.add_argument("--prompts-per-step", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=8, help="completions per prompt (default: 8)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="longest completion (default: 32)")
    parser.add_argument("--preset", default="micro", help="lmforge model preset (default: micro, about 5M)")
    parser.add_argument("--beta", type=float, default=0.04, help="KL weight for both (default: lmforge's 0.04)")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for both runs (default: torch's own, one per core)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs per configuration, alternating; the table shows each one's median run")
    parser.add_argument("--trl-matched", action="store_true",
                        help="add a TRL run without gradient checkpointing (TRL's default is on)")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.group_size < 2 or args.repeats < 1:
        parser.error("--steps >= 1, --warmup >= 0, --group-size >= 2 and --repeats >= 1, please")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="lmforge-grpo-throughput-") as tmp:
        work = Path(tmp)
        model_dir, prompt_file, records, params = build_inputs(work, args)
        args.reward = write_reward(work)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; preset "
              f"{args.preset} ({params / 1e6:.2f}M parameters), fp32; {args.warmup} warm-up + {args.steps} timed steps "
              f"of {args.prompts_per_step} prompts x {args.group_size} completions, max {args.max_new_tokens} new "
              f"tokens, temperature 1.0, beta {args.beta}, lr {args.lr}, seed {args.seed}")
        print(check_prompt_tokens(model_dir, records), flush=True)
        runs: dict[str, list[Result]] = defaultdict(list)
        for index in range(args.repeats):  # alternating, so that a noisy neighbour slows every run alike
            plan = [lambda: run_lmforge(model_dir, prompt_file, work, args, index),
                    lambda: run_trl("trl-default", model_dir, records, work, args, matched=False)]
            if args.trl_matched:
                plan.append(lambda: run_trl("trl-no-ckpt", model_dir, records, work, args, matched=True))
            for run in plan:
                result = run()
                runs[result.name].append(result)
                print(f"  {result.name} run {index + 1}/{args.repeats}: {result.prompts_per_s:.2f} prompts/s, "
                      f"other processes used {result.other_cpu:.0%} of the CPUs", flush=True)
    report([median_run(results) for results in runs.values()], args.repeats)


if __name__ == "__main__":
    main()
